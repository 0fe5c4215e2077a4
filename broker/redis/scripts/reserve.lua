-- Lease up to `max` waiting jobs, highest priority first, FIFO within one.
-- ARGV: max, lease_ms, token, worker
-- Returns {next_due_ms, {ulid, record, ulid, record, ...}}
local now = now_ms()
local conf = hgetall(K_CONF)
promote_due(now, 1000)
recover_leases(now, 1000, conf)
local out = {}
if conf.paused ~= '1' then
  local max, token, worker = tonumber(ARGV[1]), ARGV[3], ARGV[4]
  local deadline = now + tonumber(ARGV[2])
  local taken = 0
  -- Canceled and deleted jobs leave their id in the list; skipping them is bounded.
  local budget = max * 4 + 100
  while taken < max and budget > 0 do
    local top = redis.call('ZREVRANGE', K_PRIOS, 0, 0)[1]
    if not top then break end
    local list = P .. 'w:' .. top
    local ulid = redis.call('LPOP', list)
    if not ulid then
      redis.call('ZREM', K_PRIOS, top)
    else
      budget = budget - 1
      redis.call('HINCRBY', K_WPOP, top, 1)
      if redis.call('LLEN', list) == 0 then redis.call('ZREM', K_PRIOS, top) end
      local meta, payload = load(ulid)
      if meta and meta.s == 'waiting' then
        if meta.ex and meta.ex <= now then
          add_error(meta, now, 'expired: not started by its expires_at')
          finish(ulid, meta, payload, 'waiting', 'dead', now, conf)
        else
          meta.s = 'active'
          meta.a = (meta.a or 0) + 1
          meta.st = now
          meta.wk = worker
          local rec = encode(meta, payload)
          redis.call('HSET', K_JOBS, ulid, rec)
          redis.call('HSET', K_LEASE, ulid, token)
          redis.call('ZADD', ZSET_OF.active, deadline, ulid)
          taken = taken + 1
          out[#out + 1] = ulid
          out[#out + 1] = rec
        end
      end
    end
  end
  if taken > 0 then
    count('waiting', -taken)
    count('active', taken)
    -- Pass the wake-up on: another idle worker should come for the rest.
    if redis.call('ZCARD', K_PRIOS) > 0 then notify() end
  end
end
return {int(next_due()), int(now + tonumber(ARGV[2])), out}
