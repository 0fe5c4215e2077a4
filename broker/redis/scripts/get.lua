-- Read one job. ARGV: ulid. Returns {record, result, lease_deadline, lease} or nil;
-- the lease value gives an active job's start and worker (its token stays here).
local function main()
  local ulid = ARGV[1]
  local rec = redis.call('HGET', K_JOBS, ulid)
  if not rec then return nil end
  local res = redis.call('HGET', K_RES, ulid) or ''
  local deadline = redis.call('ZSCORE', ZSET_OF.active, ulid) or '0'
  local lease = redis.call('HGET', K_LEASE, ulid) or ''
  return {rec, res, deadline, lease}
end
