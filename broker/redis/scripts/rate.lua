-- Take one request from a rate limit: GCRA (the generic cell rate algorithm), which
-- is a token bucket kept as one number, the theoretical arrival time (TAT) of the
-- next request. KEYS[1] is "hopper:rl:<key>" itself (not a queue prefix).
-- ARGV: rate (requests per second, > 0), burst (>= 1).
-- Returns {1, 0} allowed, or {0, retry_after_ms}. The key expires once the bucket
-- is full again, so idle limits cost no memory.
local function main()
  local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
  local interval = 1000 / rate -- ms one request costs
  local tolerance = interval * burst -- how far the TAT may run ahead of now
  local tat = tonumber(redis.call('GET', P)) or NOW
  if tat < NOW then tat = NOW end
  local next_tat = tat + interval
  if next_tat - NOW > tolerance then
    return {0, math.max(1, math.ceil(next_tat - tolerance - NOW))}
  end
  redis.call('SET', P, string.format('%.3f', next_tat), 'PX', int(math.ceil(next_tat - NOW) + 1))
  return {1, 0}
end
