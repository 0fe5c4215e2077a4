-- The throughput hashes of one queue (see the prelude's Throughput) for the last
-- ARGV[1] minutes and the current one, read in one step.
-- Returns {now_ms, first minute (Unix minutes), {flat HGETALL of each minute, oldest first}}.
local function main()
  local span = tonumber(ARGV[1])
  local last = math.floor(NOW / 60000)
  local minutes = {}
  for m = last - span, last do
    minutes[#minutes + 1] = redis.call('HGETALL', P .. 'tp:' .. int(m))
  end
  return {NOW_S, int(last - span), minutes}
end
