-- Counts, config, the run-time histogram and the oldest waiting job of one queue,
-- read in one step. Returns {counts, conf, runtimes, heads}: the first three flat
-- HGETALLs, heads {ulid, waiting since ms or '', ...}: the first live job of each
-- priority's list, the one there that has waited longest (see push_waiting).
-- Tombstones at a list's head are looked past, HEAD_LOOK ids at most per list.
local HEAD_LOOK = 100

local function waiting_heads()
  local heads = {}
  for _, level in ipairs(redis.call('ZRANGE', K_PRIOS, 0, -1)) do
    local list, from, found = P .. 'w:' .. level, 0, false
    while not found and from < HEAD_LOOK do
      local ids = redis.call('LRANGE', list, from, from + (from == 0 and 0 or 19))
      if #ids == 0 then break end
      local recs = redis.call('HMGET', K_JOBS, unpack(ids))
      for i, ulid in ipairs(ids) do
        local rec = recs[i]
        if rec and head(rec) == 'waiting' then
          local nl = string.find(rec, '\n', 1, true)
          local wa, at = string.match(rec, '"wa":(%d+)()')
          heads[#heads + 1] = ulid
          heads[#heads + 1] = (wa and at < nl) and wa or ''
          found = true
          break
        end
      end
      from = from + #ids
    end
  end
  return heads
end

local function main()
  return {redis.call('HGETALL', K_COUNTS), redis.call('HGETALL', K_CONF),
    redis.call('HGETALL', K_RT), waiting_heads()}
end
