-- Integer arithmetic for the limiter scripts. Lua numbers are doubles: the
-- client rejects configurations whose integers could reach 2^53, and idiv
-- is exact below that.

local NEVER = -1
local MAX_NOW_US = 4503599627370496 -- 2^52 us: the year 2112

-- idiv is floor(a / b) exactly, for integers |a| < 2^53 and 0 < b < 2^53:
-- the double quotient can round across an integer, so it is corrected.
local floor = math.floor -- an upvalue: idiv runs twice per decision
local function idiv(a, b)
  local q = floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

-- expiry is when the key must expire: just after the last limit's reset,
-- floor + 1 ms, never rounded down, never 0.
local function expiry(now, reset)
  return idiv(now + reset, 1000) + 1
end

-- decimal is an integer in decimal (an expiry, for PXAT), remembered by
-- a batch: the keys of a batch mostly share an expiry, and a Lua number
-- passed to redis.call as such is formatted with "%.14g", glibc's
-- floating-point printf, a measurable share of a batch's time. Only a
-- batch remembers: every call of a script runs this prelude anew, so what
-- it allocates here a single decision pays for.
local remembered = false -- made by run for a batch
local function decimal(number)
  if not remembered then
    return string.format('%d', number)
  end
  if remembered[1] ~= number then
    remembered[1], remembered[2] = number, string.format('%d', number)
  end
  return remembered[2]
end
