-- BEGIN: read the record, or claim it if it is vacant. One atomic step.
-- KEYS[1]: the record.  ARGV: token, fingerprint, lease (ms).
-- Returns {0} claimed; {1, fingerprint, value} completed; {2, fingerprint, pttl} in progress.
local record = redis.call('HMGET', KEYS[1], 's', 'f', 'v')
if record[1] == 'c' then
  return {1, record[2], record[3]}
end
if record[1] == 'p' then
  -- Someone waits: the completion or release must publish a notice.
  redis.call('HSET', KEYS[1], 'w', '1')
  return {2, record[2], redis.call('PTTL', KEYS[1])}
end
if record[1] then
  -- A record this version does not know: start afresh rather than misread it.
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], 's', 'p', 't', ARGV[1], 'f', ARGV[2], 'ver', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {0}
