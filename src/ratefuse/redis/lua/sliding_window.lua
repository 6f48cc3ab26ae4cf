-- Sliding window counter, as
-- ratefuse/core/algorithms/_sliding_window_py.py: per limit the window
-- index (<id>:w) and the units admitted in it (<id>:c) and in the window
-- before (<id>:p). Compared multiplied through by the period.

-- retry_offset is the offset from the window start at which cost fits;
-- precondition: cost <= limit and it does not fit now.
local function retry_offset(period, limit, cur, prev, cost)
  local room = limit - cur - cost
  if room >= 0 then
    local needed = period - idiv(room * period, prev)
    if needed < period then
      return needed
    end
  end
  if cur == 0 then
    return period
  end
  local needed = period - idiv((limit - cost) * period, cur)
  return period + (needed > 0 and needed or 0)
end

local function sliding_window_step(spec, state, now, cost, commit)
  local period, limit = spec.period, spec.capacity
  local window, cur, prev = state[1], state[2], state[3]
  local current = idiv(now, period)
  if current > window then
    prev = current == window + 1 and cur or 0
    window, cur = current, 0
  end
  local start = window * period
  local elapsed = now > start and now - start or 0
  local weighted_prev = prev * (period - elapsed)
  local allowed, retry
  if cost > limit then
    allowed, retry = false, NEVER
  elseif weighted_prev + (cur + cost) * period <= limit * period then
    allowed, retry = true, 0
    if commit then
      cur = cur + cost
    end
  else
    allowed = false
    retry = retry_offset(period, limit, cur, prev, cost) + start - now
  end
  if commit then
    state[1], state[2], state[3] = window, cur, prev
  end
  local remaining = idiv(limit * period - weighted_prev - cur * period, period)
  local reset = 0
  if cur > 0 then
    reset = start + 2 * period - now
  elseif prev > 0 then
    reset = start + period - now
  end
  return allowed, remaining > 0 and remaining or 0, retry, reset
end

-- A stored window and the one before hold at most the limit each, and it
-- is not after now's, or the next one (a server clock that went back, as
-- in fixed_window). Drained: the current window full, none before.
local function sliding_window_valid(spec, state, now)
  local limit = spec.capacity
  return state[1] <= latest_window(spec, now) and state[2] <= limit
    and state[3] <= limit
end

local function sliding_window_drain(spec, state, now)
  state[1], state[2], state[3] = idiv(now, spec.period), spec.capacity, 0
end

return run({
  suffixes = {':w', ':c', ':p'},
  step = sliding_window_step,
  valid = sliding_window_valid,
  drain = sliding_window_drain,
})
