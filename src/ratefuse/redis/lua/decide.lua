-- decide_key decides cost for one subject against every limit, all or
-- nothing, as the compound limit's decide (ratefuse/core/_compound_py.py).
-- raw is the subject's value in the "string" layout (false: none; the
-- "hash" layout is read here); returns the verdict's five integers and the
-- value now stored.
local function decide_key(algorithm, key, specs, now, cost, raw)
  local width = algorithm.width
  local states, layout, before, existed
  if algorithm.hash then
    states, layout, before, existed = load_hash(key, specs)
  else
    states, layout, before = load_string(raw, specs, width)
  end
  -- A damaged state is repaired and written back, decision or not.
  local repaired = repair_states(algorithm, specs, states, now, key)
  local step = algorithm.step
  local allowed, remaining, retry, reset, binding
  local commit = true
  if #specs == 1 then
    allowed, remaining, retry, reset = step(specs[1], states[1], now, cost, true, key)
    binding = 0
  else
    local verdicts = {}
    for i = 1, #specs do
      local verdict = {step(specs[i], states[i], now, cost, false, key)}
      verdicts[i] = verdict
      commit = commit and verdict[1]
    end
    if commit then
      for i = 1, #specs do
        verdicts[i] = {step(specs[i], states[i], now, cost, true, key)}
      end
    end
    allowed, remaining, retry, reset, binding = combine(verdicts)
  end
  if commit or repaired then
    local at = expiry(now, reset)
    if algorithm.hash then
      save_hash(key, specs, states, layout, before, existed, reset)
    else
      raw = save_string(key, specs, width, states, layout, before, raw, at, reset)
    end
  end
  return allowed and 1 or 0, remaining, retry, reset, binding, raw
end
