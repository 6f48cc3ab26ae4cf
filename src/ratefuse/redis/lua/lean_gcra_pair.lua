-- gcra_pair_lean: a compound of two gcra limits (library only: first
-- and second are its parsed limits, read and size those of their value
-- as encode_string writes it, the two entries in order). Both admit and
-- both consume, or neither does. There is no sign: the payload is the
-- two backlogs before the decision, b1 * (tau2 + 1) + b2 when each is at
-- most its tau (always, but after the server's clock went back) and
-- that stays below 2^53, else the reply is the two integers {b1, b2};
-- the client derives each limit's verdict and combines them.
local function gcra_pair_lean(first, second, read, size)
  local prefix1, capacity1, interval1 = first.prefix, first.capacity, first.interval
  local prefix2, capacity2, interval2 = second.prefix, second.capacity, second.interval
  local tau1, tau2 = capacity1 * interval1, capacity2 * interval2
  local fits = (tau1 + 1) * (tau2 + 1) < 9007199254740992
  return function(key, now, cost)
    local raw = lean_call('GET', key)
    local tat1, tat2 = 0, 0
    if raw then
      if #raw ~= size then
        return nil
      end
      local id1, id2
      id1, tat1, id2, tat2 = lean_unpack(read, raw)
      if id1 ~= prefix1 or id2 ~= prefix2
        or not (tat1 <= now + 2 * tau1 and tat2 <= now + 2 * tau2 and tat1 >= 0 and tat2 >= 0
          and tat1 % 1 + tat2 % 1 == 0) then
        return nil
      end
    end
    local start1 = tat1 > now and tat1 or now
    local start2 = tat2 > now and tat2 or now
    local new1, new2 = start1 + cost * interval1, start2 + cost * interval2
    if cost <= capacity1 and cost <= capacity2 and new1 - now <= tau1 and new2 - now <= tau2
      and (new1 ~= tat1 or new2 ~= tat2) and (raw or new1 > now or new2 > now) then
      -- As gcra_lean's expiry, for the later tat: kept (KEEPTTL) when
      -- the stored later tat has the same millisecond.
      local value = lean_pack('c0<dc0<d', prefix1, new1, prefix2, new2)
      local latest = new1 > new2 and new1 or new2
      local at = latest - latest % 1000
      local before = tat1 > tat2 and tat1 or tat2
      if raw and at == before - before % 1000 then
        lean_call('SET', key, value, 'KEEPTTL')
      else
        lean_call('SET', key, value, 'PXAT', lean_format('%d', at / 1000 + 1))
      end
    end
    local backlog1, backlog2 = start1 - now, start2 - now
    if fits and backlog1 <= tau1 and backlog2 <= tau2 then
      return backlog1 * (tau2 + 1) + backlog2
    end
    return {backlog1, backlog2}
  end
end
