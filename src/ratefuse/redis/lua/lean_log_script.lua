-- The sliding log's lean EVALSHA script's entry point, as lean_script.lua's
-- lean_run for the others, without lean.lua (whose closures a script call
-- would build for nothing): the registry builds it as
--   "local function general()" .. prelude .. sliding_log.lua .. "end"
--   .. log_header.lua .. lean_log.lua .. this file
-- with lean_script.lua's calling convention (span: the period) and reply
-- (lean_log.lua's, or the general script's five integers).
local now = ARGV[1]
if now == '-1' then
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
else
  now = tonumber(now)
  if now > 4503599627370496 then
    return error('ratefuse: now is beyond 2^52 microseconds')
  end
end
-- The common cost without a conversion.
local cost = ARGV[2]
local id, capacity, period = ARGV[3], ARGV[4], ARGV[5]
local verdict = sliding_log_lean(KEYS[1], now, cost == '1' and 1 or tonumber(cost), id, nil,
  tonumber(capacity), tonumber(period))
if verdict then
  return verdict
end
-- The general script's convention (see arguments.lua), on this now.
ARGV[1], ARGV[2], ARGV[3], ARGV[4] = string.format('%d', now), 's', cost, '1'
ARGV[5], ARGV[6], ARGV[7], ARGV[8] = id, capacity, period, '0'
return general()
