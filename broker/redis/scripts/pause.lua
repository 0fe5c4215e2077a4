-- Pause (ARGV[1] = '1') or resume a queue; resuming wakes idle workers.
local function main()
  if ARGV[1] == '1' then
    redis.call('HSET', K_CONF, 'paused', '1')
  else
    redis.call('HDEL', K_CONF, 'paused')
    notify()
  end
  return 'ok'
end
