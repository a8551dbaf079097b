-- RELEASE: delete the claim, if the token still holds it, and wake the waiters.
-- KEYS[1]: the record.  ARGV: token, channel, key hex.  Returns 1 released, 0 not held.
local record = redis.call('HMGET', KEYS[1], 's', 't', 'w')
if record[1] ~= 'p' or record[2] ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if record[3] then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return 1
