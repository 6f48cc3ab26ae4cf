-- The lean sliding log: one subject, one limit, on log_header.lua's
-- layout, as sliding_log.lua's step decides it (and so as
-- ratefuse/core/algorithms/_sliding_log_py.py does), without tables:
-- HGET of the header, HSET of the header and the new entry, entries read
-- only when the oldest expires and the header's cache of the next two is
-- empty (HMGET of three) or a denial needs more than the oldest and the
-- cache free, the expiry only when the newest entry outlives it. A header or entry it
-- does not read (damage, which the general path repairs or refuses by
-- name) returns nil before anything is written. Its arguments are
-- lean.lua's deciders' (the pattern unused, span the period): the library
-- registers it in lean.lua's LEAN (lean_log_library.lua), the lean
-- EVALSHA script calls it (lean_log_script.lua).
--
-- Replies: the integer reset * (limit + 1) + total when admitted (below
-- 2^53), else the three integers {retry, total, reset}, retry 0 when
-- admitted (a denial's is at least 1, or -1: never); total is the units
-- logged after the decision (remaining = limit - total) and reset the
-- time to the newest entry's end (ratefuse/redis/_lean.py reads it).

local log_call, log_format, log_pack, log_unpack =
  redis.call, string.format, struct.pack, struct.unpack

local function sliding_log_lean(key, now, cost, id, _, limit, period)
  local raw = log_call('HGET', key, id)
  local head, count, total, oldest, units, newest, expires = 0, 0, 0, 0, 0, 0, 0
  -- The cache: how many entries after the oldest it holds, and those two.
  local cached, stamp1, units1, stamp2, units2 = 0, 0, 0, 0, 0
  local format, bytes = LOG_FORMAT, LOG_BYTES
  if limit > 64 then
    format, bytes = LOG_WIDE, LOG_WIDE_BYTES
  end
  if raw then
    if #raw ~= bytes then
      return nil
    end
    head, count, total, oldest, units, newest, expires, cached, stamp1, units1, stamp2,
      units2 = log_unpack(format, raw)
    if not log_valid(limit, head, count, total, oldest, units, newest, expires)
        or cached > 0 and not log_cache_valid(count, total, oldest, units, newest, cached,
          stamp1, units1, stamp2, units2) then
      return nil
    end
  end
  local changed = false
  if count > 0 and oldest + period <= now then
    changed = true
    if newest + period <= now then
      head, count, total, cached = (head + count) % limit, 0, 0, 0
    else
      repeat
        total, head, count = total - units, (head + 1) % limit, count - 1
        if count == 0 then
          return nil
        end
        if cached > 0 then
          oldest, units, stamp1, units1, cached = stamp1, units1, stamp2, units2, cached - 1
        else
          -- The new oldest and the next two, into the cache.
          local got = log_call('HMGET', key, log_field(id, head),
            log_field(id, (head + 1) % limit), log_field(id, (head + 2) % limit))
          oldest, units = log_entry(got[1], limit)
          cached = count >= 3 and 2 or count - 1
          if cached > 0 then
            stamp1, units1 = log_entry(got[2], limit)
            if cached > 1 and stamp1 then
              stamp2, units2 = log_entry(got[3], limit)
              stamp1 = stamp2 and stamp1
            end
          end
          if not (oldest and stamp1) then
            return nil
          end
        end
      until oldest + period > now
      if units > total or total < count
          or cached > 0 and not log_cache_valid(count, total, oldest, units, newest, cached,
            stamp1, units1, stamp2, units2) then
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
        oldest, units, cached = stamp, cost, 0
      elseif cached == count - 1 and cached < 2 then
        if cached == 0 then
          stamp1, units1 = stamp, cost
        else
          stamp2, units2 = stamp, cost
        end
        cached = cached + 1
      end
      count, total, newest, changed = count + 1, total + cost, stamp, true
    end
  else
    local excess = total + cost - limit
    stamp = oldest
    if excess > units then
      -- The entries after the oldest, from the cache first.
      local freed, at = units, head
      for index = 1, count - 1 do
        at = (at + 1) % limit
        local more
        if index <= cached then
          if index == 1 then
            stamp, more = stamp1, units1
          else
            stamp, more = stamp2, units2
          end
        else
          stamp, more = log_entry(log_call('HGET', key, log_field(id, at)), limit)
          if not stamp then
            return nil
          end
        end
        freed = freed + more
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
    -- the key gets it or a later one it has (log_kept).
    local expire = false
    if count > 0 and log_needs(newest, period, expires) then
      expires = log_expiry(newest, period)
      expire = log_kept(key, expires)
    end
    local header = log_pack(format, head, count, total, oldest, units, newest, expires,
      cached, stamp1, units1, stamp2, units2)
    if slot then
      log_call('HSET', key, id, header, log_field(id, slot), log_pack(LOG_ENTRY, newest, cost))
    else
      log_call('HSET', key, id, header)
    end
    if expire then
      log_call('PEXPIREAT', key, log_format('%d', expire))
    end
  end
  if retry == 0 then
    local payload = reset * (limit + 1) + total
    if payload < 9007199254740992 then
      return payload
    end
  end
  return {retry, total, reset}
end
