-- RENEW: extend the lease, if the token still holds the claim; claim the record again if it
-- vanished (a restart without persistence, an eviction), so that duplicates arriving now
-- wait for this attempt instead of running the body beside it.
-- KEYS[1]: the record.  ARGV: the claim's record (kind, version, token, fingerprint), lease (ms).
-- Returns 1 renewed, 2 claimed again, 0 lease lost.
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
