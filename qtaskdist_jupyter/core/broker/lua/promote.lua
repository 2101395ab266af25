-- Move the due entries of the delay ZSET onto their streams, atomically: two workers
-- promoting at once can't XADD the same retry twice.
--   KEYS[1]  the delay ZSET; each member is "<stream>|<message JSON>", scored by the unix time due
--   ARGV[1]  now (unix seconds)
--   ARGV[2]  the most entries to move in this call
-- Returns how many entries moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local sep = string.find(member, '|', 1, true)
  local stream = string.sub(member, 1, sep - 1)
  local msg = string.sub(member, sep + 1)
  redis.call('XADD', stream, '*', 'm', msg)
  redis.call('ZREM', KEYS[1], member)
end
return #due
