-- fixed_window_lean: the payload is window_end * (capacity + 1) + count,
-- window_end (time to the window's end, at most two periods) and count
-- after the decision; the client sends here only limits where that stays
-- below 2^53. A write in the same window keeps the key's expiry (KEEPTTL),
-- which is a function of the window alone: every write of a window with
-- a count set the same PXAT, so the expiry is the same and old keys
-- decide alike.
local function fixed_window_lean(prefix, read, size, capacity, period)
  return function(key, now, cost)
    local raw = lean_call('GET', key)
    local current = (now - now % period) / period
    local window, count = 0, 0
    if raw then
      if #raw ~= size then
        return nil
      end
      local id
      id, window, count = lean_unpack(read, raw)
      -- fixed_window_valid: the next window at most (a clock gone back).
      -- Each w % 1 is in [0, 1) or NaN: their sum is 0 when both are 0.
      if id ~= prefix or not (window <= current + 1 and count <= capacity and window >= 0
          and count >= 0 and window % 1 + count % 1 == 0) then
        return nil
      end
    end
    local new_window, new_count = window, count
    if current > window then
      new_window, new_count = current, 0
    end
    local window_end = (new_window + 1) * period - now
    local allowed = cost <= capacity and new_count + cost <= capacity
    if allowed then
      new_count = new_count + cost
    end
    if (new_window ~= window or new_count ~= count) and (raw or new_count > 0) then
      local value = lean_pack('c0<dd', prefix, new_window, new_count)
      if raw and new_window == window and count > 0 then
        lean_call('SET', key, value, 'KEEPTTL')
      else
        local at = now
        if new_count > 0 then
          at = now + window_end
        end
        lean_call('SET', key, value, 'PXAT', lean_format('%d', (at - at % 1000) / 1000 + 1))
      end
    end
    local payload = window_end * (capacity + 1) + new_count
    if allowed then
      return payload
    end
    return -payload - 1
  end
end
