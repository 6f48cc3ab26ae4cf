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

-- No admission leaves tat beyond now + tau; a server clock that went back
-- by up to tau (a failover) is honoured, further ahead is damage, which
-- would deny for longer than the limit ever does. Drained: the bucket
-- just emptied.
local function gcra_valid(spec, state, now)
  -- The bound is one per call (one now): a batch computes it once.
  local latest = spec.latest
  if not latest then
    latest = now + 2 * spec.interval * spec.capacity
    spec.latest = latest
  end
  return state[1] <= latest
end

local function gcra_drain(spec, state, now)
  state[1] = now + spec.interval * spec.capacity
end

return run({suffixes = {''}, step = gcra_step, valid = gcra_valid, drain = gcra_drain})
