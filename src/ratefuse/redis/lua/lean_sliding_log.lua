-- The lean sliding log: one subject, one limit, on log_header.lua's
-- layout, as sliding_log.lua's step decides it (and so as
-- ratefuse/core/algorithms/_sliding_log_py.py does), without tables:
-- HGET of the header, HSET of the header and the new entry, an entry read
-- only when the oldest expires (once per entry) or a denial needs more
-- than the oldest frees, the expiry only when the newest entry outlives
-- it. A header or entry it does not read (damage, which the general path
-- repairs or refuses by name) returns nil before anything is written.
-- Its maker takes lean.lua's arguments (the id from the prefix; read and
-- size, the "string" layout's, unused; span: the period).
--
-- Replies: the integer reset * (limit + 1) + total when admitted (below
-- 2^53), else 24 bytes, the little-endian doubles retry, total and reset,
-- retry 0 when admitted (a denial's is at least 1, or -1: never); total
-- is the units logged after the decision (remaining = limit - total) and
-- reset the time to the newest entry's end (ratefuse/redis/_lean.py).

local function sliding_log_lean(prefix, _, _, limit, period)
  local id = string.sub(prefix, 1, -2)
  local format, bytes = LOG_FORMAT, LOG_BYTES
  if limit > 64 then
    format, bytes = LOG_WIDE, LOG_WIDE_BYTES
  end
  return function(key, now, cost)
    local raw = lean_call('HGET', key, id)
    local head, count, total, oldest, units, newest, expires = 0, 0, 0, 0, 0, 0, 0
    if raw then
      if #raw ~= bytes then
        return nil
      end
      head, count, total, oldest, units, newest, expires = lean_unpack(format, raw)
      -- log_valid, inline (a call a decision costs a measurable share).
      if head >= limit or count > limit or total > limit or newest >= LOG_MAX
          or expires >= LOG_MAX or count == 0 and total ~= 0
          or count > 0 and (total < count or units < 1 or units > total or oldest > newest
            or count == 1 and (units ~= total or oldest ~= newest)) then
        return nil
      end
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
            return nil
          end
          oldest, units = log_entry(lean_call('HGET', key, log_field(id, head)), limit)
          if not oldest then
            return nil
          end
        until oldest + period > now
        if units > total or total < count then
          return nil
        end
      end
    end
    local retry = 0
    local slot, stamp = false, now
    if cost > limit then
      retry = -1
    elseif total + cost <= limit then
      if cost > 0 then
        if count > 0 and newest > now then
          stamp = newest
        end
        slot = (head + count) % limit
        if count == 0 then
          oldest, units = stamp, cost
        end
        count, total, newest, changed = count + 1, total + cost, stamp, true
      end
    else
      local excess = total + cost - limit
      stamp = oldest
      if excess > units then
        local freed, at = units, head
        for _ = 2, count do
          at = (at + 1) % limit
          local units_at
          stamp, units_at = log_entry(lean_call('HGET', key, log_field(id, at)), limit)
          if not stamp then
            return nil
          end
          freed = freed + units_at
          if freed >= excess then
            break
          end
        end
        if freed < excess then
          return nil
        end
      end
      retry = stamp + period - now
    end
    local reset = 0
    if count > 0 then
      reset = newest + period - now
    end
    if changed then
      -- The header keeps the expiry this limit needs (as the general step),
      -- the key gets it or a later one it has (kept_expiry).
      local expire = false
      if count > 0 and log_needs(newest, period, expires) then
        expires = log_expiry(newest, period)
        expire = kept_expiry(key, expires)
      end
      local header = lean_pack(format, head, count, total, oldest, units, newest, expires,
        0, 0, 0, 0)
      if slot then
        lean_call('HSET', key, id, header, log_field(id, slot),
          lean_pack(LOG_ENTRY, newest, cost))
      else
        lean_call('HSET', key, id, header)
      end
      if expire then
        lean_call('PEXPIREAT', key, lean_format('%d', expire))
      end
    end
    if retry == 0 then
      local payload = reset * (limit + 1) + total
      if payload < 9007199254740992 then
        return payload
      end
    end
    return lean_pack('<ddd', retry, total, reset)
  end
end
