-- The messages after a position, or "cannot". Reading a topic Redis keeps nothing of
-- writes nothing: it stands at epoch '0', offset 0 (EMPTY in core/messages.py).
-- KEYS: meta, history.
-- ARGV: since epoch ('' for none), since offset, meta ttl (ms).
-- Returns {epoch, offset} or {epoch, offset, recovered, entries newest first}.
local m = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'ttl')
local epoch, offset, ttl = m[1], tonumber(m[2]) or 0, tonumber(m[3]) or 0
local since_epoch, since = ARGV[1], tonumber(ARGV[2])
if not epoch then
  if since_epoch == '' then return {'0', 0} end
  if since_epoch == '0' and since == 0 then return {'0', 0, 1} end
  return {'0', 0, 0}
end
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[3]), ttl))
if since_epoch == '' then return {epoch, offset} end
if since_epoch == '0' and since == 0 then since_epoch = epoch end  -- seen empty: epoch made since
if since_epoch ~= epoch or since > offset then return {epoch, offset, 0} end
local missed = offset - since
if missed == 0 then return {epoch, offset, 1} end
if ttl > 0 then
  local t = redis.call('TIME')
  redis.call('XTRIM', KEYS[2], 'MINID', '=', t[1] * 1000 + math.floor(t[2] / 1000) - ttl)
end
if redis.call('XLEN', KEYS[2]) < missed then return {epoch, offset, 0} end
return {epoch, offset, 1, redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', missed)}
