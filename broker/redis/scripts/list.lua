-- List one state of a queue, a page at a time.
-- ARGV: state, cursor ('' = start), limit. Returns {next_cursor or '', {ulid, record,
-- score, lease, ...}}; for active jobs score is the lease deadline and lease the
-- lease value (its start and worker), else ''.
-- Cursors name a position, not an offset, so pages stay right while jobs come and go:
--   waiting:  "<priority>:<n>", n counting every id ever pushed to that priority's list
--             (pops so far + index), so reserves at the head do not shift it;
--   others:   "<score>:<ulid>", the last job shown, in the set's order.
local function main()
  local state, cursor, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
  local out, next_cursor = {}, ''

  local function emit(ulid, score)
    local rec = redis.call('HGET', K_JOBS, ulid)
    if not rec or head(rec) ~= state then return false end
    out[#out + 1] = ulid
    out[#out + 1] = rec
    out[#out + 1] = score
    out[#out + 1] = state == 'active' and (redis.call('HGET', K_LEASE, ulid) or '') or ''
    return true
  end

  if state == 'waiting' then
    local cprio, cpos = string.match(cursor, '^(-?%d+):(%d+)$')
    local levels
    if cprio then
      levels = redis.call('ZREVRANGEBYSCORE', K_PRIOS, cprio, '-inf')
    else
      levels = redis.call('ZREVRANGE', K_PRIOS, 0, -1)
    end
    local shown, scanned = 0, 0
    for _, level in ipairs(levels) do
      local pops = tonumber(redis.call('HGET', K_WPOP, level)) or 0
      local offset = 0
      if cprio and level == cprio then offset = math.max(0, tonumber(cpos) - pops) end
      local list = P .. 'w:' .. level
      while shown < limit and scanned < limit * 10 do
        local ids = redis.call('LRANGE', list, offset, offset + limit - shown - 1)
        if #ids == 0 then break end
        for _, ulid in ipairs(ids) do
          offset = offset + 1
          scanned = scanned + 1
          if emit(ulid, '0') then shown = shown + 1 end
          if shown >= limit then break end
        end
      end
      if shown >= limit or scanned >= limit * 10 then
        if redis.call('LLEN', list) > offset then
          next_cursor = level .. ':' .. int(pops + offset)
        else
          local lower = redis.call('ZREVRANGEBYSCORE', K_PRIOS, '(' .. level, '-inf', 'LIMIT', 0, 1)
          if lower[1] then next_cursor = lower[1] .. ':0' end
        end
        break
      end
    end
    return {next_cursor, out}
  end

  local key = ZSET_OF[state]
  if not key then return fail_with('EINVAL', 'unknown state ' .. state) end
  local newest_first = state == 'succeeded' or state == 'dead' or state == 'canceled'
  local cscore, culid = string.match(cursor, '^(%d+):(%w+)$')
  local bound = cscore or (newest_first and '+inf' or '-inf')
  local skip, shown, last_score, last_ulid = 0, 0, nil, nil
  while shown < limit do
    local batch
    if newest_first then
      batch = redis.call('ZREVRANGEBYSCORE', key, bound, '-inf', 'WITHSCORES', 'LIMIT', skip, limit)
    else
      batch = redis.call('ZRANGEBYSCORE', key, bound, '+inf', 'WITHSCORES', 'LIMIT', skip, limit)
    end
    if #batch == 0 then break end
    skip = skip + #batch / 2
    for i = 1, #batch, 2 do
      local ulid, score = batch[i], batch[i + 1]
      -- Jobs with the cursor's own score sort by ulid; skip those already shown.
      local seen = cscore and score == cscore and
        ((newest_first and ulid >= culid) or (not newest_first and ulid <= culid))
      if not seen and emit(ulid, score) then
        shown = shown + 1
        last_score, last_ulid = score, ulid
        if shown >= limit then break end
      end
    end
  end
  if shown >= limit and last_ulid then next_cursor = last_score .. ':' .. last_ulid end
  return {next_cursor, out}
end
