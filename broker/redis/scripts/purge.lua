-- Remove up to `limit` jobs of one state that is not active; broker_purge calls this
-- until it says done, so no single call holds Redis for long.
-- ARGV: state, limit, jobs removed by the earlier calls of this purge.
-- Returns {removed by this call, 1 when nothing is left else 0}. The last call
-- publishes one "purged" event with the total (no event per job).

-- Deletes the jobs' records, results, progress and logs; returns how many records
-- there were (an id given twice counts once).
local function drop_jobs(ulids)
  local removed = redis.call('HDEL', K_JOBS, unpack(ulids))
  for _, key_of_job in ipairs({K_RES, K_PROG, K_LOGS}) do
    redis.call('HDEL', key_of_job, unpack(ulids))
  end
  return removed
end

-- Empties the priority lists from the top. Ids whose record is not waiting are
-- tombstones (canceled, deleted, moved on) and only leave the list.
local function purge_waiting(limit)
  local removed, popped = 0, 0
  while popped < limit do
    local top = redis.call('ZREVRANGE', K_PRIOS, 0, 0)[1]
    if not top then return removed, true end
    local list = P .. 'w:' .. top
    local ids = redis.call('LPOP', list, limit - popped)
    if not ids or redis.call('LLEN', list) == 0 then redis.call('ZREM', K_PRIOS, top) end
    if ids then
      popped = popped + #ids
      redis.call('HINCRBY', K_WPOP, top, #ids) -- keeps list cursors counting right
      local recs = redis.call('HMGET', K_JOBS, unpack(ids))
      local victims = {}
      for i, ulid in ipairs(ids) do
        if recs[i] and head(recs[i]) == 'waiting' then victims[#victims + 1] = ulid end
      end
      if #victims > 0 then removed = removed + drop_jobs(victims) end
    end
  end
  return removed, redis.call('ZCARD', K_PRIOS) == 0
end

local function purge_set(state, limit)
  local key = ZSET_OF[state]
  local ulids = redis.call('ZRANGE', key, 0, limit - 1)
  if #ulids == 0 then return 0, true end
  redis.call('ZREM', key, unpack(ulids))
  drop_jobs(ulids)
  return #ulids, #ulids < limit
end

local function main()
  local state, limit, before = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
  if state == 'active' or (state ~= 'waiting' and not ZSET_OF[state]) then
    return fail_with('ESTATE', 'purge: cannot purge ' .. state .. ' jobs')
  end
  local removed, done
  if state == 'waiting' then
    removed, done = purge_waiting(limit)
  else
    removed, done = purge_set(state, limit)
  end
  count(state, -removed)
  if done and listened() then
    redis.call('PUBLISH', EVENTS, '{"event":"purged","queue":"' .. Q .. '","state":"' .. state
      .. '","count":' .. int(before + removed) .. ',"at":' .. NOW_S .. '}')
  end
  return {removed, done and 1 or 0}
end
