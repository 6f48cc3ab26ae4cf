-- Sliding log, as ratefuse/core/algorithms/_sliding_log_py.py, on
-- log_header.lua's layout: per limit a ring of `limit` entries in the
-- subject's hash and a header field holding head, count, total, the
-- oldest live entry, the newest stamp and the expiry last set (state
-- words 1 to 7). lean_sliding_log.lua decides one limit alike, and leaves the
-- same header, with fewer calls.
-- The limit is capped (rates.SLIDING_LOG_MAX_LIMIT) because the ring is.

-- A log whose entries disagree with its header is refused with an error
-- naming the key and the entry (<id>:<slot>): a live entry it reads
-- missing or not one the script writes (10 bytes, units from 1 to the
-- limit), or live units that do not add up to the header's total. A repair of one
-- entry cannot restore the total, and a total its entries never free
-- would make a scan for the retry loop forever (a busy script blocks the
-- server). The key expires with its last entry (at most a period and an
-- eighth), or `reset` deletes it; until then the failure policy answers
-- for that subject.
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
  local value = redis.call('HGET', key, log_field(spec.id, slot))
  if not value then
    return damaged(key, 'live entry ' .. spec.id .. ':' .. slot .. ' is missing')
  end
  local stamp, units = log_entry(value, spec.capacity)
  if not stamp then
    return damaged(key, 'entry ' .. spec.id .. ':' .. slot .. ' is '
      .. string.format('%q', string.sub(value, 1, 40)) .. ', not <stamp><units>')
  end
  cache[slot] = {stamp, units}
  return stamp, units
end

-- retry_stamp is the stamp of the entry whose expiry frees `excess` units,
-- among the `count` live entries from `head` (the oldest's stamp and
-- units known).
local function retry_stamp(key, spec, cache, head, count, excess, oldest, units)
  if excess <= units then
    return oldest
  end
  local freed = units
  for _ = 2, count do
    head = (head + 1) % spec.capacity
    local stamp, more = entry(key, spec, cache, head)
    freed = freed + more
    if freed >= excess then
      return stamp
    end
  end
  return damaged(key, 'its total exceeds its live entries')
end

local function sliding_log_step(spec, state, now, cost, commit, key)
  local period, limit = spec.period, spec.capacity
  local head, count, total = state[1], state[2], state[3]
  local oldest, units, newest = state[4], state[5], state[6]
  local cache = state.entries
  if not cache then
    cache = {}
    state.entries = cache
  end
  local changed = false
  if count > 0 and oldest + period <= now then
    changed = true
    if newest + period <= now then
      head, count, total = (head + count) % limit, 0, 0
    else
      repeat
        total, head, count = total - units, (head + 1) % limit, count - 1
        if count == 0 then
          return damaged(key, 'its total does not match its live entries')
        end
        oldest, units = entry(key, spec, cache, head)
      until oldest + period > now
      if units > total or total < count then
        return damaged(key, 'its total does not match its live entries')
      end
    end
  end
  local allowed, retry
  if cost > limit then
    allowed, retry = false, NEVER
  elseif total + cost <= limit then
    allowed, retry = true, 0
    if cost > 0 and commit then
      local stamp = now
      if count > 0 and newest > now then
        stamp = newest
      end
      local slot = (head + count) % limit
      redis.call('HSET', key, log_field(spec.id, slot), struct.pack(LOG_ENTRY, stamp, cost))
      cache[slot] = {stamp, cost}
      if count == 0 then
        oldest, units = stamp, cost
      end
      count, total, newest, changed = count + 1, total + cost, stamp, true
    end
  else
    allowed = false
    retry = retry_stamp(key, spec, cache, head, count, total + cost - limit, oldest, units)
      + period - now
  end
  if commit and changed then
    state[1], state[2], state[3] = head, count, total
    state[4], state[5], state[6] = oldest, units, newest
    if count > 0 and log_needs(newest, period, state[7]) then
      state[7], state.expire = log_expiry(newest, period), true
    end
  end
  local reset = 0
  if count > 0 then
    reset = newest + period - now
  end
  return allowed, limit - total, retry, reset
end

-- A stored header is one the scripts write (log_valid).
local function sliding_log_valid(spec, state)
  return log_valid(spec.capacity, state[1], state[2], state[3], state[4], state[5],
    state[6], state[7])
end

-- Drained: one entry of the whole limit, now.
local function sliding_log_drain(spec, state, now, key)
  local limit = spec.capacity
  state[1], state[2], state[3], state[4], state[5], state[6] = 0, 1, limit, now, limit, now
  state[7], state.expire = log_expiry(now, spec.period), true
  redis.call('HSET', key, log_field(spec.id, 0), struct.pack(LOG_ENTRY, now, limit))
  state.entries = {[0] = {now, limit}}
end

return run({
  suffixes = {''},
  step = sliding_log_step,
  hash = true,
  valid = sliding_log_valid,
  drain = sliding_log_drain,
})
