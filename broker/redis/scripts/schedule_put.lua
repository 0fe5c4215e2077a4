-- Create or replace a schedule's definition in this queue's slot, keeping its runs.
-- KEYS[1]: the prefix of the template's queue; the record is P .. 'schedule:' .. name,
-- a hash (docs/architecture.md lists its fields).
-- ARGV: name, cron, tz, job, paused ('0'|'1'), misfire, overlap, jitter_ms,
-- next_fire_ms, then what a schedule moving here from another queue carries with it
-- (carried = '1'; else ignored): created_ms, last_fire_ms, last_job_id, history, version.
-- A record already here keeps its own runs. Returns {1 created | 0 replaced, version}.
local function main()
  local key = P .. 'schedule:' .. ARGV[1]
  local old = hgetall(key)
  local created = old.created_ms == nil
  if created and ARGV[10] == '1' then
    old = {created_ms = ARGV[11], last_fire_ms = ARGV[12], last_job_id = ARGV[13],
      history = ARGV[14], version = ARGV[15]}
    created = false
  end
  local version = (tonumber(old.version) or 0) + 1
  redis.call('HSET', key, 'cron', ARGV[2], 'tz', ARGV[3], 'job', ARGV[4], 'paused', ARGV[5],
    'misfire', ARGV[6], 'overlap', ARGV[7], 'jitter_ms', ARGV[8], 'next_fire_ms', ARGV[9],
    'last_fire_ms', old.last_fire_ms or '0', 'last_job_id', old.last_job_id or '',
    'history', old.history or '[]', 'created_ms', old.created_ms or NOW_S, 'updated_ms', NOW_S,
    'version', int(version))
  return {created and 1 or 0, version}
end
