-- COMPLETE: replace the claim with the completed record, if the token still holds it, and
-- wake the waiters if any flagged the record.
-- KEYS[1]: the record, KEYS[2]: its waiters' flag.
-- ARGV: the claim's record, the completed record, ttl (ms), channel, key hex.
-- Returns 1 completed, 0 lease lost.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return 1
