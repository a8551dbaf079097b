-- RENEW: extend the lease, if the token still holds the claim.
-- KEYS[1]: the record.  ARGV: the claim's record (kind, version, token, fingerprint), lease (ms).
-- Returns 1 renewed, 0 lease lost.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
