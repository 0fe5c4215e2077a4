-- Fire one tick of a schedule: the compare-and-set of broker_schedule_fire (broker.h),
-- in one step with the job's enqueue, so a tick is fired once however many servers try.
-- KEYS[1]: the prefix of the schedule's queue (the template's).
-- ARGV: name, tick (Unix ms; for a trigger, the time the job carries), next_ms, mode,
-- then the job as enqueue_one takes it: ulid, options, body ('' when mode is 'missed').
-- Mode: 'tick' (the compare), 'missed' (the compare; record the tick as missed) or
-- 'trigger' (no compare; enqueue now, next_fire_ms untouched, overlap not checked).
-- Returns {outcome, job id or ''}, outcome 'fired'|'skipped'|'missed'|'lost'; or
-- ENOTFOUND (trigger of a schedule not here) or EFULL (nothing changed).
--
-- A tick's guard P .. 'stick:' .. name .. ':' .. tick (the job id, kept a day) makes
-- a second fire of one tick impossible even when next_fire_ms is set back to a tick
-- already fired (two servers applying their config at start): that fire moves
-- next_fire_ms but enqueues nothing, and answers 'lost' with the first job's id.
local TICK_GUARD_MS = 24 * 3600 * 1000
local UNFINISHED = {waiting = true, scheduled = true, active = true, failed = true}

-- History entries are flat JSON objects (ids, numbers, outcome names: no braces in
-- strings), so the list is kept as text: the new entry first, at most D.history_max.
local function push_history(key, old, tick, job, outcome)
  local items = {'{"tick":' .. int(tick) .. ',"at":' .. NOW_S .. ',"job":'
    .. (job and '"' .. job .. '"' or 'null') .. ',"outcome":"' .. outcome .. '"}'}
  for e in string.gmatch(old or '', '{[^{}]*}') do
    if #items >= D.history_max then break end
    items[#items + 1] = e
  end
  redis.call('HSET', key, 'history', '[' .. table.concat(items, ',') .. ']')
end

-- Whether the job `id` is one of this queue's and has not finished.
local function unfinished(id)
  local suffix = '-' .. Q
  if id == '' or string.sub(id, -#suffix) ~= suffix then return false end
  local rec = redis.call('HGET', K_JOBS, string.sub(id, 1, #id - #suffix))
  if not rec then return false end
  local state = head(rec)
  return UNFINISHED[state] == true
end

local function main()
  local name, tick, next_ms, mode = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
  local key = P .. 'schedule:' .. name
  local s = redis.call('HMGET', key, 'next_fire_ms', 'paused', 'overlap', 'last_job_id',
    'history')
  if not s[1] then
    if mode == 'trigger' then
      return fail_with('ENOTFOUND', 'schedule "' .. name .. '" not found in queue "' .. Q .. '"')
    end
    return {'lost', ''}
  end
  if mode ~= 'trigger' and (s[2] == '1' or tonumber(s[1]) ~= tick) then return {'lost', ''} end
  if mode == 'missed' then
    redis.call('HSET', key, 'next_fire_ms', next_ms)
    push_history(key, s[5], tick, nil, 'missed')
    return {'missed', ''}
  end
  if mode == 'tick' and s[3] == 'skip' and unfinished(s[4]) then
    redis.call('HSET', key, 'next_fire_ms', next_ms)
    push_history(key, s[5], tick, nil, 'skipped_overlap')
    return {'skipped', ''}
  end
  local guard = P .. 'stick:' .. name .. ':' .. int(tick)
  if mode == 'tick' then
    local first = redis.call('GET', guard)
    if first then
      redis.call('HSET', key, 'next_fire_ms', next_ms)
      return {'lost', first}
    end
  end
  local full = refuse_if_full(1)
  if full then return full end
  local ulid = ARGV[5]
  local acc = enqueue_begin()
  local r = enqueue_one(acc, ulid, ARGV[6], ARGV[7])
  enqueue_flush(acc)
  -- 'w'/'s': enqueued; else the template's own unique key found an earlier job,
  -- which then stands for this tick.
  local id = #r == 1 and ulid .. '-' .. Q or r
  if mode == 'tick' then
    redis.call('SET', guard, id, 'PX', TICK_GUARD_MS)
    redis.call('HSET', key, 'next_fire_ms', next_ms)
  end
  redis.call('HSET', key, 'last_fire_ms', int(tick), 'last_job_id', id)
  push_history(key, s[5], tick, id, mode == 'trigger' and 'triggered' or 'enqueued')
  return {'fired', id}
end
