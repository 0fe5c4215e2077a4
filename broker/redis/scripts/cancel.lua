-- Cancel a job. ARGV: ulid. Returns the state after: canceled, or active when the
-- job runs and its worker is told on its next heartbeat.
local function main()
  local ulid = ARGV[1]
  local meta, payload = load(ulid)
  if not meta then return fail_with('ENOTFOUND', 'job ' .. ulid .. '-' .. Q .. ' not found') end
  local s = meta.s
  if s == 'active' then
    meta.cr = 1
    store(ulid, meta, payload)
    local held = redis.call('HGET', K_LEASE, ulid)
    if held and not cancel_asked(held) then redis.call('HSET', K_LEASE, ulid, held .. '|c') end
    return 'active'
  end
  if s == 'scheduled' or s == 'failed' then
    redis.call('ZREM', ZSET_OF[s], ulid)
  elseif s ~= 'waiting' then -- a waiting job's id stays in its list; reserve skips it
    return fail_with('ESTATE', 'job ' .. ulid .. '-' .. Q .. ' is already ' .. s)
  end
  finish(ulid, meta, payload, s, 'canceled')
  publish_meta('canceled', ulid, meta)
  return 'canceled'
end
