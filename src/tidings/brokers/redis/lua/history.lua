-- The messages after a position, or "cannot".
-- KEYS: meta, history.
-- ARGV: since epoch ('' for none), since offset, epoch to make if there is none, meta ttl (ms).
-- Returns {epoch, offset} or {epoch, offset, recovered, entries newest first}.
local m = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'ttl')
local epoch, offset, ttl = m[1], tonumber(m[2]) or 0, tonumber(m[3]) or 0
if not epoch then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[4]), ttl))
if ARGV[1] == '' then return {epoch, offset} end
local since = tonumber(ARGV[2])
if ARGV[1] ~= epoch or since > offset then return {epoch, offset, 0} end
local missed = offset - since
if missed == 0 then return {epoch, offset, 1} end
if ttl > 0 then
  local t = redis.call('TIME')
  redis.call('XTRIM', KEYS[2], 'MINID', '=', t[1] * 1000 + math.floor(t[2] / 1000) - ttl)
end
if redis.call('XLEN', KEYS[2]) < missed then return {epoch, offset, 0} end
return {epoch, offset, 1, redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', missed)}
