-- COMPLETE: store the result, if the token still holds the claim, and wake the waiters.
-- KEYS[1]: the record.  ARGV: token, value, ttl (ms), channel, key hex.
-- Returns 1 completed, 0 lease lost.
local record = redis.call('HMGET', KEYS[1], 's', 't', 'w')
if record[1] ~= 'p' or record[2] ~= ARGV[1] then
  return 0
end
redis.call('HDEL', KEYS[1], 't', 'w')
redis.call('HSET', KEYS[1], 's', 'c', 'v', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if record[3] then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return 1
