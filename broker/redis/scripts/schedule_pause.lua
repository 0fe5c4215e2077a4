-- Pause (ARGV[2] = '1') or resume a schedule; resuming sets next_fire_ms to ARGV[3]
-- (the caller computed it from now), pausing leaves it. ARGV[1]: the name.
-- Returns the schedule's new version, or ENOTFOUND.
local function main()
  local key = P .. 'schedule:' .. ARGV[1]
  if redis.call('EXISTS', key) == 0 then
    return fail_with('ENOTFOUND', 'schedule "' .. ARGV[1] .. '" not found')
  end
  redis.call('HSET', key, 'paused', ARGV[2], 'updated_ms', NOW_S)
  if ARGV[2] == '0' then redis.call('HSET', key, 'next_fire_ms', ARGV[3]) end
  return redis.call('HINCRBY', key, 'version', 1)
end
