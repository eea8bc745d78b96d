-- A topic's offset went back: a replica was promoted without the last messages that a
-- subscriber had seen (published, not acknowledged: docs/redis.md). Give the topic a new
-- epoch, so that resuming from one of the lost positions is told recovered=false instead
-- of being answered with other messages under the same offsets.
-- KEYS: meta. ARGV: the epoch seen, the offset seen, the new epoch.
-- Returns 1 if the epoch changed, 0 if the topic had not gone back (or another process
-- changed it first).
local m = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
if m[1] == ARGV[1] and (tonumber(m[2]) or 0) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[3])
  return 1
end
return 0
