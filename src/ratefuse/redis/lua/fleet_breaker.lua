-- ratefuse fleet circuit breaker: one breaker's window and state, shared by
-- every process that uses the same name. The rules are those of the local
-- state machine (ratefuse/core/breaker/_machine_py.py), in integer
-- microseconds on the server's clock (server_now, clock.lua); the client
-- (ratefuse/redis/_fleet_script.py) builds the arguments and reads the
-- reply.
--
--   KEYS[1]  hash: state, generation, open-since, wait, probe round, totals
--   KEYS[2]  the window: a string of one flags byte per call (count-based)
--            or a hash of per-bucket counters (time-based); same slot.
--   ARGV[1]  now in integer microseconds, or -1 to read TIME (the default;
--            an explicit time is for tests)
--   ARGV[2]  op: "f" records a batch, "a" asks for a permit (a fleet-wide
--            probe token in HALF_OPEN), "t" enters state ARGV[17] by hand
--   ARGV[3]  the generation the batch's calls were permitted in
--   ARGV[4]  the batch: one byte per call, bit 0 failed, bit 1 slow,
--            bit 2 ignored (a probe given back)
--   ARGV[5..16] the lowered config (see _fleet_script.py) and the idle TTL
-- The reply is 8 integers: granted generation (0: rejected; -1: illegal
-- transition), state, generation, retry_after_us (-1: never), calls,
-- failures, slow calls (the state's tally, as Machine.shown: the window, the
-- last probe round, or nothing) and probes issued in the current round.

local CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED = 0, 1, 2, 3, 4
local SCALE = 1000000

local key, window_key = KEYS[1], KEYS[2]
local now = server_now(ARGV[1])
local op = ARGV[2]
local batch_gen = tonumber(ARGV[3])
local batch = ARGV[4]
local count_window = ARGV[5] == '1'
local size = tonumber(ARGV[6])
local bucket_us = tonumber(ARGV[7])
local minimum_calls = tonumber(ARGV[8])
local failure_ppm = tonumber(ARGV[9])
local slow_ppm = tonumber(ARGV[10])
local base_wait = tonumber(ARGV[11])
local max_wait = tonumber(ARGV[12])
local multiplier = tonumber(ARGV[13])
local half_open_calls = tonumber(ARGV[14])
local max_half_open = tonumber(ARGV[15])
local idle_ttl_ms = tonumber(ARGV[16])
local target = tonumber(ARGV[17])
local shape = ARGV[5] .. ':' .. ARGV[6] .. ':' .. ARGV[7]

local SHOWN_WINDOW, SHOWN_PROBES, SHOWN_NOTHING = 0, 1, 2

local h = redis.call('HMGET', key, 'st', 'gen', 'opened', 'wait', 'hoat',
  'issued', 'pc', 'pf', 'ps', 'calls', 'fails', 'slow', 'head', 'filled',
  'epoch', 'shape', 'shown')
local st = tonumber(h[1]) or CLOSED
local gen = tonumber(h[2]) or 1
local opened = tonumber(h[3]) or 0
-- 0: not opened since CLOSED or DISABLED (next_wait in spec.py).
local wait = tonumber(h[4]) or 0
local half_open_at = tonumber(h[5]) or 0
local issued = tonumber(h[6]) or 0
local probe_calls = tonumber(h[7]) or 0
local probe_fails = tonumber(h[8]) or 0
local probe_slow = tonumber(h[9]) or 0
local calls = tonumber(h[10]) or 0
local fails = tonumber(h[11]) or 0
local slow = tonumber(h[12]) or 0
local head = tonumber(h[13]) or 0
local filled = tonumber(h[14]) or 0
local epoch = tonumber(h[15]) or -1
local shown = tonumber(h[17]) or SHOWN_WINDOW

local function clear_window()
  redis.call('DEL', window_key)
  calls, fails, slow, head, filled, epoch = 0, 0, 0, 0, 0, -1
end

-- A process with another window shape (a changed config) starts it afresh
-- rather than misreading the ring.
if h[16] ~= shape then
  clear_window()
end

local function exceeds(n, failed, slowed, minimum)
  if n < minimum or n == 0 then
    return false
  end
  if failed * SCALE >= failure_ppm * n then
    return true
  end
  return slow_ppm > 0 and slowed * SCALE >= slow_ppm * n
end

-- The wait of the next OPEN or FORCED_OPEN (next_wait in spec.py).
local function next_wait()
  if wait == 0 then
    return base_wait
  end
  local grown = math.floor(wait * multiplier)
  if grown >= max_wait then
    return max_wait
  end
  return grown
end

-- Enters `state` (see Machine._enter): the wait, the tally shown.
local function enter(state)
  local source = st
  st = state
  gen = gen + 1
  if state == CLOSED or state == DISABLED then
    wait = 0
  elseif state == OPEN or state == FORCED_OPEN then
    wait = next_wait()
  end
  if state == CLOSED then
    clear_window()
    shown = SHOWN_WINDOW
  elseif state == OPEN then
    opened = now
    if source == HALF_OPEN then
      shown = SHOWN_PROBES
    elseif source == CLOSED then
      shown = SHOWN_WINDOW
    elseif source ~= OPEN then
      shown = SHOWN_NOTHING
    end
  elseif state == HALF_OPEN then
    half_open_at = now
    issued, probe_calls, probe_fails, probe_slow = 0, 0, 0, 0
    shown = SHOWN_PROBES
  else
    shown = SHOWN_NOTHING
  end
end

-- True if the probe round has outlived max_half_open (if set).
local function round_expired()
  return max_half_open > 0 and now - half_open_at >= max_half_open
end

-- A probe round past its deadline: OPEN from the deadline on.
local function expire_round()
  enter(OPEN)
  opened = half_open_at + max_half_open
end

-- Count-based window: the bytes of the ring slots a batch of n calls will
-- overwrite, read with at most two GETRANGEs.
local function ring_slots(n)
  local touched = math.min(n, size)
  local old = {}
  local last = math.min(head + touched, size) - 1
  local first_part = redis.call('GETRANGE', window_key, head, last)
  for slot = head, last do
    old[slot] = string.byte(first_part, slot - head + 1) or 0
  end
  if head + touched > size then
    local wrapped_last = head + touched - size - 1
    local second_part = redis.call('GETRANGE', window_key, 0, wrapped_last)
    for slot = 0, wrapped_last do
      old[slot] = string.byte(second_part, slot + 1) or 0
    end
  end
  return old
end

local function write_ring(ring, from, n)
  local touched = math.min(n, size)
  local last = math.min(from + touched, size) - 1
  local bytes = {}
  for slot = from, last do
    bytes[#bytes + 1] = string.char(ring[slot])
  end
  redis.call('SETRANGE', window_key, from, table.concat(bytes))
  if from + touched > size then
    bytes = {}
    for slot = 0, from + touched - size - 1 do
      bytes[#bytes + 1] = string.char(ring[slot])
    end
    redis.call('SETRANGE', window_key, 0, table.concat(bytes))
  end
end

-- Time-based window: evict the buckets `now` has left behind (at most
-- `size` of them); bucket e lives in the fields c<e % size>, f.., s...
local function advance(at_epoch)
  if at_epoch <= epoch then
    return
  end
  local first = math.max(epoch + 1, at_epoch - size + 1)
  for stale = first, at_epoch do
    local slot = stale % size
    local old = redis.call('HMGET', window_key, 'c' .. slot, 'f' .. slot, 's' .. slot)
    if old[1] then
      calls = calls - tonumber(old[1])
      fails = fails - tonumber(old[2])
      slow = slow - tonumber(old[3])
      redis.call('HDEL', window_key, 'c' .. slot, 'f' .. slot, 's' .. slot)
    end
  end
  epoch = at_epoch
end

local function record_closed()
  local n = #batch
  local ring, ring_head, recorded = nil, head, 0
  if count_window then
    ring = ring_slots(n)
  else
    advance(math.floor(now / bucket_us))
  end
  local bucket_calls, bucket_fails, bucket_slow = 0, 0, 0
  for i = 1, n do
    local flags = string.byte(batch, i)
    if flags < 4 then
      local failed, slowed = flags % 2, math.floor(flags / 2) % 2
      if count_window then
        if filled == size then
          local evicted = ring[head]
          calls = calls - 1
          fails = fails - evicted % 2
          slow = slow - math.floor(evicted / 2) % 2
        else
          filled = filled + 1
        end
        ring[head] = flags
        head = (head + 1) % size
        recorded = recorded + 1
      else
        bucket_calls = bucket_calls + 1
        bucket_fails = bucket_fails + failed
        bucket_slow = bucket_slow + slowed
      end
      calls = calls + 1
      fails = fails + failed
      slow = slow + slowed
      if exceeds(calls, fails, slow, minimum_calls) then
        enter(OPEN)
        break
      end
    end
  end
  if count_window then
    if recorded > 0 then
      write_ring(ring, ring_head, recorded)
    end
  elseif bucket_calls > 0 then
    local slot = epoch % size
    redis.call('HINCRBY', window_key, 'c' .. slot, string.format('%d', bucket_calls))
    redis.call('HINCRBY', window_key, 'f' .. slot, string.format('%d', bucket_fails))
    redis.call('HINCRBY', window_key, 's' .. slot, string.format('%d', bucket_slow))
  end
end

-- A round is judged on min(minimum_calls, half_open_calls) outcomes; one
-- that arrives past the round's deadline ends it instead.
local function record_probes()
  local deciding = math.min(minimum_calls, half_open_calls)
  for i = 1, #batch do
    local flags = string.byte(batch, i)
    if flags >= 4 then
      if issued > 0 then
        issued = issued - 1
      end
    elseif round_expired() then
      expire_round()
      return
    else
      probe_calls = probe_calls + 1
      probe_fails = probe_fails + flags % 2
      probe_slow = probe_slow + math.floor(flags / 2) % 2
      if probe_calls >= deciding then
        if exceeds(probe_calls, probe_fails, probe_slow, probe_calls) then
          enter(OPEN)
        else
          enter(CLOSED)
        end
        return
      end
    end
  end
end

local granted = 0
if op == 'f' then
  if batch_gen == gen and #batch > 0 then
    if st == CLOSED then
      record_closed()
    elseif st == HALF_OPEN then
      record_probes()
    end
  end
elseif op == 'a' then
  if st == CLOSED or st == DISABLED then
    granted = gen
  elseif st == OPEN then
    if now - opened >= wait then
      enter(HALF_OPEN)
      issued = 1
      granted = gen
    end
  elseif st == HALF_OPEN then
    if round_expired() then
      expire_round()
      if now - opened >= wait then
        enter(HALF_OPEN)
        issued = 1
        granted = gen
      end
    elseif issued < half_open_calls then
      issued = issued + 1
      granted = gen
    end
  end
elseif op == 't' then
  if st == CLOSED and target == HALF_OPEN then
    granted = -1
  else
    enter(target)
    granted = gen
  end
else
  return redis.error_reply('ratefuse: unknown fleet breaker op')
end

if st == CLOSED and not count_window then
  advance(math.floor(now / bucket_us))
end

-- Written with %d: a Lua number passed to redis.call is formatted with
-- "%.14g", which would round a microsecond time of 16 digits.
local function int(number)
  return string.format('%d', number)
end
redis.call('HSET', key, 'st', int(st), 'gen', int(gen), 'opened', int(opened),
  'wait', int(wait), 'hoat', int(half_open_at), 'issued', int(issued),
  'pc', int(probe_calls), 'pf', int(probe_fails), 'ps', int(probe_slow),
  'calls', int(calls), 'fails', int(fails), 'slow', int(slow),
  'head', int(head), 'filled', int(filled), 'epoch', int(epoch), 'shape', shape,
  'shown', int(shown))
-- Every key lives for the idle TTL past the longest wait it may need;
-- idle_ttl_ms >= 1000, so no TTL is ever 0.
local ttl = int(idle_ttl_ms + math.ceil(wait / 1000))
redis.call('PEXPIRE', key, ttl)
redis.call('PEXPIRE', window_key, ttl)

local retry = 0
if st == OPEN then
  retry = math.max(opened + wait - now, 0)
elseif st == FORCED_OPEN then
  retry = -1
end
local probes_out = 0
if st == HALF_OPEN then
  probes_out = issued
end
if shown == SHOWN_PROBES then
  return {granted, st, gen, retry, probe_calls, probe_fails, probe_slow, probes_out}
elseif shown == SHOWN_NOTHING then
  return {granted, st, gen, retry, 0, 0, 0, probes_out}
end
return {granted, st, gen, retry, calls, fails, slow, probes_out}
