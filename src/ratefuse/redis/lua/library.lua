-- The Redis 7 Functions library's decisions. The library is (see
-- _scripts.library) one function, build, holding the prelude (minus
-- batch.lua and run.lua), this file, and each algorithm's file, whose
-- closing `return run({...})` becomes `register('<name>', {...})`; then
-- one registered function per algorithm (library_function.lua) that
-- builds on its first call (loading a library runs without Lua's
-- standard library: only `redis` is there) and then decides. What build
-- makes lives as long as the library, so what a script call would
-- rebuild every time (the prelude's closures, the parsed limits, each
-- limit's lean decider) is made once.
--
-- Calling convention: FCALL <function> 1 <key> <now> <cost> <limits>, where
-- <function> is <library>_<digest>_<algorithm> (see _scripts.library) and
--   now     integer microseconds, or -1 for the server's TIME (the default)
--   cost    the units asked
--   limits  the limits' field ids separated by single spaces: each is
--           "<capacity>/<period_us>" (windows) or
--           "<capacity>/<period_us>/<interval_us>" (gcra), the ids the
--           keys' layouts already store, so a limit is its id.
-- The reply is lean.lua's for what its deciders decide (one limit, or
-- gcra's two, see there), else the five integers of arguments.lua's
-- verdict.

-- The maker of the lean decider of each algorithm that has one (lean.lua).
local LEAN = {
  gcra = gcra_lean,
  fixed_window = fixed_window_lean,
  sliding_window = sliding_window_lean,
  sliding_log = sliding_log_lean,
}

-- Parsed limits by their wire string: a limiter sends the same string on
-- every call. Bounded: when full it starts afresh (the strings of the
-- limiters in use come back at once).
local MAX_CACHED_LIMITS = 512
local cached_limits, cached_count = {}, 0

local function parse_limits(wire)
  local specs = {}
  for id in string.gmatch(wire, '%S+') do
    local capacity, period, interval = string.match(id, '^(%d+)/(%d+)/?(%d*)$')
    if not capacity then
      return error('ratefuse: bad limit ' .. string.format('%q', string.sub(id, 1, 40)))
    end
    specs[#specs + 1] = {
      id = id,
      capacity = tonumber(capacity),
      period = tonumber(period),
      interval = tonumber(interval) or 0,
      latest = false,
    }
    local spec = specs[#specs]
    -- The whole value when it is exactly this limit's entry: one unpack
    -- reads it, for each width (the windows share their ids).
    for width = 1, 3 do
      entry_layout(spec, width)
    end
    -- Whether a window's lean reply (window_end * (capacity + 1) + count,
    -- window_end at most two periods) stays below 2^53.
    spec.fits = (2 * spec.period + 1) * (spec.capacity + 1) < 9007199254740992
  end
  if #specs == 0 then
    return error('ratefuse: no limits given')
  end
  if #specs == 2 then
    -- A compound of two in the "string" layout, as encode_string writes
    -- it when the value holds these limits only: one unpack reads it and
    -- one pack (PAIR[width]) writes it, for each width.
    local one, two = specs[1], specs[2]
    specs.read, specs.size = {}, {}
    for width = 1, 3 do
      specs.read[width] = one.read[width] .. two.read[width]
      specs.size[width] = one.size[width] + two.size[width]
    end
    specs.states = {{}, {}}
  end
  if cached_count >= MAX_CACHED_LIMITS then
    cached_limits, cached_count = {}, 0
    -- The registered functions hold these tables: emptied in place.
    for _, leans in pairs(lean_deciders) do
      for cached in pairs(leans) do
        leans[cached] = nil
      end
    end
  end
  cached_limits[wire] = specs
  cached_count = cached_count + 1
  return specs
end

-- The reply table, filled anew by every call (Redis converts it before
-- the next call can run).
local reply = {0, 0, 0, 0, 0}
local call, pack, unpack = redis.call, struct.pack, struct.unpack
-- The registered functions' (library_function.lua), which loading cannot set.
server_call = call
-- The format of a compound of two's value, by width (ENTRY's, twice).
local PAIR = {'c0<dc0<d', 'c0<ddc0<dd', 'c0<dddc0<ddd'}

-- decide_general is any decision decide_key makes: several limits, the
-- "hash" layout, or a value the lean path does not read.
local function decide_general(algorithm, key, specs, now, cost, raw)
  for i = 1, #specs do
    specs[i].latest = false
  end
  if raw == nil then
    raw = false
    if not algorithm.hash then
      raw = redis.call('GET', key)
    end
  end
  reply[1], reply[2], reply[3], reply[4], reply[5] =
    decide_key(algorithm, key, specs, now, cost, raw)
  return reply
end

-- decide_two is a compound of two limits in the "string" layout, as
-- decide_key decides it (both admit and both consume, or none does) and
-- combine reports it, without a table made; anything it does not read
-- goes to decide_general.
local function decide_two(algorithm, key, specs, now, cost)
  local first_spec, second_spec = specs[1], specs[2]
  first_spec.latest, second_spec.latest = false, false
  local raw = call('GET', key)
  local width = algorithm.width
  local one, two = specs.states[1], specs.states[2]
  if raw then
    if #raw ~= specs.size[width] then
      return decide_general(algorithm, key, specs, now, cost, raw)
    end
    -- Each entry: its prefix, then its words (nil past the width).
    local id1, a, b, c, id2, d, e, f
    if width == 1 then
      id1, a, id2, d = unpack(specs.read[1], raw)
    elseif width == 2 then
      id1, a, b, id2, d, e = unpack(specs.read[2], raw)
    else
      id1, a, b, c, id2, d, e, f = unpack(specs.read[3], raw)
    end
    one[1], one[2], one[3] = a, b, c
    two[1], two[2], two[3] = d, e, f
    local valid = algorithm.valid
    if id1 ~= first_spec.prefix or id2 ~= second_spec.prefix
      or not (stored(a) and stored(b or 0) and stored(c or 0) and stored(d)
        and stored(e or 0) and stored(f or 0))
      or not (valid(first_spec, one, now) and valid(second_spec, two, now)) then
      return decide_general(algorithm, key, specs, now, cost, raw)
    end
  else
    one[1], one[2], one[3] = 0, algorithm.zero2, algorithm.zero3
    two[1], two[2], two[3] = 0, algorithm.zero2, algorithm.zero3
  end
  local a1, a2, a3, b1, b2, b3 = one[1], one[2], one[3], two[1], two[2], two[3]
  local step = algorithm.step
  local allowed1, remaining1, retry1, reset1 = step(first_spec, one, now, cost, false, key)
  local allowed2, remaining2, retry2, reset2 = step(second_spec, two, now, cost, false, key)
  local allowed = allowed1 and allowed2
  if allowed then
    allowed1, remaining1, retry1, reset1 = step(first_spec, one, now, cost, true, key)
    allowed2, remaining2, retry2, reset2 = step(second_spec, two, now, cost, true, key)
  end
  -- combine, for two verdicts.
  local binding = 0
  if allowed then
    if remaining2 < remaining1 then
      binding = 1
    end
  elseif not allowed2 and (allowed1 or later(retry2, retry1)) then
    binding = 1
  end
  local retry = 0
  if later(retry1, retry) then
    retry = retry1
  end
  if later(retry2, retry) then
    retry = retry2
  end
  local remaining = remaining2 < remaining1 and remaining2 or remaining1
  local reset = reset2 > reset1 and reset2 or reset1
  if (one[1] ~= a1 or one[2] ~= a2 or one[3] ~= a3 or two[1] ~= b1 or two[2] ~= b2
      or two[3] ~= b3) and (raw or reset > 0) then
    local first_prefix, second_prefix = first_spec.prefix, second_spec.prefix
    local value
    if width == 1 then
      value = pack(PAIR[1], first_prefix, one[1], second_prefix, two[1])
    elseif width == 2 then
      value = pack(PAIR[2], first_prefix, one[1], one[2], second_prefix, two[1], two[2])
    else
      value = pack(PAIR[3], first_prefix, one[1], one[2], one[3], second_prefix, two[1],
        two[2], two[3])
    end
    call('SET', key, value, 'PXAT', decimal(expiry(now, reset)))
  end
  reply[1], reply[2], reply[3], reply[4], reply[5] =
    allowed and 1 or 0, remaining, retry, reset, binding
  return reply
end

-- lean_of is the lean decider (lean.lua) of specs for algorithm, or
-- false: one limit (a fixed window's only when its reply fits one
-- integer), or gcra's two.
local function lean_of(algorithm, specs)
  local make = algorithm.lean
  if not make or specs[3] then
    return false
  end
  local width = algorithm.width
  local spec, pair = specs[1], specs[2]
  if pair then
    return algorithm.meter and gcra_pair_lean(spec, pair, specs.read[width], specs.size[width])
  end
  if algorithm.bounded and not spec.fits then
    return false
  end
  return make(spec.prefix, spec.read[width], spec.size[width], spec.capacity, spec[algorithm.span])
end

-- The deciders by algorithm name, what build returns.
local deciders = {}

-- register makes algorithm (as run.lua takes it) the decider of name:
-- deciders[name](keys, args, now) decides one subject, and leaves the
-- lean decider of its limits (or false) in lean_deciders[name], where
-- the registered function (library_function.lua) finds it first on the
-- next call. now is the server's time when the registered function read
-- it and the lean decider did not read the key's value (it is then
-- decided on the general path, as the same clock); nil: read it here,
-- or take args[1].
local function register(name, algorithm)
  local width = #algorithm.suffixes
  algorithm.width = width
  -- The words of a new subject, nil beyond the width.
  algorithm.zero2 = width >= 2 and 0 or nil
  algorithm.zero3 = width >= 3 and 0 or nil
  -- The maker of the lean decider and its span (lean.lua).
  algorithm.lean = LEAN[name]
  algorithm.span = name == 'gcra' and 'interval' or 'period'
  -- A fixed window's lean reply has one form, for limits that fit it.
  algorithm.bounded = name == 'fixed_window'
  -- gcra has a lean compound of two as well (gcra_pair_lean).
  algorithm.meter = name == 'gcra'
  local leans = lean_deciders[name]
  deciders[name] = function(keys, args, now)
    local wire = args[3]
    local specs = cached_limits[wire] or parse_limits(wire)
    local lean = leans[wire]
    if lean == nil then
      lean = lean_of(algorithm, specs)
      leans[wire] = lean
    end
    local tried = now
    if not now then
      now = args[1]
      if now == '-1' then
        -- server_now's, with Lua's own conversion of the two decimal strings.
        local time = call('TIME')
        now = time[1] * 1000000 + time[2]
      else
        now = read_now(now)
      end
    end
    -- The common cost without a conversion.
    local cost = args[2]
    cost = cost == '1' and 1 or tonumber(cost)
    local key = keys[1]
    if lean then
      if not tried then
        local verdict = lean(key, now, cost)
        if verdict then
          return verdict
        end
      end
    elseif specs[2] and not specs[3] and not algorithm.hash then
      return decide_two(algorithm, key, specs, now, cost)
    end
    return decide_general(algorithm, key, specs, now, cost, nil)
  end
end
