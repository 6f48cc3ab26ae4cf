-- server_now is a script's time in integer microseconds: ARGV's value, or
-- the server's TIME when it is negative (the default; an explicit time is
-- for tests). Every key has one clock: that of the primary that owns it.
local function server_now(arg)
  local now = tonumber(arg)
  if now < 0 then
    local time = redis.call('TIME')
    now = tonumber(time[1]) * 1000000 + tonumber(time[2])
  end
  return now
end
