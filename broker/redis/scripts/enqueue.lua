-- Enqueue a batch into one queue, all or nothing.
-- ARGV: n, then per job: ulid, options, body (the meta members after the head, "}\n",
-- payload). Options are '' for a job with every default (priority 0, no delay, no
-- unique key: most jobs), else "<priority>,<delay_ms>,<run_at_ms>,<ttl_ms>,<unique_key>".
-- Redis copies every ARGV into Lua before the script runs, so fewer is faster.
-- Returns per job 'w' (waiting), 's' (scheduled), or the first job's id (duplicate).
local function main()
  local n = tonumber(ARGV[1])
  local maxlen = tonumber(conf().maxlen)
  if maxlen then
    local c = redis.call('HMGET', K_COUNTS, 'waiting', 'scheduled', 'failed', 'active')
    local pending = 0
    for _, v in ipairs(c) do pending = pending + (tonumber(v) or 0) end
    if pending + n > maxlen then
      return fail_with('EFULL', 'queue "' .. Q .. '" is full: ' .. pending .. ' of at most '
        .. maxlen .. ' jobs pending')
    end
  end
  local out, records, by_prio, sched = {}, {}, {}, {}
  local nwait, nsched = 0, 0
  for i = 0, n - 1 do
    local b = 2 + i * 3
    local ulid, opts = ARGV[b], ARGV[b + 1]
    local prio, due, first = '0', NOW, nil
    if opts ~= '' then
      local delay, run_at, ttl, uk
      prio, delay, run_at, ttl, uk = string.match(opts, '^(-?%d+),(%d+),(%d+),(%d+),(.*)$')
      run_at = tonumber(run_at)
      due = run_at > 0 and run_at or NOW + tonumber(delay)
      if uk ~= '' then
        first = redis.call('GET', P .. 'u:' .. uk)
        if not first then redis.call('SET', P .. 'u:' .. uk, ulid .. '-' .. Q, 'PX', ttl) end
      end
    end
    if first then
      out[i + 1] = first
    else
      records[#records + 1] = ulid
      if due > NOW then
        records[#records + 1] = '{"s":"scheduled","a":0,"ra":' .. int(due) .. ',' .. ARGV[b + 2]
        sched[#sched + 1] = due
        sched[#sched + 1] = ulid
        nsched = nsched + 1
        out[i + 1] = 's'
      else
        records[#records + 1] = '{"s":"waiting","a":0,' .. ARGV[b + 2]
        local ids = by_prio[prio]
        if not ids then
          ids = {}
          by_prio[prio] = ids
        end
        ids[#ids + 1] = ulid
        nwait = nwait + 1
        out[i + 1] = 'w'
      end
    end
  end
  if #records > 0 then redis.call('HSET', K_JOBS, unpack(records)) end
  for prio, ids in pairs(by_prio) do
    redis.call('RPUSH', P .. 'w:' .. prio, unpack(ids))
    redis.call('ZADD', K_PRIOS, prio, prio)
  end
  if nsched > 0 then
    redis.call('ZADD', ZSET_OF.scheduled, unpack(sched))
    count('scheduled', nsched)
  end
  if nwait > 0 then
    count('waiting', nwait)
    notify()
  end
  count('total:enqueued', nwait + nsched)
  return out
end
