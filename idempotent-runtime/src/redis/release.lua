-- RELEASE: delete the claim, if the token still holds it, and wake the waiters if any
-- flagged the record.
-- KEYS[1]: the record, KEYS[2]: its waiters' flag.  ARGV: the claim's record, channel, key hex.
-- Returns 1 released, 0 not held.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return 1
