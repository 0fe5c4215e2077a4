-- Read one job. ARGV: ulid. Returns {record, result, lease_deadline, lease, progress,
-- logs} or nil; the lease value gives an active job's start and worker (the C side
-- never shows its token).
local function main()
  local ulid = ARGV[1]
  local rec = redis.call('HGET', K_JOBS, ulid)
  if not rec then return nil end
  local res = redis.call('HGET', K_RES, ulid) or ''
  local deadline = redis.call('ZSCORE', ZSET_OF.active, ulid) or '0'
  local lease = redis.call('HGET', K_LEASE, ulid) or ''
  local prog = redis.call('HGET', K_PROG, ulid) or ''
  local logs = redis.call('HGET', K_LOGS, ulid) or ''
  return {rec, res, deadline, lease, prog, logs}
end
