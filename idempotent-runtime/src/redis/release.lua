-- RELEASE: delete the claim, if the token still holds it, and hand the key over to a waiter
-- if any flagged the record.
-- KEYS[1]: the record, KEYS[2]: its waiters' flag.  ARGV: the claim's record, channel, key hex.
-- Returns 1 released, 0 not held.
--
-- The flag stays: the other waiters still wait, for the attempt of the one woken here. The
-- notice is the key prefixed with `r`, which each node answers by waking one local waiter
-- (a completion, the bare key, wakes them all): a failing body does not make every waiter
-- race for the key each time.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[2], 'r' .. ARGV[3])
end
return 1
