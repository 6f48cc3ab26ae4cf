-- The lean single decisions: one subject, one limit, a value that is
-- exactly this limit's entry in the "string" layout (or no value). Each
-- does only what that decision needs: no tables, no prelude, integer
-- arithmetic on doubles (exact below 2^53: a % b is a - floor(a / b) * b
-- in C, exact there, so (a - a % b) / b is the exact quotient), and one
-- integer as the reply, from which the client rebuilds the verdict
-- exactly (ratefuse/redis/_lean.py). A value they do not read (other
-- limits beside this one, damage, a state no decision leaves) returns nil:
-- the caller decides it on the general path, which reads and repairs
-- everything. Used by the Functions library (library.lua, with the limit
-- parsed once) and by the lean EVALSHA scripts (lean_script.lua).
--
-- Each maker takes one limit: prefix (its field id and a space, as its
-- entry starts), read (the struct format of the whole entry: 'c<#prefix>'
-- then the words, see string_layout.lua), size (the entry's length in
-- bytes), capacity, and span (gcra: the emission interval T; the windows:
-- the period), and returns its decider, decide(key, now, cost) with now
-- in integer us: a closure, so that what a decision reads of its limit
-- is an upvalue (the library keeps one per limit; a Lua call, and a table
-- lookup, cost hundreds of the server's instructions each). A value is
-- read when it has exactly the entry's size and prefix, and each word is
-- one the scripts write: an integer from 0 (NaN fails every comparison, a
-- fraction w % 1 == 0), within the algorithm's valid bounds (all below
-- 2^53, see _wire_limits.py).
--
-- Replies: v >= 0 means admitted, v < 0 denied with payload -v - 1.

local lean_call, lean_format = redis.call, string.format
local lean_pack, lean_unpack = struct.pack, struct.unpack

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

-- The maker of the lean decider of each algorithm that has one.
local LEAN = {
  gcra = gcra_lean,
  fixed_window = fixed_window_lean,
  sliding_window = sliding_window_lean,
}
