-- Prepended to every Hopper script (after the line `local D = {...}` of defaults
-- that broker/redis/scripts.c writes from broker.h, so C and Lua share one source).
--
-- KEYS[1] is the queue's key prefix "hopper:{<queue>}:"; every key a script
-- touches starts with it, so one script touches one Redis Cluster slot.
-- A job record is "<meta JSON>\n<payload JSON>": meta is small and decoded here;
-- the payload is producer text that no script ever parses, so it keeps every
-- digit and byte it was given. Time is Redis's TIME: one clock for every host.
local P = KEYS[1]
local Q = string.sub(P, 9, #P - 2)
local K_JOBS, K_RES, K_LEASE = P .. 'jobs', P .. 'res', P .. 'lease'
local K_PRIOS, K_WPOP = P .. 'prios', P .. 'wpop'
local K_COUNTS, K_CONF, K_NOTIFY = P .. 'counts', P .. 'conf', P .. 'notify'
local ZSET_OF = {
  scheduled = P .. 'sched', failed = P .. 'retry', active = P .. 'active',
  succeeded = P .. 'succeeded', dead = P .. 'dead', canceled = P .. 'canceled',
}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function int(n)
  return string.format('%d', n)
end

local function fail_with(code, msg)
  return redis.error_reply(code .. ' ' .. msg)
end

local function hgetall(key)
  local flat, t = redis.call('HGETALL', key), {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local function conf_number(conf, name, default)
  return tonumber(conf[name]) or default
end

-- Returns meta (a table) and the payload text, or nil.
local function load(ulid)
  local rec = redis.call('HGET', K_JOBS, ulid)
  if not rec then return nil end
  local nl = string.find(rec, '\n', 1, true)
  return cjson.decode(string.sub(rec, 1, nl - 1)), string.sub(rec, nl + 1)
end

local function encode(meta, payload)
  return cjson.encode(meta) .. '\n' .. payload
end

local function store(ulid, meta, payload)
  redis.call('HSET', K_JOBS, ulid, encode(meta, payload))
end

local function count(field, delta)
  redis.call('HINCRBY', K_COUNTS, field, delta)
end

local function move_count(from, to)
  count(from, -1)
  count(to, 1)
end

-- One wake-up token: a worker blocked in BLPOP on K_NOTIFY wakes; the one that
-- wakes passes the token on if work is left (see reserve.lua).
local function notify()
  redis.call('RPUSH', K_NOTIFY, 1)
  redis.call('LTRIM', K_NOTIFY, -1, -1)
end

-- Waiting jobs sit in one list per priority, FIFO; K_PRIOS holds the levels in use.
local function push_waiting(ulid, prio)
  prio = prio or 0
  redis.call('RPUSH', P .. 'w:' .. prio, ulid)
  redis.call('ZADD', K_PRIOS, prio, prio)
end

local function add_error(meta, now, msg)
  meta.er = meta.er or {}
  meta.er[#meta.er + 1] = {now, meta.a or 0, msg}
end

-- Finished sets keep at most keep:<state> jobs younger than keepage:<state> ms.
local function trim_finished(state, now, conf)
  local key = ZSET_OF[state]
  local keep = conf_number(conf, 'keep:' .. state, D.keep[state])
  local age = conf_number(conf, 'keepage:' .. state, D.keepage[state])
  local over = redis.call('ZCARD', key) - keep
  local old = redis.call('ZRANGEBYSCORE', key, '-inf', now - age, 'LIMIT', 0, 100)
  local victims = old
  if over > #old then victims = redis.call('ZRANGE', key, 0, math.min(over, 100) - 1) end
  for _, ulid in ipairs(victims) do
    redis.call('HDEL', K_JOBS, ulid)
    redis.call('HDEL', K_RES, ulid)
    redis.call('ZREM', key, ulid)
  end
  if #victims > 0 then count(state, -#victims) end
end

-- Moves a loaded job to a final state (the caller has taken it out of its old set).
local function finish(ulid, meta, payload, from, state, now, conf)
  meta.s = state
  meta.fa = now
  meta.ra = nil
  meta.wk = nil
  store(ulid, meta, payload)
  redis.call('ZADD', ZSET_OF[state], now, ulid)
  move_count(from, state)
  if state == 'dead' then count('total:dead', 1) end
  trim_finished(state, now, conf)
end

local function backoff_ms(meta, rand)
  local base, cap, a = meta.bb or D.bb, meta.bc or D.bc, meta.a or 1
  local d
  if meta.bk == 'fixed' then
    d = base
  elseif meta.bk == 'linear' then
    d = base * a
  else
    d = math.min(base * 2 ^ (a - 1), cap)
    d = d / 2 + rand * d / 2 -- equal jitter: never less than half the step
  end
  return math.floor(math.min(d, cap))
end

-- Due scheduled and failed jobs become waiting.
local function promote_due(now, limit)
  local moved = 0
  for _, from in ipairs({'scheduled', 'failed'}) do
    local key = ZSET_OF[from]
    local due = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, limit)
    for _, ulid in ipairs(due) do
      redis.call('ZREM', key, ulid)
      local meta, payload = load(ulid)
      if meta then
        meta.s = 'waiting'
        meta.ra = nil
        store(ulid, meta, payload)
        push_waiting(ulid, meta.p)
        move_count(from, 'waiting')
        moved = moved + 1
      end
    end
  end
  if moved > 0 then notify() end
  return moved
end

-- Active jobs whose lease ran out: the attempt counts; back to waiting while
-- attempts are left, else dead, so a job that kills every worker ends.
local function recover_leases(now, limit, conf)
  local key = ZSET_OF.active
  local lost = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, limit)
  local requeued = 0
  for _, ulid in ipairs(lost) do
    redis.call('ZREM', key, ulid)
    redis.call('HDEL', K_LEASE, ulid)
    local meta, payload = load(ulid)
    if meta then
      add_error(meta, now, 'lease expired: the worker stopped answering')
      count('total:failed', 1)
      if meta.cr then
        finish(ulid, meta, payload, 'active', 'canceled', now, conf)
      elseif (meta.a or 0) >= meta.ma then
        finish(ulid, meta, payload, 'active', 'dead', now, conf)
      else
        meta.s = 'waiting'
        meta.wk = nil
        store(ulid, meta, payload)
        push_waiting(ulid, meta.p)
        move_count('active', 'waiting')
        requeued = requeued + 1
      end
    end
  end
  if requeued > 0 then notify() end
end

-- When something next comes due (a scheduled job, a retry, a lease), or 0.
local function next_due()
  local best = 0
  for _, name in ipairs({'scheduled', 'failed', 'active'}) do
    local first = redis.call('ZRANGE', ZSET_OF[name], 0, 0, 'WITHSCORES')
    if first[2] then
      local t = tonumber(first[2])
      if best == 0 or t < best then best = t end
    end
  end
  return best
end

-- Checks that `token` holds the lease of an active job. Returns meta, payload or
-- nil and an error reply.
local function load_leased(ulid, token)
  local meta, payload = load(ulid)
  if not meta then return nil, fail_with('ENOTFOUND', 'job ' .. ulid .. '-' .. Q .. ' not found') end
  local held = redis.call('HGET', K_LEASE, ulid)
  if meta.s ~= 'active' or not held or string.sub(held, 1, #token) ~= token
      or (#held ~= #token and string.sub(held, #token + 1) ~= ' cancel') then
    return nil, fail_with('ELEASE', 'job ' .. ulid .. '-' .. Q .. ' is ' .. meta.s
      .. ' and no longer leased with this token')
  end
  return meta, payload
end
