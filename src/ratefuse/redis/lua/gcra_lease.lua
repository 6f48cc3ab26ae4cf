-- GCRA quota lease: "take at most k". The registry builds this script as
--   prelude .. "local function exact()" .. gcra.lua .. "end" .. this file,
-- so `exact()` runs the exact gcra script on the current ARGV and returns
-- its verdict {allowed, remaining, retry_us, reset_us, binding}. A lease
-- is then made of exact decisions only (same state, same layout, same key
-- as the exact mode), and this file depends on nothing but the prelude's
-- calling convention: ARGV[1] now or -1, ARGV[2] 's', ARGV[3] the cost,
-- ARGV[4] the number of limits r, then per limit id, capacity, period_us,
-- interval_us. Here ARGV[3] is k, the most units to take.
--
-- n = min(k, remaining at cost 0) is the largest cost every limit admits
-- now (for gcra, cost c is admitted iff c <= remaining), so taking n never
-- takes more than the bucket admits and leaves the state that n exact
-- decisions of one unit would.
--
-- The reply is 5 integers: n (0 when nothing is left), the units left
-- after it, want_after_us (microseconds until min(k, smallest capacity)
-- more units could be taken; 0 when n = k), reset_after_us, and the
-- 0-based index of the limit that applied.

local function with_cost(cost)
  ARGV[3] = string.format('%d', cost)
  return exact()
end

local function lease()
  if tonumber(ARGV[1]) < 0 then
    -- One clock for the three exact calls below.
    local time = redis.call('TIME')
    ARGV[1] = time[1] .. string.format('%06d', tonumber(time[2]))
  end
  local k = tonumber(ARGV[3])
  local want = k
  for i = 1, tonumber(ARGV[4]) do
    local capacity = tonumber(ARGV[4 + 4 * (i - 1) + 2])
    if capacity < want then
      want = capacity
    end
  end
  local verdict = with_cost(0)
  local granted = math.min(k, verdict[2])
  if granted > 0 then
    verdict = with_cost(granted)
  end
  local wait = 0
  if granted < k then
    -- The bucket is drained: this exact call is denied and changes nothing.
    wait = with_cost(want)[3]
  end
  return {granted, verdict[2], wait, verdict[4], verdict[5]}
end

return lease()
