-- ratefuse Redis scripts: the prelude shared by every algorithm. The script
-- registry (ratefuse/redis/_scripts.py) registers "prelude .. <algorithm>",
-- and each algorithm file ends with `return run(<its step>)`.
--
-- Calling convention, the same for every algorithm:
--   KEYS[1..n]  one hash per subject holding the state of all its limits;
--               the keys of one call share one cluster slot.
--   ARGV[1]     now in integer microseconds, or -1 to read the server's
--               TIME (the default; an explicit time is for tests).
--   ARGV[2]     "s": one key, ARGV[3] is its cost; the reply is 5 integers.
--               "m": ARGV[3] is a msgpack array of n costs; the reply is a
--               msgpack array of 5n integers.
--   ARGV[4]     r, the number of limits; then four arguments per limit:
--               field id, capacity, period_us, interval_us.
-- A verdict is 5 integers: allowed (1/0), remaining, retry_after_us (-1:
-- never), reset_after_us and the 0-based index of the binding limit.
--
-- The steps are line-for-line translations of the reference cores
-- (ratefuse/_<algorithm>_py.py) and must make the same decisions. Lua
-- numbers are doubles: the client rejects configurations whose integers
-- could reach 2^53, and idiv is exact below that.

local NEVER = -1
local MAX_NOW_US = 4503599627370496 -- 2^52 us: the year 2112

-- idiv is floor(a / b) exactly, for integers |a| < 2^53 and 0 < b < 2^53:
-- the double quotient can round across an integer, so it is corrected.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local function read_now(arg)
  local now = tonumber(arg)
  if now < 0 then
    local time = redis.call('TIME')
    now = tonumber(time[1]) * 1000000 + tonumber(time[2])
  end
  if now > MAX_NOW_US then
    return error('ratefuse: now is beyond 2^52 microseconds')
  end
  return now
end

local function read_specs(first)
  local specs = {}
  local at = first + 1
  for i = 1, tonumber(ARGV[first]) do
    specs[i] = {
      id = ARGV[at],
      capacity = tonumber(ARGV[at + 1]),
      period = tonumber(ARGV[at + 2]),
      interval = tonumber(ARGV[at + 3]),
    }
    at = at + 4
  end
  return specs
end

-- later orders retry delays with NEVER as the latest.
local function later(retry, than)
  if than == NEVER then
    return false
  end
  return retry == NEVER or retry > than
end

-- combine merges the verdicts of a compound limit, as _engine_py.combine.
local function combine(verdicts)
  local allowed = true
  for i = 1, #verdicts do
    if not verdicts[i][1] then
      allowed = false
    end
  end
  local binding, retry = 1, 0
  local remaining, reset = verdicts[1][2], verdicts[1][4]
  for i = 1, #verdicts do
    local verdict, best = verdicts[i], verdicts[binding]
    if allowed then
      if verdict[2] < best[2] then
        binding = i
      end
    elseif not verdict[1] and (best[1] or later(verdict[3], best[3])) then
      binding = i
    end
    if later(verdict[3], retry) then
      retry = verdict[3]
    end
    if verdict[2] < remaining then
      remaining = verdict[2]
    end
    if verdict[4] > reset then
      reset = verdict[4]
    end
  end
  return allowed, remaining, retry, reset, binding - 1
end

-- Two layouts of a subject's key, chosen by the algorithm:
--   "string" (gcra, the windows): a msgpack map from each limit's field id
--     to its state words, written with SET .. PXAT (value and expiry in
--     one command);
--   "hash" (sliding_log): a hash with <id><suffix> fields for the state
--     words, and the ring's entries beside them (HSET, then PEXPIREAT).
-- Either way a limiter only touches its own limits' entries, so limiters
-- that share a name share exactly the limits they have in common.

-- expiry is when the key must expire: just after the last limit's reset,
-- floor + 1 ms, never rounded down, never 0.
local function expiry(now, reset)
  return idiv(now + reset, 1000) + 1
end

-- load_string reads the "string" layout: the decoded map, every limit's
-- state words (states[i][s]) and a flat copy of them to detect changes.
local function load_string(key, specs, width)
  local raw = redis.call('GET', key)
  local map = raw and cmsgpack.unpack(raw) or {}
  local states, before = {}, {}
  for i = 1, #specs do
    local words = map[specs[i].id]
    local state = {}
    for s = 1, width do
      local value = words and words[s] or 0
      state[s] = value
      before[#before + 1] = value
    end
    states[i] = state
  end
  return states, map, before, raw ~= false
end

-- A state that did not change keeps its expiry, which is a function of the
-- state alone (tat, window end, newest entry + period). A new subject whose
-- state is still as if new (a query, a denial) is not written at all: as
-- in the local keyed limiters, such a state carries no information.
local function save_string(key, specs, width, states, map, before, existed, at, reset)
  local changed = false
  local j = 0
  for i = 1, #states do
    local state = states[i]
    for s = 1, width do
      j = j + 1
      if state[s] ~= before[j] then
        changed = true
      end
    end
    map[specs[i].id] = state
  end
  if changed and (existed or reset > 0) then
    redis.call('SET', key, cmsgpack.pack(map), 'PXAT', at)
  end
end

-- load_hash reads the "hash" layout; its second result is the field names.
local function load_hash(key, specs, width, suffixes)
  local fields = {}
  for i = 1, #specs do
    for s = 1, width do
      fields[#fields + 1] = specs[i].id .. suffixes[s]
    end
  end
  local raw = redis.call('HMGET', key, unpack(fields))
  local states, before = {}, {}
  local existed = false
  local j = 0
  for i = 1, #specs do
    local state = {}
    for s = 1, width do
      j = j + 1
      if raw[j] then
        existed = true
      end
      local value = tonumber(raw[j]) or 0
      state[s] = value
      before[j] = value
    end
    states[i] = state
  end
  return states, fields, before, existed
end

local function save_hash(key, specs, width, states, fields, before, existed, at, reset)
  local changed = {}
  local j = 0
  for i = 1, #states do
    local state = states[i]
    for s = 1, width do
      j = j + 1
      if state[s] ~= before[j] then
        changed[#changed + 1] = fields[j]
        changed[#changed + 1] = state[s]
      end
    end
  end
  if #changed > 0 and (existed or reset > 0) then
    redis.call('HSET', key, unpack(changed))
    redis.call('PEXPIREAT', key, at)
  end
end

-- decide_key decides cost for one subject against every limit, all or
-- nothing, as _engine_py.LimiterCore._decide.
local function decide_key(algorithm, key, specs, now, cost)
  local width = algorithm.width
  local load, save = load_string, save_string
  if algorithm.hash then
    load, save = load_hash, save_hash
  end
  local states, layout, before, existed = load(key, specs, width, algorithm.suffixes)
  local step = algorithm.step
  if #specs == 1 then
    local allowed, remaining, retry, reset = step(specs[1], states[1], now, cost, true, key)
    save(key, specs, width, states, layout, before, existed, expiry(now, reset), reset)
    return allowed and 1 or 0, remaining, retry, reset, 0
  end
  local verdicts = {}
  local all = true
  for i = 1, #specs do
    local verdict = {step(specs[i], states[i], now, cost, false, key)}
    verdicts[i] = verdict
    all = all and verdict[1]
  end
  if all then
    for i = 1, #specs do
      verdicts[i] = {step(specs[i], states[i], now, cost, true, key)}
    end
  end
  local allowed, remaining, retry, reset, binding = combine(verdicts)
  if all then
    save(key, specs, width, states, layout, before, existed, expiry(now, reset), reset)
  end
  return allowed and 1 or 0, remaining, retry, reset, binding
end

-- run is every script's entry point; algorithm is {suffixes, step, hash}.
local function run(algorithm)
  algorithm.width = #algorithm.suffixes
  local now = read_now(ARGV[1])
  local specs = read_specs(4)
  if ARGV[2] == 's' then
    return {decide_key(algorithm, KEYS[1], specs, now, tonumber(ARGV[3]))}
  end
  local costs = cmsgpack.unpack(ARGV[3])
  local out = {}
  local n = 0
  for k = 1, #KEYS do
    local allowed, remaining, retry, reset, binding =
      decide_key(algorithm, KEYS[k], specs, now, costs[k])
    out[n + 1], out[n + 2], out[n + 3] = allowed, remaining, retry
    out[n + 4], out[n + 5] = reset, binding
    n = n + 5
  end
  return cmsgpack.pack(out)
end
