-- Enqueue a batch into one queue, all or nothing.
-- ARGV: n, then per job: ulid, priority, delay_ms, run_at_ms, unique_key, unique_ttl_ms,
--       body (meta members after the state, "}\n", payload)
-- Returns per job: {id, state} where state is waiting, scheduled or duplicate.
local now = now_ms()
local n = tonumber(ARGV[1])
local conf = hgetall(K_CONF)
local maxlen = tonumber(conf.maxlen)
if maxlen then
  local c = redis.call('HMGET', K_COUNTS, 'waiting', 'scheduled', 'failed', 'active')
  local pending = 0
  for _, v in ipairs(c) do pending = pending + (tonumber(v) or 0) end
  if pending + n > maxlen then
    return fail_with('EFULL', 'queue "' .. Q .. '" is full: ' .. pending .. ' of at most '
      .. maxlen .. ' jobs pending')
  end
end
local out, nwait, nsched = {}, 0, 0
for i = 0, n - 1 do
  local b = 2 + i * 7
  local ulid, prio, delay, run_at = ARGV[b], tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]),
    tonumber(ARGV[b + 3])
  local uk, ttl, body = ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]
  local id = ulid .. '-' .. Q
  local first = nil
  if uk ~= '' then
    first = redis.call('GET', P .. 'u:' .. uk)
    if not first then redis.call('SET', P .. 'u:' .. uk, id, 'PX', ttl) end
  end
  if first then
    out[#out + 1] = {first, 'duplicate'}
  else
    local due = run_at > 0 and run_at or now + delay
    if due > now then
      redis.call('HSET', K_JOBS, ulid, '{"s":"scheduled","ra":' .. int(due) .. ',' .. body)
      redis.call('ZADD', ZSET_OF.scheduled, due, ulid)
      nsched = nsched + 1
      out[#out + 1] = {id, 'scheduled'}
    else
      redis.call('HSET', K_JOBS, ulid, '{"s":"waiting",' .. body)
      push_waiting(ulid, prio)
      nwait = nwait + 1
      out[#out + 1] = {id, 'waiting'}
    end
  end
end
if nwait > 0 then
  count('waiting', nwait)
  notify()
end
if nsched > 0 then count('scheduled', nsched) end
count('total:enqueued', nwait + nsched)
return out
