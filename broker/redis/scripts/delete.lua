-- Remove a job that is not active. ARGV: ulid
local function main()
  local ulid = ARGV[1]
  local meta = load(ulid)
  if not meta then return fail_with('ENOTFOUND', 'job ' .. ulid .. '-' .. Q .. ' not found') end
  if meta.s == 'active' then
    return fail_with('ESTATE', 'job ' .. ulid .. '-' .. Q .. ' is active; cancel it first')
  end
  if ZSET_OF[meta.s] then redis.call('ZREM', ZSET_OF[meta.s], ulid) end
  for _, key_of_job in ipairs({K_JOBS, K_RES, K_PROG, K_LOGS}) do
    redis.call('HDEL', key_of_job, ulid)
  end
  count(meta.s, -1)
  publish('deleted', ulid, cjson.encode(meta.t or ''), '')
  return 'deleted'
end
