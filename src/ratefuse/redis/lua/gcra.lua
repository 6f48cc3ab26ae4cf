-- GCRA, as ratefuse/core/algorithms/_gcra_py.py: one field per limit, the
-- theoretical arrival time tat. Admit cost c iff
-- max(tat, now) + c*T - now <= tau.
local function gcra_step(spec, state, now, cost, commit)
  local interval = spec.interval
  local tau = interval * spec.capacity
  local tat = state[1]
  local start = tat > now and tat or now
  local allowed, retry
  if cost > spec.capacity then
    allowed, retry = false, NEVER
  else
    local new_tat = start + cost * interval
    allowed = new_tat - now <= tau
    if allowed then
      retry = 0
      if commit then
        start = new_tat
        state[1] = new_tat
      end
    else
      retry = new_tat - tau - now
    end
  end
  local backlog = start - now
  local remaining = 0
  if backlog <= tau then
    remaining = idiv(tau - backlog, interval)
  end
  return allowed, remaining, retry, backlog
end

return run({suffixes = {''}, step = gcra_step})
