-- Counts and config of one queue, read in one step. Returns {counts, conf} (flat).
local function main()
  return {redis.call('HGETALL', K_COUNTS), redis.call('HGETALL', K_CONF)}
end
