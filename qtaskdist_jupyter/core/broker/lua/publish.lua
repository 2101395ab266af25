-- Task messages and events for many rows, and the XACK + XDEL of stream entries, in one
-- call. Python builds the arguments: qtaskdist_jupyter/core/broker/packing.py (its
-- docstring shows a call's arguments, tests/unit/test_broker_packing.py checks them).
--   KEYS     the events stream, then every task stream (packing.PUBLISH_KEYS)
--   ARGV[1]  MAXLEN (approximate) of the events stream
--   ARGV[2]  the consumer group the acks are for
--   ARGV[3]  one line per row: <task id> TAB <stream> TAB <message tail> TAB <event tail>
--            <stream> is the KEYS index of the row's task stream (0: an event only);
--            the tails are ARGV indexes
--   ARGV[4]  one line per entry to acknowledge: <stream> TAB <entry id> (a KEYS index)
--   ARGV[5…] the tails: what follows the task id in a message or an event's JSON
-- Every body is '{"task_id":"' .. id .. tail (wire.TASK_ID_HEAD).
-- Returns how many rows were written.
local head = '{"task_id":"'
local n = 0
for id, stream, message, event in string.gmatch(ARGV[3], '([^\t\n]+)\t(%d+)\t(%d+)\t(%d+)') do
  stream = tonumber(stream)
  if stream > 0 then
    redis.call('XADD', KEYS[stream], '*', 'm', head .. id .. ARGV[tonumber(message)])
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', head .. id .. ARGV[tonumber(event)])
  n = n + 1
end
for stream, entry in string.gmatch(ARGV[4], '(%d+)\t([^\n]+)') do
  redis.call('XACK', KEYS[tonumber(stream)], ARGV[2], entry)
  redis.call('XDEL', KEYS[tonumber(stream)], entry)
end
return n
