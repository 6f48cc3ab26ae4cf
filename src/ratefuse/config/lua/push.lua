-- push.lua: writes a configuration document by compare-and-set and
-- announces it.
-- KEYS[1]: the hash holding `version` and `document`.
-- ARGV[1]: the document; ARGV[2]: the version the pusher read (0: none);
-- ARGV[3]: the channel to announce the new version on.
-- Returns {1, new version}, or {0, version held} when the hash does not
-- hold ARGV[2] (someone pushed in between; nothing is written).
-- The new version is the server's clock in milliseconds, or the held
-- version + 1 if that is larger: versions only grow, even after a server
-- that lost its data (no persistence) is restarted empty, so no follower
-- refuses the next push as older than the version it runs.
local held = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if held ~= tonumber(ARGV[2]) then
    return {0, held}
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local version = math.max(held + 1, now_ms)
redis.call('HSET', KEYS[1], 'version', string.format('%d', version), 'document', ARGV[1])
redis.call('PUBLISH', ARGV[3], string.format('%d', version))
return {1, version}
