-- A key is shared by every limiter on its name: each stores its own
-- limits' entries in it (see string_layout.lua), and limiters that share a
-- name share the limits they have in common, for example during a rolling
-- deploy that changes limits. Its expiry must then cover every entry.

-- kept_expiry is the expiry (unix ms, for PXAT) to give a key that holds
-- other limits besides this limiter's: ``at``, what this limiter's limits
-- need, or the key's current expiry when that is later, so that a decision
-- of a "100/s" limit never cuts the TTL a "2/h" entry beside it needs.
-- PEXPIRETIME (Redis 7) is -1 for no expiry (which no script leaves) and
-- -2 for no key; before Redis 7 it is PTTL plus the server's TIME, read
-- after it, so never earlier than the expiry.
local function kept_expiry(key, at)
  local current = redis.pcall('PEXPIRETIME', key)
  if type(current) ~= 'number' then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      return at
    end
    -- Without idiv: the lean sliding log's script carries this file but
    -- not the prelude.
    local time = redis.call('TIME')
    local us = tonumber(time[2])
    current = tonumber(time[1]) * 1000 + (us - us % 1000) / 1000 + ttl
  end
  if current > at then
    return current
  end
  return at
end
