-- ratefuse Redis scripts: the prelude shared by every algorithm. The script
-- registry (ratefuse/redis/_scripts.py) registers "prelude .. <algorithm>",
-- and each algorithm file ends with `return run(<its step>)`.
--
-- Calling convention, the same for every algorithm:
--   KEYS[1..n]  one key per subject holding the state of all its limits
--               (a string or a hash, see below); the keys of one call
--               share one cluster slot.
--   ARGV[1]     now in integer microseconds, or -1 to read the server's
--               TIME (the default; an explicit time is for tests).
--   ARGV[2]     "s": one key, ARGV[3] is its cost; the reply is 5 integers.
--               "m": ARGV[3] is a msgpack array of n costs; the reply is a
--               msgpack array of 5n integers. The keys' values are read
--               up front (MGET), and a key may appear more than once:
--               each decision sees the state the earlier ones left.
--               "u": as "m", for n distinct keys (cheaper).
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
local floor = math.floor -- an upvalue: idiv runs twice per decision
local function idiv(a, b)
  local q = floor(a / b)
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
--   "string" (gcra, the windows): text, each limit's field id followed by
--     its state words in decimal, all separated by single spaces
--     ("<id> <w1> [<w2> ..] <id2> ..."), written with SET .. PXAT (value
--     and expiry in one command). Text, rather than a msgpack map, because
--     the common single-limit value is then one concatenation to write and
--     one pattern match to read;
--   "hash" (sliding_log): a hash with <id><suffix> fields for the state
--     words, and the ring's entries beside them (HSET, then PEXPIREAT).
-- Either way a limiter only touches its own limits' entries, so limiters
-- that share a name share exactly the limits they have in common.

-- expiry is when the key must expire: just after the last limit's reset,
-- floor + 1 ms, never rounded down, never 0.
local function expiry(now, reset)
  return idiv(now + reset, 1000) + 1
end

-- decimal is an integer in decimal, remembered per slot (1 to 3: the
-- state words, 4: expiries): the keys of a batch mostly share an expiry
-- and often their state words, and a Lua number passed to redis.call as
-- such is formatted with "%.14g", glibc's floating-point printf, a
-- measurable share of a batch's time. Only a batch remembers: every
-- call of a script runs this prelude anew, so what it allocates here a
-- single decision pays for.
local remembered = false -- made by run for a batch
local function decimal(slot, number)
  if not remembered then
    return string.format('%d', number)
  end
  if remembered[slot] ~= number then
    remembered[slot], remembered[slot + 4] = number, string.format('%d', number)
  end
  return remembered[slot + 4]
end

-- parse_entries reads every entry of a "string" value: the ids in order
-- and their words (strings), so that foreign limits are written back.
local function parse_entries(raw, width)
  local ids, words = {}, {}
  local tokens = {}
  for token in string.gmatch(raw, '%S+') do
    tokens[#tokens + 1] = token
  end
  for j = 1, #tokens - width, width + 1 do
    local id = tokens[j]
    local entry = {}
    for s = 1, width do
      entry[s] = tokens[j + s]
    end
    if not words[id] then
      ids[#ids + 1] = id
    end
    words[id] = entry
  end
  return ids, words
end

-- The state of a single-limit subject while it is decided: one set of
-- tables for a whole batch instead of three per key, made at first use
-- (nothing keeps them past decide_key: the value stored is a new string).
local scratch_state, scratch_before, scratch_states = false, false, false

-- load_string reads the "string" layout from raw (the value, or false):
-- every limit's state words (states[i][s]), the value's entries when it
-- holds more than this limiter's single limit (else false) and a flat
-- copy of the words to detect changes. The "string" layouts have at most
-- three words per limit.
local function load_string(raw, specs, width)
  if #specs == 1 then
    if not scratch_state then
      scratch_state, scratch_before = {}, {}
      scratch_states = {scratch_state}
    end
    local state, before = scratch_state, scratch_before
    if not raw then
      -- A new subject (the common case of a batch over many keys).
      for s = 1, width do
        state[s], before[s] = 0, 0
      end
      return scratch_states, false, before
    end
    -- The common case: the value is exactly this limit's entry.
    local spec = specs[1]
    local prefix = spec.prefix
    if string.find(raw, prefix, 1, true) == 1 then
      -- The words right after the prefix, and no more (a value that holds
      -- other limits too takes the general path below).
      local first, second, third
      if width == 1 then
        first = tonumber(string.sub(raw, #prefix + 1))
      else
        local pattern = '^(%-?%d+) (%-?%d+)$'
        if width == 3 then
          pattern = '^(%-?%d+) (%-?%d+) (%-?%d+)$'
        end
        first, second, third = string.match(raw, pattern, #prefix + 1)
      end
      if first then
        state[1], state[2], state[3] = tonumber(first), tonumber(second), tonumber(third)
        for s = 1, width do
          before[s] = state[s]
        end
        return scratch_states, false, before
      end
    end
  end
  local states, before = {}, {}
  local ids, words = false, {}
  if raw then
    ids, words = parse_entries(raw, width)
  end
  for i = 1, #specs do
    local entry = words[specs[i].id]
    local state = {}
    for s = 1, width do
      local value = entry and tonumber(entry[s]) or 0
      state[s] = value
      before[#before + 1] = value
    end
    states[i] = state
  end
  return states, ids and {ids = ids, words = words} or false, before
end

-- encode_string writes the "string" layout: this limiter's limits, then
-- the value's other limits as they were.
local function encode_string(specs, states, entries)
  if not entries and #specs == 1 then
    local state = states[1]
    local width = #state
    if width == 1 then
      return specs[1].prefix .. decimal(1, state[1])
    elseif width == 2 then
      return specs[1].prefix .. decimal(1, state[1]) .. ' ' .. decimal(2, state[2])
    end
    return specs[1].prefix .. decimal(1, state[1]) .. ' ' .. decimal(2, state[2])
      .. ' ' .. decimal(3, state[3])
  end
  local parts = {}
  for i = 1, #specs do
    local words = {}
    for s = 1, #states[i] do
      words[s] = string.format('%d', states[i][s])
    end
    parts[i] = specs[i].id .. ' ' .. table.concat(words, ' ')
  end
  if entries then
    local own = {}
    for i = 1, #specs do
      own[specs[i].id] = true
    end
    for _, id in ipairs(entries.ids) do
      if not own[id] then
        parts[#parts + 1] = id .. ' ' .. table.concat(entries.words[id], ' ')
      end
    end
  end
  return table.concat(parts, ' ')
end

-- A state that did not change keeps its expiry, which is a function of the
-- state alone (tat, window end, newest entry + period). A new subject whose
-- state is still as if new (a query, a denial) is not written at all: as
-- in the local keyed limiters, such a state carries no information.
-- Returns the value now stored (raw when nothing was written).
local function save_string(key, specs, width, states, entries, before, raw, at, reset)
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
  end
  if changed and (raw or reset > 0) then
    local value = encode_string(specs, states, entries)
    redis.call('SET', key, value, 'PXAT', decimal(4, at))
    return value
  end
  return raw
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
    redis.call('PEXPIREAT', key, decimal(4, at))
  end
end

-- decide_key decides cost for one subject against every limit, all or
-- nothing, as _engine_py.LimiterCore._decide. raw is the subject's value
-- in the "string" layout (false: none); returns the verdict's five
-- integers and the value now stored.
local function decide_key(algorithm, key, specs, now, cost, raw)
  local width = algorithm.width
  local states, layout, before, existed
  if algorithm.hash then
    states, layout, before, existed = load_hash(key, specs, width, algorithm.suffixes)
  else
    states, layout, before = load_string(raw, specs, width)
  end
  local step = algorithm.step
  local allowed, remaining, retry, reset, binding
  local commit = true
  if #specs == 1 then
    allowed, remaining, retry, reset = step(specs[1], states[1], now, cost, true, key)
    binding = 0
  else
    local verdicts = {}
    for i = 1, #specs do
      local verdict = {step(specs[i], states[i], now, cost, false, key)}
      verdicts[i] = verdict
      commit = commit and verdict[1]
    end
    if commit then
      for i = 1, #specs do
        verdicts[i] = {step(specs[i], states[i], now, cost, true, key)}
      end
    end
    allowed, remaining, retry, reset, binding = combine(verdicts)
  end
  if commit then
    local at = expiry(now, reset)
    if algorithm.hash then
      save_hash(key, specs, width, states, layout, before, existed, at, reset)
    else
      raw = save_string(key, specs, width, states, layout, before, raw, at, reset)
    end
  end
  return allowed and 1 or 0, remaining, retry, reset, binding, raw
end

-- decide_batch decides KEYS[k] with costs[k] for a limiter of a single
-- limit in the "string" layout (the common batch): decide_key with its
-- calls inlined, which are a measurable share of a batch's time. A value
-- it does not recognise (other limits too, or a foreign shape) goes to
-- decide_key. raws and values as in run; out gets the verdicts.
local function decide_batch(algorithm, specs, now, costs, raws, values, out)
  local width = algorithm.width
  local step = algorithm.step
  local spec = specs[1]
  local prefix = spec.prefix
  local pattern = width == 2 and '^(%-?%d+) (%-?%d+)$'
    or '^(%-?%d+) (%-?%d+) (%-?%d+)$'
  local find, sub, match = string.find, string.sub, string.match
  local after = #prefix + 1
  local state = {}
  -- The expiry argument of the last reset seen: a function of reset
  -- alone within a call (one now), and the keys of a batch mostly share it.
  local last_reset, last_at = false, false
  local last_word, last_value = false, false
  local n = 0
  for k = 1, #KEYS do
    local key = KEYS[k]
    local raw = raws[k] or false
    if values then
      local current = values[key]
      if current ~= nil then
        raw = current
      end
    end
    local cost = costs[k]
    local known = true
    if not raw then
      for s = 1, width do
        state[s] = 0
      end
    elseif find(raw, prefix, 1, true) == 1 then
      -- As load_string: the words right after the prefix, and no more.
      local first, second, third
      if width == 1 then
        first = tonumber(sub(raw, after))
      else
        first, second, third = match(raw, pattern, after)
      end
      if first then
        state[1], state[2], state[3] = tonumber(first), tonumber(second), tonumber(third)
      else
        known = false
      end
    else
      known = false
    end
    local allowed, remaining, retry, reset, binding, stored
    if known then
      -- As save_string: write only a changed state, and a new subject's
      -- only when it carries information (reset > 0).
      local first, second, third = state[1], state[2], state[3]
      allowed, remaining, retry, reset = step(spec, state, now, cost, true, key)
      binding, stored = 0, raw
      if (state[1] ~= first or state[2] ~= second or state[3] ~= third)
        and (raw or reset > 0) then
        if width == 1 then
          -- The keys of a batch often share their new state (fresh keys,
          -- one now), hence the value: built once.
          if state[1] ~= last_word then
            last_word, last_value = state[1], prefix .. decimal(1, state[1])
          end
          stored = last_value
        elseif width == 2 then
          stored = prefix .. decimal(1, state[1]) .. ' ' .. decimal(2, state[2])
        else
          stored = prefix .. decimal(1, state[1]) .. ' ' .. decimal(2, state[2])
            .. ' ' .. decimal(3, state[3])
        end
        if reset ~= last_reset then
          last_reset, last_at = reset, decimal(4, expiry(now, reset))
        end
        redis.call('SET', key, stored, 'PXAT', last_at)
      end
      allowed = allowed and 1 or 0
    else
      allowed, remaining, retry, reset, binding, stored =
        decide_key(algorithm, key, specs, now, cost, raw)
    end
    if values then
      values[key] = stored
    end
    out[n + 1], out[n + 2], out[n + 3] = allowed, remaining, retry
    out[n + 4], out[n + 5] = reset, binding
    n = n + 5
  end
end

-- run is every script's entry point; algorithm is {suffixes, step, hash}.
local function run(algorithm)
  local width = #algorithm.suffixes
  algorithm.width = width
  local now = read_now(ARGV[1])
  local specs = read_specs(4)
  for i = 1, #specs do
    local spec = specs[i]
    spec.prefix = spec.id .. ' '
  end
  if ARGV[2] == 's' then
    local raw = false
    if not algorithm.hash then
      raw = redis.call('GET', KEYS[1])
    end
    local allowed, remaining, retry, reset, binding =
      decide_key(algorithm, KEYS[1], specs, now, tonumber(ARGV[3]), raw)
    return {allowed, remaining, retry, reset, binding}
  end
  local costs = cmsgpack.unpack(ARGV[3])
  remembered = {false, false, false, false, '', '', '', ''}
  -- raws[k] is KEYS[k]'s value in the "string" layout (false: none), read
  -- MGET by MGET (a bounded number of keys each, for Lua's stack).
  local raws = {}
  if not algorithm.hash then
    local at = 1
    while at <= #KEYS do
      local last = math.min(at + 999, #KEYS)
      local got = redis.call('MGET', unpack(KEYS, at, last))
      for k = at, last do
        raws[k] = got[k - at + 1]
      end
      at = last + 1
    end
  end
  -- In mode "m" a key may come back later in the batch and must see the
  -- state its earlier decisions left: values[key] is its current value.
  -- Mode "u" promises distinct keys, which skips that bookkeeping.
  local values = ARGV[2] == 'm' and {} or false
  local out = {}
  if not algorithm.hash and #specs == 1 then
    decide_batch(algorithm, specs, now, costs, raws, values, out)
    return cmsgpack.pack(out)
  end
  local n = 0
  for k = 1, #KEYS do
    local key = KEYS[k]
    local raw = raws[k] or false
    if values then
      local current = values[key]
      if current ~= nil then
        raw = current
      end
    end
    local allowed, remaining, retry, reset, binding, stored =
      decide_key(algorithm, key, specs, now, costs[k], raw)
    if values then
      values[key] = stored
    end
    out[n + 1], out[n + 2], out[n + 3] = allowed, remaining, retry
    out[n + 4], out[n + 5] = reset, binding
    n = n + 5
  end
  return cmsgpack.pack(out)
end
