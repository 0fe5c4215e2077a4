-- Walk one state of a queue, examining at most `scan` entries per call: a page of
-- a listing, or a step of a bulk action (retry or delete every job kept).
-- ARGV: state, cursor ('' = start), limit, order ('asc' | 'desc'), type, error,
--       worker (each '' when not filtered on), scan, action ('' | 'retry' | 'delete')
-- Returns a listing {next_cursor or '', {ulid, record, score, lease, ...}} (for
-- active jobs score is the lease deadline and lease the lease value, its start and
-- worker; else ''), a bulk step {next_cursor or '', matched, done}.
--
-- Each call costs about the same however rare the filter: it stops after `scan`
-- entries (tombstones and jobs the filter drops count too) and its cursor says
-- where, so a filtered page may be short, even empty, with a cursor to go on from.
-- Cursors name a position, not an offset, so they stay right while jobs come and go:
--   waiting:  "<priority>:<n>", the next id to examine in that priority's list, n
--             counting every id ever pushed to it (pops so far + index): reserves
--             at the head do not shift it. asc goes head to tail, priorities high
--             to low (reserve order); desc tail to head, priorities low to high.
--   others:   "<score>:<ulid>", the last entry examined. Its place is found again
--             by value (ZCOUNT, then a binary search among equal scores), so it is
--             O(log n) however many jobs share a score, and still right when that
--             entry has gone. asc goes by (score, ulid) up, desc down; the natural
--             order is desc for finished states (newest first), asc for the others.
-- A bulk step walks desc for waiting and by score down for every set, so what
-- arrives meanwhile (at a list's tail, finished just now) is behind the walk.
local function main()
  local state, cursor, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
  local want_type, want_err, want_worker = ARGV[5], string.lower(ARGV[6]), ARGV[7]
  local scan, action = tonumber(ARGV[8]), ARGV[9]
  local bulk = action ~= ''
  local desc = ARGV[4] == 'desc'
  local filtered = bulk or want_type ~= '' or want_err ~= '' or want_worker ~= ''
  local out, shown, matched, done, seen = {}, 0, 0, 0, {}
  local bad_cursor = fail_with('EINVAL', 'cursor: not one this server gave out')

  -- ---- The filter ----
  local function type_of(rec)
    local lit = type_literal(rec)
    if string.find(lit, '\\', 1, true) then return cjson.decode(lit) end
    return string.sub(lit, 2, -2)
  end

  -- The error text is looked for in the meta's JSON first, which rules out most
  -- records without decoding them; that is exact only for text JSON never escapes.
  local err_plain = not string.find(want_err, '["\\/%c\127]')
  local function error_matches(rec)
    local nl = string.find(rec, '\n', 1, true)
    local er = string.find(rec, '"er":', 1, true)
    if not er or er > nl then return false end
    local text = string.sub(rec, 1, nl - 1)
    if err_plain and not string.find(string.lower(text), want_err, 1, true) then return false end
    for _, e in ipairs(cjson.decode(text).er or {}) do
      if type(e[3]) == 'string' and string.find(string.lower(e[3]), want_err, 1, true) then
        return true
      end
    end
    return false
  end

  local function keeps(rec, lease)
    if not rec or head(rec) ~= state then return false end -- a tombstone
    if want_type ~= '' and type_of(rec) ~= want_type then return false end
    if want_worker ~= '' then
      if not lease then return false end
      local _, worker = lease_run(lease)
      if worker ~= want_worker then return false end
    end
    return want_err == '' or error_matches(rec)
  end

  local act = action == 'retry' and retry_job or delete_job

  -- Examines ids (scores alongside, or nil) in order; stops early when a page is
  -- full. Returns how many it examined.
  local function visit(ids, scores)
    local recs = redis.call('HMGET', K_JOBS, unpack(ids))
    local leases = state == 'active' and redis.call('HMGET', K_LEASE, unpack(ids)) or {}
    for i, ulid in ipairs(ids) do
      local lease = leases[i] or nil
      if keeps(recs[i], lease) then
        if bulk then
          if not seen[ulid] then -- an id may sit in a list twice
            seen[ulid] = true
            matched = matched + 1
            if act(ulid) == nil then done = done + 1 end
          end
        else
          out[#out + 1] = ulid
          out[#out + 1] = recs[i]
          out[#out + 1] = scores and scores[i] or '0'
          out[#out + 1] = lease or ''
          shown = shown + 1
          if shown >= limit then return i end
        end
      end
    end
    return #ids
  end

  local examined = 0
  local function more_to_do()
    return examined < scan and (bulk or shown < limit)
  end
  -- How many ids to fetch next: a page's worth, or bigger steps when most are
  -- dropped by the filter.
  local function step()
    local n = filtered and 250 or limit - shown
    return math.min(n, scan - examined)
  end
  local function reverse(t)
    local r = {}
    for i = #t, 1, -1 do r[#r + 1] = t[i] end
    return r
  end
  local function answer(next_cursor)
    if bulk then return {next_cursor, matched, done} end
    return {next_cursor, out}
  end

  -- ---- Waiting: the priority lists ----
  if state == 'waiting' then
    if bulk then desc = true end
    local cprio, cpos
    if cursor ~= '' then
      cprio, cpos = string.match(cursor, '^(-?%d+):(%d+)$')
      if not cprio then return bad_cursor end
      cprio, cpos = tonumber(cprio), tonumber(cpos)
    end
    local levels
    if desc then
      levels = redis.call('ZRANGEBYSCORE', K_PRIOS, cprio or '-inf', '+inf')
    else
      levels = redis.call('ZREVRANGEBYSCORE', K_PRIOS, cprio or '+inf', '-inf')
    end
    -- The cursor of the first level from levels[k] on that holds ids, or ''.
    local function level_start(k)
      for j = k, #levels do
        local len = redis.call('LLEN', P .. 'w:' .. levels[j])
        if len > 0 then
          local pops = tonumber(redis.call('HGET', K_WPOP, levels[j])) or 0
          return levels[j] .. ':' .. int(desc and pops + len - 1 or pops)
        end
      end
      return ''
    end
    for k, level in ipairs(levels) do
      local list = P .. 'w:' .. level
      local pops = tonumber(redis.call('HGET', K_WPOP, level)) or 0
      local len = redis.call('LLEN', list)
      local at = desc and len - 1 or 0 -- index of the next id to examine
      if cprio and tonumber(level) == cprio then at = cpos - pops end
      if at >= len then at = desc and len - 1 or len end
      if at < 0 then at = desc and -1 or 0 end
      while more_to_do() and at >= 0 and at < len do
        local n = step()
        local ids
        if desc then
          ids = reverse(redis.call('LRANGE', list, math.max(0, at - n + 1), at))
        else
          ids = redis.call('LRANGE', list, at, at + n - 1)
        end
        if #ids == 0 then break end
        local seen_now = visit(ids, nil)
        examined = examined + seen_now
        at = desc and at - seen_now or at + seen_now
      end
      if not more_to_do() then
        if at >= 0 and at < len then return answer(level .. ':' .. int(pops + at)) end
        return answer(level_start(k + 1))
      end
    end
    return answer('')
  end

  -- ---- Every other state: a sorted set ----
  local key = ZSET_OF[state]
  if not key then return fail_with('EINVAL', 'unknown state ' .. state) end
  local newest_first = state == 'succeeded' or state == 'dead' or state == 'canceled'
  local down = newest_first ~= desc
  if bulk then down = true end

  -- The number of entries before (score, member) in (score, member) order, the
  -- entry itself included when `inclusive`: its place, found by value.
  local function place(score, member, inclusive)
    local lo = redis.call('ZCOUNT', key, '-inf', '(' .. score)
    local hi = redis.call('ZCOUNT', key, '-inf', score)
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local m = redis.call('ZRANGE', key, mid, mid)[1]
      if m < member or (inclusive and m == member) then lo = mid + 1 else hi = mid end
    end
    return lo
  end

  -- p: going up, the rank of the next entry; going down, one past it.
  local p, last_score, last_ulid
  if cursor == '' then
    p = down and redis.call('ZCARD', key) or 0
  else
    last_score, last_ulid = string.match(cursor, '^(%d+):([0-9A-Z]+)$')
    if not last_score or #last_ulid ~= 26 then return bad_cursor end
    p = place(last_score, last_ulid, not down)
  end
  while more_to_do() do
    local n = step()
    local batch
    if down then
      if p <= 0 then break end
      batch = redis.call('ZRANGE', key, math.max(0, p - n), p - 1, 'WITHSCORES')
    else
      batch = redis.call('ZRANGE', key, p, p + n - 1, 'WITHSCORES')
    end
    if #batch == 0 then break end
    local ids, scores = {}, {}
    for i = 1, #batch, 2 do
      ids[#ids + 1] = batch[i]
      scores[#scores + 1] = batch[i + 1]
    end
    if down then ids, scores = reverse(ids), reverse(scores) end
    local seen_now = visit(ids, scores)
    examined = examined + seen_now
    last_score, last_ulid = scores[seen_now], ids[seen_now]
    -- A bulk step may have taken entries out of this set: find the place again.
    p = place(last_score, last_ulid, not down)
  end
  if not last_ulid then return answer('') end
  local more = (down and p > 0) or (not down and p < redis.call('ZCARD', key))
  return answer(more and last_score .. ':' .. last_ulid or '')
end
