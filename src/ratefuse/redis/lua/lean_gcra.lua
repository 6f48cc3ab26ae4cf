-- gcra_lean: the payload is the backlog (max(tat, now) - now once
-- decided: reset_after), below 2^51 (tat at most now + 2 tau).
local function gcra_lean(prefix, read, size, capacity, interval)
  local tau = interval * capacity
  return function(key, now, cost)
    local raw = lean_call('GET', key)
    local tat = 0
    if raw then
      if #raw ~= size then
        return nil
      end
      local id
      id, tat = lean_unpack(read, raw)
      -- gcra_valid: a clock that went back by up to tau is honoured.
      if id ~= prefix or not (tat <= now + 2 * tau and tat >= 0 and tat % 1 == 0) then
        return nil
      end
    end
    local start = tat > now and tat or now
    if cost <= capacity then
      local new_tat = start + cost * interval
      if new_tat - now <= tau then
        -- As save_string: a changed state, and a new subject's only when
        -- it carries information (reset > 0). Expiry: floor(tat / 1000) + 1
        -- ms, kept (KEEPTTL) when the stored tat has the same: every write
        -- of a tat sets that expiry (or, beside other limits, a later one).
        if new_tat ~= tat and (raw or new_tat > now) then
          local value = lean_pack('c0<d', prefix, new_tat)
          local at = new_tat - new_tat % 1000
          if raw and at == tat - tat % 1000 then
            lean_call('SET', key, value, 'KEEPTTL')
          else
            lean_call('SET', key, value, 'PXAT', lean_format('%d', at / 1000 + 1))
          end
        end
        return new_tat - now
      end
    end
    return now - start - 1
  end
end
