-- The "hash" layout of a subject's key (sliding_log): a hash with one
-- header field per limit, named by its id (log_header.lua: the state
-- words 1 to 7 of a step), beside the entries of the log (HSET, then
-- PEXPIREAT when a limit's entries outlive the expiry last set).

-- load_hash reads the "hash" layout; its second result is the field names,
-- its third the headers as read (false: none).
local function load_hash(key, specs)
  -- Made once per specs table: the library keeps its specs across calls.
  local fields = specs.fields
  if not fields then
    fields = {}
    for i = 1, #specs do
      fields[i] = specs[i].id
    end
    specs.fields = fields
  end
  local raw = redis.call('HMGET', key, unpack(fields))
  local states, before = {}, {}
  local existed = false
  for i = 1, #specs do
    local value = raw[i]
    local state
    if value then
      existed = true
      -- A damaged header is written again whatever replaces it.
      local format, bytes = log_shape(specs[i].capacity)
      if #value == bytes then
        local a, b, c, d, e, f, g = struct.unpack(format, value)
        state = {a, b, c, d, e, f, g}
      else
        state = {0, 0, 0, 0, 0, 0, 0, invalid = true}
      end
    else
      state = {0, 0, 0, 0, 0, 0, 0}
    end
    before[i] = value or false
    states[i] = state
  end
  return states, fields, before, existed
end

-- save_hash writes the headers that changed, and the expiry when a limit
-- needs a later one. The hash may hold other limiters' limits (HMGET
-- reads only this limiter's fields, so ``existed`` does not tell), so
-- its expiry is never cut (kept_expiry).
local function save_hash(key, specs, states, fields, before, existed, reset)
  local changed = {}
  local at = false
  for i = 1, #specs do
    local state = states[i]
    local value = struct.pack((log_shape(specs[i].capacity)), state[1], state[2], state[3],
      state[4], state[5], state[6], state[7], 0, 0, 0, 0)
    if value ~= before[i] then
      changed[#changed + 1] = fields[i]
      changed[#changed + 1] = value
    end
    if state.expire then
      state.expire = false
      if not at or state[7] > at then
        at = state[7]
      end
    end
  end
  if #changed > 0 and (existed or reset > 0) then
    if at then
      at = kept_expiry(key, at)
    end
    redis.call('HSET', key, unpack(changed))
    if at then
      redis.call('PEXPIREAT', key, decimal(at))
    end
  end
end
