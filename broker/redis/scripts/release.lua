-- Give an active job back unrun (a worker stopping): waiting again at the end of its
-- queue, this attempt not counted. A job whose cancel was asked ends canceled.
-- ARGV: ulid, token
local function main()
  local ulid, token = ARGV[1], ARGV[2]
  local meta, payload = load_leased(ulid, token)
  if not meta then return payload end
  redis.call('ZREM', ZSET_OF.active, ulid)
  redis.call('HDEL', K_LEASE, ulid)
  if meta.cr then
    finish(ulid, meta, payload, 'active', 'canceled')
    return 'canceled'
  end
  meta.s = 'waiting'
  meta.a = math.max((meta.a or 1) - 1, 0)
  meta.st, meta.wk = nil, nil
  meta.wa = NOW
  store(ulid, meta, payload)
  push_waiting(ulid, meta.p)
  move_count('active', 'waiting')
  notify()
  return 'waiting'
end
