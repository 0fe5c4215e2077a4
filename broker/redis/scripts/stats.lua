-- Counts and config of one queue, read in one step. Returns {counts, conf} (flat).
return {redis.call('HGETALL', K_COUNTS), redis.call('HGETALL', K_CONF)}
