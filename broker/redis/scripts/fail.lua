-- Record a failed attempt. ARGV: ulid, token, message, permanent (0/1), rand [0,1)
-- Returns {state, run_at_ms}
local function main()
  local ulid, token, msg, permanent, rand = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
  local meta, payload, held = load_leased(ulid, token)
  if not meta then return payload end
  keep_run(meta, held)
  local runtime = NOW - (meta.st or NOW)
  record_runtime(runtime)
  redis.call('ZREM', ZSET_OF.active, ulid)
  redis.call('HDEL', K_LEASE, ulid)
  add_error(meta, msg)
  count('total:failed', 1)
  TP_FAILED = TP_FAILED + 1
  if meta.cr then
    finish(ulid, meta, payload, 'active', 'canceled')
    publish_meta('canceled', ulid, meta, msg, runtime)
    return {'canceled', '0'}
  end
  if permanent == '1' or (meta.a or 0) >= meta.ma then
    finish(ulid, meta, payload, 'active', 'dead')
    publish_meta('dead', ulid, meta, msg, runtime)
    return {'dead', '0'}
  end
  local due = NOW + backoff_ms(meta, rand)
  meta.s = 'failed'
  meta.ra = due
  store(ulid, meta, payload)
  redis.call('ZADD', ZSET_OF.failed, due, ulid)
  move_count('active', 'failed')
  publish_meta('failed', ulid, meta, msg, runtime, due)
  return {'failed', int(due)}
end
