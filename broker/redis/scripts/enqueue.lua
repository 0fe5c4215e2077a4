-- Enqueue a batch into one queue, all or nothing.
-- ARGV: n, then per job: ulid, options, body (the meta members after the head, "}\n",
-- payload). Options are '' for a job with every default (priority 0, no delay, no
-- keys: most jobs), else "<priority>,<delay_ms>,<run_at_ms>,<ttl_ms>,<len uk>,<len ik>,
-- <len hash>," then the unique key, the idempotency key and the request hash, back to
-- back (lengths, because keys may hold any character).
-- Redis copies every ARGV into Lua before the script runs, so fewer is faster.
-- Returns per job 'w' (waiting), 's' (scheduled), 'm' (idempotency key used with
-- another request hash: nothing enqueued), or the first job's id (duplicate).
-- An idempotency key is "<hash>|<job id>" at P .. 'i:' .. key, for IDEMPOTENCY_TTL_MS.
local IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
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
      local delay, run_at, ttl, uklen, iklen, hlen, at
      prio, delay, run_at, ttl, uklen, iklen, hlen, at =
        string.match(opts, '^(-?%d+),(%d+),(%d+),(%d+),(%d+),(%d+),(%d+),()')
      run_at = tonumber(run_at)
      due = run_at > 0 and run_at or NOW + tonumber(delay)
      uklen, iklen = tonumber(uklen), tonumber(iklen)
      local uk = string.sub(opts, at, at + uklen - 1)
      local ik = string.sub(opts, at + uklen, at + uklen + iklen - 1)
      local hash = string.sub(opts, at + uklen + iklen, at + uklen + iklen + tonumber(hlen) - 1)
      local ikey = P .. 'i:' .. ik
      if ik ~= '' then
        local seen = redis.call('GET', ikey)
        if seen then
          local seen_hash, seen_id = string.match(seen, '^(.*)|([^|]*)$')
          first = seen_hash == hash and seen_id or 'm'
        end
      end
      if uk ~= '' and not first then
        first = redis.call('GET', P .. 'u:' .. uk)
        if not first then redis.call('SET', P .. 'u:' .. uk, ulid .. '-' .. Q, 'PX', ttl) end
      end
      if ik ~= '' and first ~= 'm' then
        redis.call('SET', ikey, hash .. '|' .. (first or ulid .. '-' .. Q), 'PX',
          IDEMPOTENCY_TTL_MS, 'NX')
      end
    end
    if first then
      out[i + 1] = first
    else
      records[#records + 1] = ulid
      if due > NOW then
        records[#records + 1] = '{"s":"scheduled","a":0,"ra":' .. int(due) .. ',' .. ARGV[b + 2]
        if listened() then
          publish('enqueued', ulid, type_literal(ARGV[b + 2]),
            ',"state":"scheduled","run_at":' .. int(due))
        end
        sched[#sched + 1] = due
        sched[#sched + 1] = ulid
        nsched = nsched + 1
        out[i + 1] = 's'
      else
        records[#records + 1] = '{"s":"waiting","a":0,' .. ARGV[b + 2]
        if listened() then
          publish('enqueued', ulid, type_literal(ARGV[b + 2]), ',"state":"waiting"')
        end
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
