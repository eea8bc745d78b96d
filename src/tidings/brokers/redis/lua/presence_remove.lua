-- Remove one presence entry.
-- KEYS: presence, members.
-- ARGV: connection id.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
