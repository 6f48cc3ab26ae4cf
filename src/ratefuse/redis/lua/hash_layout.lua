-- The "hash" layout of a subject's key (sliding_log): a hash with
-- <id><suffix> fields for each limit's state words, beside the entries of
-- the log (HSET, then PEXPIREAT).

-- load_hash reads the "hash" layout; its second result is the field names.
local function load_hash(key, specs, width, suffixes)
  -- Made once per specs table: the library keeps its specs across calls.
  local fields = specs.fields
  if not fields then
    fields = {}
    for i = 1, #specs do
      for s = 1, width do
        fields[#fields + 1] = specs[i].id .. suffixes[s]
      end
    end
    specs.fields = fields
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
      local value = word(raw[j])
      -- A damaged word is written again whatever replaces it.
      before[j] = value
      if not value then
        state.invalid, value = true, 0
      end
      state[s] = value
    end
    states[i] = state
  end
  return states, fields, before, existed
end

-- save_hash writes the state words that changed, as save_string. The
-- hash may hold other limiters' limits (HMGET reads only this limiter's
-- fields, so ``existed`` does not tell), so its expiry is never cut
-- (kept_expiry): this limiter's own entries only ever need a later one.
local function save_hash(key, specs, width, states, fields, before, existed, at, reset)
  local changed = {}
  changed_words(states, width, before, fields, changed)
  if #changed > 0 and (existed or reset > 0) then
    at = kept_expiry(key, at)
    redis.call('HSET', key, unpack(changed))
    redis.call('PEXPIREAT', key, decimal(4, at))
  end
end
