-- run is every limiter script's entry point (each algorithm file ends with
-- `return run(<its algorithm>)`); algorithm is {suffixes, step, hash, valid,
-- drain}: valid(spec, state, now) says whether a stored state is one the
-- script could have written, drain(spec, state, now, key) replaces one that
-- is not (see repair_states).
local function run(algorithm)
  local width = #algorithm.suffixes
  algorithm.width = width
  local now = read_now(ARGV[1])
  local specs = read_specs(4)
  if not algorithm.hash then
    for i = 1, #specs do
      entry_layout(specs[i], width)
    end
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
  remembered = {false, ''}
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
  decide_batch(algorithm, specs, now, costs, raws, values, out)
  return cmsgpack.pack(out)
end
