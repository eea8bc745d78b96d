-- A batch of publishes, atomically, in order: for each message, the next offset of its
-- topic, append to its history (trimmed by count; reads trim by age), PUBLISH.
-- KEYS: the batch's receipt, then meta and history of each message.
-- ARGV: meta ttl (ms), epoch to make for a topic that has none, receipt ttl (ms), then 8
--       per message: channel ('' for none), event, data JSON, formats JSON ('' for none), formats
--       length (-1 for none), history size, history ttl (ms), deadline (ms, Redis clock).
-- Returns '<ms>' followed by one line per message: '<epoch> <offset>', or 'late' when it
-- arrived past its deadline. A batch that already ran (a retry: same receipt) returns
-- what it returned then, and publishes nothing.
local done = redis.call('GET', KEYS[1])
if done then return done end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local meta_ttl, new_epoch = tonumber(ARGV[1]), ARGV[2]
local out = {tostring(now)}
for i = 0, (#ARGV - 3) / 8 - 1 do
  local a, meta, history = 4 + i * 8, KEYS[2 + i * 2], KEYS[3 + i * 2]
  if now > tonumber(ARGV[a + 7]) then
    out[#out + 1] = 'late'
  else
    local event, data, formats, flen = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
    local size, ttl = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
    local m = redis.call('HMGET', meta, 'epoch', 'ttl')
    local epoch = m[1]
    if not epoch then
      epoch = new_epoch
      redis.call('DEL', history)
      redis.call('HSET', meta, 'epoch', epoch, 'ttl', ttl)
    elseif tonumber(m[2]) ~= ttl then
      redis.call('HSET', meta, 'ttl', ttl)
    end
    local offset = redis.call('HINCRBY', meta, 'offset', 1)
    if size > 0 and ttl > 0 then
      if flen == '-1' then
        redis.call('XADD', history, 'MAXLEN', '=', size, '*', 'o', offset, 'e', event, 'd', data)
      else
        redis.call('XADD', history, 'MAXLEN', '=', size, '*', 'o', offset, 'e', event, 'd', data,
                   'f', formats)
      end
      redis.call('PEXPIRE', history, ttl)
    elseif m[2] ~= '0' then
      redis.call('DEL', history)  -- history was kept before: it no longer is
    end
    redis.call('PEXPIRE', meta, math.max(meta_ttl, ttl))
    if ARGV[a] ~= '' then  -- '': a cluster broker publishes it itself (docs/redis.md)
      redis.call('PUBLISH', ARGV[a],
                 epoch .. ' ' .. offset .. ' ' .. now .. ' ' .. event .. ' ' .. flen .. '\n'
                 .. formats .. data)
    end
    out[#out + 1] = epoch .. ' ' .. offset
  end
end
local reply = table.concat(out, '\n')
redis.call('SET', KEYS[1], reply, 'PX', ARGV[3])
return reply
