-- Put a dead, failed or canceled job back to waiting with a fresh set of attempts;
-- its error history stays. ARGV: ulid
local function main()
  local ulid = ARGV[1]
  local meta, payload = load(ulid)
  if not meta then return fail_with('ENOTFOUND', 'job ' .. ulid .. '-' .. Q .. ' not found') end
  local s = meta.s
  if s ~= 'dead' and s ~= 'failed' and s ~= 'canceled' then
    return fail_with('ESTATE', 'job ' .. ulid .. '-' .. Q .. ' is ' .. s
      .. '; only dead, failed or canceled jobs can be retried')
  end
  redis.call('ZREM', ZSET_OF[s], ulid)
  meta.s = 'waiting'
  meta.a = nil
  meta.fa = nil
  meta.ra = nil
  meta.cr = nil
  meta.st, meta.wk = nil, nil -- a waiting record has no run
  store(ulid, meta, payload)
  push_waiting(ulid, meta.p)
  move_count(s, 'waiting')
  notify()
  publish_meta('retried', ulid, meta)
  return 'waiting'
end
