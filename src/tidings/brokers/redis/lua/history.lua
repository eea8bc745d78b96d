-- A batch of reads: for each, the messages after a position, or "cannot". Reading a topic
-- Redis keeps nothing of writes nothing: it stands at epoch '0', offset 0 (EMPTY in
-- core/messages.py).
-- KEYS: meta and history of each read.
-- ARGV: meta ttl (ms), then 2 per read: since epoch ('' for none), since offset.
-- Returns one reply per read: {epoch, offset} or {epoch, offset, recovered, entries newest
-- first}.
local meta_ttl, out, now = tonumber(ARGV[1]), {}, nil
for i = 0, #KEYS / 2 - 1 do
  local meta, history = KEYS[1 + i * 2], KEYS[2 + i * 2]
  local since_epoch, since = ARGV[2 + i * 2], tonumber(ARGV[3 + i * 2])
  local m = redis.call('HMGET', meta, 'epoch', 'offset', 'ttl')
  local epoch, offset, ttl = m[1], tonumber(m[2]) or 0, tonumber(m[3]) or 0
  local reply
  if not epoch then
    if since_epoch == '' then reply = {'0', 0}
    elseif since_epoch == '0' and since == 0 then reply = {'0', 0, 1}
    else reply = {'0', 0, 0} end
  else
    redis.call('PEXPIRE', meta, math.max(meta_ttl, ttl))
    if since_epoch == '0' and since == 0 then since_epoch = epoch end  -- seen empty: made since
    if since_epoch == '' then reply = {epoch, offset}
    elseif since_epoch ~= epoch or since > offset then reply = {epoch, offset, 0}
    elseif offset == since then reply = {epoch, offset, 1}
    else
      local missed = offset - since
      if ttl > 0 then
        if not now then
          local t = redis.call('TIME')
          now = t[1] * 1000 + math.floor(t[2] / 1000)
        end
        redis.call('XTRIM', history, 'MINID', '=', now - ttl)
      end
      if redis.call('XLEN', history) < missed then reply = {epoch, offset, 0}
      else reply = {epoch, offset, 1, redis.call('XREVRANGE', history, '+', '-', 'COUNT', missed)} end
    end
  end
  out[#out + 1] = reply
end
return out
