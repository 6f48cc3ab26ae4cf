-- The calling convention of the limiter scripts, the same for every
-- algorithm, and the readers of its arguments:
--   KEYS[1..n]  one key per subject holding the state of all its limits
--               (a string or a hash, see below); the keys of one call
--               share one cluster slot.
--   ARGV[1]     now in integer microseconds, or -1 to read the server's
--               TIME (the default; an explicit time is for tests).
--   ARGV[2]     "s": one key, ARGV[3] is its cost; the reply is 5 integers.
--               "m": ARGV[3] is a msgpack array of n costs; the reply is a
--               msgpack array of 5n integers. The keys' values are read
--               up front (MGET), and a key may appear more than once:
--               each decision sees the state the earlier ones left.
--               "u": as "m", for n distinct keys (cheaper).
--   ARGV[4]     r, the number of limits; then four arguments per limit:
--               field id, capacity, period_us, interval_us.
-- A verdict is 5 integers: allowed (1/0), remaining, retry_after_us (-1:
-- never), reset_after_us and the 0-based index of the binding limit.

local function read_now(arg)
  local now = server_now(arg)
  if now > MAX_NOW_US then
    return error('ratefuse: now is beyond 2^52 microseconds')
  end
  return now
end

local function read_specs(first)
  local specs = {}
  local at = first + 1
  for i = 1, tonumber(ARGV[first]) do
    specs[i] = {
      id = ARGV[at],
      capacity = tonumber(ARGV[at + 1]),
      period = tonumber(ARGV[at + 2]),
      interval = tonumber(ARGV[at + 3]),
    }
    at = at + 4
  end
  return specs
end
