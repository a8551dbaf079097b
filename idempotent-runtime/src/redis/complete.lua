-- COMPLETE: replace the claim with the completed record, and wake the waiters if any
-- flagged the record.
-- KEYS[1]: the record, KEYS[2]: its waiters' flag.
-- ARGV: the claim's record, the completed record, ttl (ms), channel, key hex.
-- Returns 1 completed, 2 completed a record that had vanished, 0 lease lost.
--
-- An absent record is not a rival: a restart without persistence, an eviction or a lease
-- that lapsed unnoticed lost the claim, and no other attempt has claimed the key since, so
-- this attempt's result is the one to keep. Only another claim or a completed record fence
-- it off.
local current = redis.call('GET', KEYS[1])
-- Already done: a retry of this very completion, whose first answer was lost.
if current == ARGV[2] then
  return 1
end
if current and current ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
if current then
  return 1
end
return 2
