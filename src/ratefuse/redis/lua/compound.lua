-- later orders retry delays with NEVER as the latest.
local function later(retry, than)
  if than == NEVER then
    return false
  end
  return retry == NEVER or retry > than
end

-- Compound limits: one subject decided against several limits at once.

-- combine merges the verdicts of a compound limit, as combine in
-- ratefuse/core/_compound_py.py.
local function combine(verdicts)
  local allowed = true
  for i = 1, #verdicts do
    if not verdicts[i][1] then
      allowed = false
    end
  end
  local binding, retry = 1, 0
  local remaining, reset = verdicts[1][2], verdicts[1][4]
  for i = 1, #verdicts do
    local verdict, best = verdicts[i], verdicts[binding]
    if allowed then
      if verdict[2] < best[2] then
        binding = i
      end
    elseif not verdict[1] and (best[1] or later(verdict[3], best[3])) then
      binding = i
    end
    if later(verdict[3], retry) then
      retry = verdict[3]
    end
    if verdict[2] < remaining then
      remaining = verdict[2]
    end
    if verdict[4] > reset then
      reset = verdict[4]
    end
  end
  return allowed, remaining, retry, reset, binding - 1
end
