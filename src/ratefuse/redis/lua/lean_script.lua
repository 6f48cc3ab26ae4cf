-- The lean EVALSHA script's entry point, for a node without Functions
-- (Redis 6.2, Valkey, an ACL without FCALL): the registry builds it as
--   "local function general()" .. prelude .. <algorithm>.lua .. "end"
--   .. lean.lua .. lean_<algorithm>.lua .. this file
--   .. "return lean_run(<algorithm>_lean, '<algorithm>')"
-- so a call runs the algorithm's lean decider and nothing else; `general`
-- (the algorithm's exact script, never built unless called) decides what
-- the lean decider returns nil for, with the same clock.
--
-- Calling convention: EVALSHA <sha> 1 <key> <now> <cost> <id> <capacity>
-- <span> <read>, now as in the general scripts (-1: the server's TIME),
-- span the limit's emission interval (gcra) or period (the windows), read
-- the struct format of the limit's entry ('c<#id + 1>' and a '<d' per
-- word, see string_layout.lua: the client writes it once, which spares
-- each call a number formatted). The reply is lean.lua's (an integer, or
-- the sliding window's 24 bytes), or the general script's five integers.

local function lean_run(make, algorithm)
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
  local id = ARGV[3]
  local width = 1
  if algorithm == 'fixed_window' then
    width = 2
  elseif algorithm == 'sliding_window' then
    width = 3
  end
  -- The common cost without a conversion.
  local cost = ARGV[2]
  local decide = make(id .. ' ', ARGV[6], #id + 1 + 8 * width, tonumber(ARGV[4]),
    tonumber(ARGV[5]))
  local verdict = decide(KEYS[1], now, cost == '1' and 1 or tonumber(cost))
  if verdict then
    return verdict
  end
  -- The general script's convention (see arguments.lua), on this now.
  local capacity, span = ARGV[4], ARGV[5]
  ARGV[1], ARGV[2], ARGV[3], ARGV[4] = string.format('%d', now), 's', cost, '1'
  ARGV[5], ARGV[6] = id, capacity
  if algorithm == 'gcra' then
    ARGV[7], ARGV[8] = '0', span
  else
    ARGV[7], ARGV[8] = span, '0'
  end
  return general()
end
