-- RENEW: extend the lease, if the token still holds the claim.
-- KEYS[1]: the record.  ARGV: token, lease (ms).  Returns 1 renewed, 0 lease lost.
local record = redis.call('HMGET', KEYS[1], 's', 't')
if record[1] == 'p' and record[2] == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
