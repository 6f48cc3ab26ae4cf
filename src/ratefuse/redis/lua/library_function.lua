-- The registered function of one algorithm: _scripts.library makes one
-- per algorithm from this text, ALGORITHM and FUNCTION replaced by its
-- name and the function's. A call on the server's clock whose limits
-- already have a lean decider (lean.lua, made by register in
-- library.lua) runs it straight from here: one Lua call more than the
-- registered function, which is what Redis calls anyway (each call and
-- each table lookup costs hundreds of the server's instructions). TIME's
-- seconds are converted once per second (clock_seconds, clock_us: the
-- library's, declared before build, as server_call, redis.call once
-- built). Anything else, and a value the lean decider does not read
-- (nil), goes to the algorithm's decider.
do
  local leans = lean_deciders.ALGORITHM
  redis.register_function('FUNCTION', function(keys, args)
    local lean = leans[args[3]]
    if lean and args[1] == '-1' then
      local time = server_call('TIME')
      local seconds = time[1]
      if seconds ~= clock_seconds then
        clock_seconds, clock_us = seconds, seconds * 1000000
      end
      local now = clock_us + time[2]
      local cost = args[2]
      local verdict = lean(keys[1], now, cost == '1' and 1 or tonumber(cost))
      if verdict then
        return verdict
      end
      return deciders.ALGORITHM(keys, args, now)
    end
    if not deciders then
      deciders = build()
    end
    return deciders.ALGORITHM(keys, args)
  end)
end
