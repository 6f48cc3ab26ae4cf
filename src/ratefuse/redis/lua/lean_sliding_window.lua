-- sliding_window_lean: the payload holds, once decided, the count of
-- the window (cur) and of the one before (prev), and e = now - start +
-- period in [0, 2 periods): (e * (capacity + 1) + prev) * (capacity + 1)
-- + cur when that stays below 2^53 (fits), else the three as little-endian
-- doubles, e (-e - 1: denied), prev, cur: 24 bytes, a bulk reply, which
-- costs the server less than a table; but an admission that leaves units
-- in the window (cur > 0: the reset follows from e) replies e * (capacity
-- + 1) + remaining, cheaper still and the common decision of a large
-- limit: below 2 * capacity * period + 2^51, hence 2^53, as capacity *
-- period is at most 2^50 (_wire_limits.py). A write in the same window
-- after one with a count keeps the key's expiry (KEEPTTL: (window + 2)
-- periods, a function of the window alone), as fixed_window_lean's.
local function sliding_window_lean(prefix, read, size, capacity, period)
  local base = capacity + 1
  local fits = (2 * period + 1) * base * base < 9007199254740992
  local room = capacity * period
  return function(key, now, cost)
    local raw = lean_call('GET', key)
    local current = (now - now % period) / period
    local window, cur, prev = 0, 0, 0
    if raw then
      if #raw ~= size then
        return nil
      end
      local id
      id, window, cur, prev = lean_unpack(read, raw)
      -- sliding_window_valid, and words the scripts write (as above).
      if id ~= prefix or not (window <= current + 1 and cur <= capacity and prev <= capacity
          and window >= 0 and cur >= 0 and prev >= 0
          and window % 1 + cur % 1 + prev % 1 == 0) then
        return nil
      end
    end
    local new_window, new_cur, new_prev = window, cur, prev
    if current > window then
      new_prev = current == window + 1 and cur or 0
      new_window, new_cur = current, 0
    end
    local start = new_window * period
    local elapsed = now > start and now - start or 0
    local allowed = cost <= capacity
      and new_prev * (period - elapsed) + (new_cur + cost) * period <= room
    if allowed then
      new_cur = new_cur + cost
    end
    if new_window ~= window or new_cur ~= cur or new_prev ~= prev then
      local reset = 0
      if new_cur > 0 then
        reset = start + 2 * period - now
      elseif new_prev > 0 then
        reset = start + period - now
      end
      if raw or reset > 0 then
        local value = lean_pack('c0<ddd', prefix, new_window, new_cur, new_prev)
        if raw and new_window == window and cur > 0 then
          lean_call('SET', key, value, 'KEEPTTL')
        else
          local at = now + reset
          lean_call('SET', key, value, 'PXAT', lean_format('%d', (at - at % 1000) / 1000 + 1))
        end
      end
    end
    local e = now - start + period
    if fits then
      local payload = (e * base + new_prev) * base + new_cur
      if allowed then
        return payload
      end
      return -payload - 1
    end
    if allowed and new_cur > 0 then
      -- The common admission's short form: remaining, as the step's.
      local left = room - new_prev * (period - elapsed) - new_cur * period
      return e * base + (left - left % period) / period
    end
    return lean_pack('<ddd', allowed and e or -e - 1, new_prev, new_cur)
  end
end
