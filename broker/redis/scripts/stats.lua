-- Counts, config and the run-time histogram of one queue, read in one step.
-- Returns {counts, conf, runtimes} (each flat HGETALL).
local function main()
  return {redis.call('HGETALL', K_COUNTS), redis.call('HGETALL', K_CONF),
    redis.call('HGETALL', K_RT)}
end
