-- One publish, atomically: next offset, append to history, trim, PUBLISH.
-- KEYS: meta, history, receipt.
-- ARGV: channel, event, data JSON, formats JSON ('' for none), formats length (-1 for
--       none), history size, history ttl (ms), meta ttl (ms), deadline (ms, Redis
--       clock), epoch to make if there is none, receipt ttl (ms).
-- Returns {'ok', epoch, offset, ms}, {'again', '<epoch> <offset> <ms>'} when this publish
-- already ran (a retry: same receipt), or {'late', ms} past the deadline.
local channel, event, data, formats, flen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local size, ttl, meta_ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local receipt = redis.call('GET', KEYS[3])
if receipt then return {'again', receipt} end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if now > tonumber(ARGV[9]) then return {'late', now} end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[10]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
if size > 0 and ttl > 0 then
  if flen == '-1' then
    redis.call('XADD', KEYS[2], 'MAXLEN', '=', size, '*', 'o', offset, 'e', event, 'd', data)
  else
    redis.call('XADD', KEYS[2], 'MAXLEN', '=', size, '*', 'o', offset, 'e', event, 'd', data,
               'f', formats)
  end
  redis.call('XTRIM', KEYS[2], 'MINID', '=', now - ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
else
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'ttl', ttl)
redis.call('PEXPIRE', KEYS[1], math.max(meta_ttl, ttl))
redis.call('SET', KEYS[3], epoch .. ' ' .. offset .. ' ' .. now, 'PX', ARGV[11])
redis.call('PUBLISH', channel,
           epoch .. ' ' .. offset .. ' ' .. now .. ' ' .. event .. ' ' .. flen .. '\n'
           .. formats .. data)
return {'ok', epoch, offset, now}
