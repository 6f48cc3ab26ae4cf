-- Fixed window counter, as ratefuse/core/algorithms/_fixed_window_py.py:
-- per limit the window index (<id>:w) and the units admitted in it (<id>:c).
local function fixed_window_step(spec, state, now, cost, commit)
  local period, limit = spec.period, spec.capacity
  local window, count = state[1], state[2]
  local current = idiv(now, period)
  if current > window then
    window, count = current, 0
  end
  local window_end = (window + 1) * period - now
  local allowed, retry
  if cost > limit then
    allowed, retry = false, NEVER
  elseif count + cost <= limit then
    allowed, retry = true, 0
    if commit then
      count = count + cost
    end
  else
    allowed, retry = false, window_end
  end
  if commit then
    state[1], state[2] = window, count
  end
  return allowed, limit - count, retry, count > 0 and window_end or 0
end

-- A stored window holds at most the limit and is not after now's, or the
-- next one when the server clock went back (by up to a period: honoured;
-- further ahead is damage). Drained: the current window, full.
local function fixed_window_valid(spec, state, now)
  return state[1] <= latest_window(spec, now) and state[2] <= spec.capacity
end

local function fixed_window_drain(spec, state, now)
  state[1], state[2] = idiv(now, spec.period), spec.capacity
end

return run({
  suffixes = {':w', ':c'},
  step = fixed_window_step,
  valid = fixed_window_valid,
  drain = fixed_window_drain,
})
