-- Sliding log, as ratefuse/core/algorithms/_sliding_log_py.py: per limit
-- a ring of `limit` entries (<id>:<slot> = "stamp:cost") with its head
-- (<id>:h), entry count (<id>:n) and cost total (<id>:t), all in the
-- subject's hash.
-- The limit is capped (rates.SLIDING_LOG_MAX_LIMIT) because the ring is.

-- A log whose entries disagree with its words is refused with an error
-- naming the key: a live entry missing or not one the script writes
-- ("<stamp>:<units>", both words, units from 1 to the limit), or live
-- units that do not add up to the stored total. A repair of one entry
-- cannot restore the total, and a total its entries never free would
-- make retry_stamp loop forever (a busy script blocks the server). The
-- key expires with its last entry (at most a period), or `reset` deletes
-- it; until then the failure policy answers for that subject.
local function damaged(key, what)
  return error('ratefuse: sliding_log key ' .. key .. ': ' .. what)
end

-- entry reads live ring slot `slot` once per script call (pass 1 and pass
-- 2 of a compound limit read the same entries).
local function entry(key, spec, cache, slot)
  local cached = cache[slot]
  if cached then
    return cached[1], cached[2]
  end
  local field = spec.id .. ':' .. slot
  local value = redis.call('HGET', key, field)
  if not value then
    return damaged(key, 'live entry ' .. field .. ' is missing')
  end
  local first, second = string.match(value, '^(%d+):(%d+)$')
  local stamp, units = first and word(first), second and word(second)
  if not (stamp and units and units >= 1 and units <= spec.capacity) then
    return damaged(key, 'entry ' .. field .. ' is '
      .. string.format('%q', string.sub(value, 1, 40)) .. ', not <stamp>:<units>')
  end
  cache[slot] = {stamp, units}
  return stamp, units
end

-- retry_stamp is the stamp of the entry whose expiry frees `excess` units,
-- among the `count` live entries from `head`.
local function retry_stamp(key, spec, cache, head, count, excess)
  local freed = 0
  for _ = 1, count do
    local stamp, units = entry(key, spec, cache, head)
    freed = freed + units
    if freed >= excess then
      return stamp
    end
    head = (head + 1) % spec.capacity
  end
  return damaged(key, 'its total exceeds its live entries')
end

local function sliding_log_step(spec, state, now, cost, commit, key)
  local period, limit = spec.period, spec.capacity
  local head, count, total = state[1], state[2], state[3]
  local cache = state.entries
  if not cache then
    cache = {}
    state.entries = cache
  end
  while count > 0 do
    local stamp, units = entry(key, spec, cache, head)
    if stamp + period > now then
      break
    end
    total = total - units
    head = (head + 1) % limit
    count = count - 1
  end
  if total < 0 or (count == 0 and total ~= 0) then
    return damaged(key, 'its total does not match its live entries')
  end
  local newest = now
  if count > 0 then
    newest = entry(key, spec, cache, (head + count - 1) % limit)
  end
  local allowed, retry
  if cost > limit then
    allowed, retry = false, NEVER
  elseif total + cost <= limit then
    allowed, retry = true, 0
    if cost > 0 and commit then
      if newest < now then
        newest = now
      end
      local slot = (head + count) % limit
      redis.call('HSET', key, spec.id .. ':' .. slot,
        string.format('%d:%d', newest, cost))
      cache[slot] = {newest, cost}
      count = count + 1
      total = total + cost
    end
  else
    allowed = false
    retry = retry_stamp(key, spec, cache, head, count, total + cost - limit) + period - now
  end
  if commit then
    state[1], state[2], state[3] = head, count, total
  end
  local reset = 0
  if count > 0 then
    reset = newest + period - now
  end
  return allowed, limit - total, retry, reset
end

-- A stored ring position is inside the ring, and the log holds at most
-- the limit. Drained: one entry of the whole limit, now.
local function sliding_log_valid(spec, state)
  local limit = spec.capacity
  return state[1] < limit and state[2] <= limit and state[3] <= limit
end

local function sliding_log_drain(spec, state, now, key)
  state[1], state[2], state[3] = 0, 1, spec.capacity
  redis.call('HSET', key, spec.id .. ':0', string.format('%d:%d', now, spec.capacity))
  state.entries = {[0] = {now, spec.capacity}}
end

return run({
  suffixes = {':h', ':n', ':t'},
  step = sliding_log_step,
  hash = true,
  valid = sliding_log_valid,
  drain = sliding_log_drain,
})
