-- Prepended to every Hopper script (after the line `local D = {...}` of defaults
-- that broker/redis/scripts.c writes from broker.h, so C and Lua share one source).
--
-- KEYS[1] is the queue's key prefix "hopper:{<queue>}:"; every key a script
-- touches starts with it, so one script touches one Redis Cluster slot.
-- A job record is "<meta JSON>\n<payload JSON>": meta is small and decoded here;
-- the payload is producer text that no script ever parses, so it keeps every
-- digit and byte it was given. Time is Redis's TIME: one clock for every host.
--
-- Every script body defines `local function main()`; scripts.c appends the epilogue
-- that calls it, trims the finished sets it added to, and writes the count changes
-- it collected (one HINCRBY per field, not one per job). A redis.call costs about a
-- microsecond or two, so hot paths use one variadic command per batch, not per job.
local P = KEYS[1]
local Q = string.sub(P, 9, #P - 2)
local K_JOBS, K_RES, K_LEASE = P .. 'jobs', P .. 'res', P .. 'lease'
local K_PRIOS, K_WPOP = P .. 'prios', P .. 'wpop'
local K_COUNTS, K_CONF, K_NOTIFY = P .. 'counts', P .. 'conf', P .. 'notify'
local K_PROG, K_LOGS = P .. 'prog', P .. 'logs'
local K_RT = P .. 'rt'
local EVENTS = 'hopper:events'
local ZSET_OF = {
  scheduled = P .. 'sched', failed = P .. 'retry', active = P .. 'active',
  succeeded = P .. 'succeeded', dead = P .. 'dead', canceled = P .. 'canceled',
}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local NOW = now_ms()

local function int(n)
  return string.format('%d', n)
end
local NOW_S = int(NOW)

local function fail_with(code, msg)
  return redis.error_reply(code .. ' ' .. msg)
end

local function hgetall(key)
  local flat, t = redis.call('HGETALL', key), {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local CONF = nil -- the queue's config, read once per call
local function conf()
  if not CONF then CONF = hgetall(K_CONF) end
  return CONF
end

local function conf_number(name, default)
  return tonumber(conf()[name]) or default
end

-- A record's meta always starts with its state and attempts, in this order:
--   {"s":"<state>","a":<attempts>,<the other members>}\n<payload>
-- so the hot moves (reserve, ack) read and rewrite that head as a string and
-- never decode JSON; colder moves decode with cjson and encode() restores the head.
local HEAD = '^{"s":"(%a+)","a":(%d+),()'

-- Returns state, attempts and the position of the rest of a record.
local function head(rec)
  local s, a, rest = string.match(rec, HEAD)
  return s, tonumber(a), rest
end

-- Splits a record into meta (a table) and the payload text.
local function decode(rec)
  local nl = string.find(rec, '\n', 1, true)
  return cjson.decode(string.sub(rec, 1, nl - 1)), string.sub(rec, nl + 1)
end

-- Returns meta and payload of a job, or nil.
local function load(ulid)
  local rec = redis.call('HGET', K_JOBS, ulid)
  if not rec then return nil end
  return decode(rec)
end

local function encode(meta, payload)
  local s, a = meta.s, meta.a or 0
  meta.s, meta.a = nil, nil
  local rest = cjson.encode(meta) -- never "{}": every job has a type and max_attempts
  meta.s, meta.a = s, a
  return '{"s":"' .. s .. '","a":' .. int(a) .. ',' .. string.sub(rest, 2) .. '\n' .. payload
end

local function store(ulid, meta, payload)
  redis.call('HSET', K_JOBS, ulid, encode(meta, payload))
end

local PENDING = {} -- count changes, written by the epilogue
local TOUCHED = {} -- finished states added to, trimmed by the epilogue
local function count(field, delta)
  PENDING[field] = (PENDING[field] or 0) + delta
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
-- Every move to waiting but an enqueue's sets meta.wa (waiting since), before the
-- record is stored, so the head of a list tells how long it has waited: pushes go
-- to the tail at NOW, so times only grow along a list (an enqueued job's is its
-- id's time). stats.lua reads it.
local function push_waiting(ulid, prio)
  prio = prio or 0
  redis.call('RPUSH', P .. 'w:' .. prio, ulid)
  redis.call('ZADD', K_PRIOS, prio, prio)
end

local function add_error(meta, msg)
  meta.er = meta.er or {}
  meta.er[#meta.er + 1] = {NOW, meta.a or 0, msg}
end

-- ---- Events ----
-- Each state change publishes one JSON object on EVENTS (docs/architecture.md).
-- Built by concatenation, not cjson, because reserve and ack publish one per job:
-- ids, the queue, numbers and state names never need escaping, and the type is
-- copied as the JSON string literal the record already holds.

-- The job type's JSON string literal (quotes and escapes as stored) in a record or
-- an enqueue body. `"t":"` can only be the real key and comes before the payload:
-- a quote inside any stored string is escaped, and meta precedes the payload.
local function type_literal(rec)
  local s = string.find(rec, '"t":"', 1, true)
  if not s then return '""' end
  local i = s + 5
  while true do
    local c = string.find(rec, '["\\]', i)
    if not c then return '""' end
    if string.byte(rec, c) == 34 then return string.sub(rec, s + 4, c) end
    i = c + 2 -- skip the escaped character
  end
end

-- Whether anyone subscribes to EVENTS, asked once per call. A message nobody
-- receives is lost anyway (pub/sub keeps nothing), so with no subscriber the hot
-- paths skip building and publishing events: reserve and ack would otherwise pay
-- two redis.calls per job. Known limit: on Redis Cluster, NUMSUB counts only this
-- node's subscribers, so subscribe on the node that holds the queue's slot.
local LISTENED = nil
local function listened()
  if LISTENED == nil then
    LISTENED = redis.call('PUBSUB', 'NUMSUB', EVENTS)[2] > 0
      or redis.call('PUBSUB', 'NUMPAT') > 0
  end
  return LISTENED
end

-- Publishes {"event":name,"id","queue","type","at"} plus `extra`, which is either
-- '' or members that start with a comma (',"attempt":2,"state":"failed"').
local function publish(name, ulid, typelit, extra)
  if not listened() then return end
  redis.call('PUBLISH', EVENTS, '{"event":"' .. name .. '","id":"' .. ulid .. '-' .. Q
    .. '","queue":"' .. Q .. '","type":' .. typelit .. ',"at":' .. NOW_S .. extra .. '}')
end

-- The event of a decoded job leaving active or a non-final state (cold paths).
-- `err` (may be nil) is a message, escaped here; `runtime` and `retry_at` may be nil.
local function publish_meta(name, ulid, meta, err, runtime, retry_at)
  if not listened() then return end
  local extra = ',"attempt":' .. int(meta.a or 0) .. ',"state":"' .. meta.s .. '"'
  if err then extra = extra .. ',"error":' .. cjson.encode(err) end
  if runtime then extra = extra .. ',"runtime_ms":' .. int(runtime) end
  if retry_at then extra = extra .. ',"retry_at":' .. int(retry_at) end
  publish(name, ulid, cjson.encode(meta.t or ''), extra)
end

-- ---- Run-time histogram ----
-- Run times of finished attempts (ack, fail), collected per call and written by the
-- epilogue to K_RT: bucket index (0-based, as in C) -> count, one HINCRBY per bucket
-- used, and "sum" -> total ms. D.rt holds the bounds, written from broker.h.
local RT, RT_SUM = {}, 0
local function record_runtime(ms)
  if ms < 0 then ms = 0 end
  local bucket = #D.rt
  for i = 1, #D.rt do
    if ms <= D.rt[i] then
      bucket = i - 1
      break
    end
  end
  RT[bucket] = (RT[bucket] or 0) + 1
  RT_SUM = RT_SUM + ms
end

-- ---- Throughput ----
-- Finished attempts per second, per queue: hash P .. 'tp:' .. <Unix minute> with
-- fields 's<second of that minute>' (attempts that succeeded) and 'f<second>'
-- (attempts that failed, retried or not). Counted per call here; the epilogue adds
-- them with one HINCRBY per field used and gives the hash a TTL of TP_TTL_S when
-- it creates a field, so a minute's hash is gone two hours later.
local TP_SUCCEEDED, TP_FAILED = 0, 0
local TP_TTL_S = 7200

-- A lease hash value is "<token>|<started ms>|<worker>", then "|c" once cancel is
-- asked. Worker names never hold '|' or '"' (broker.c checks them).
local function lease_value(token, started, worker)
  return token .. '|' .. int(started) .. '|' .. worker
end

local function holds(held, token)
  return held ~= nil and held ~= false and string.sub(held, 1, #token + 1) == token .. '|'
end

local function cancel_asked(held)
  return string.sub(held, -2) == '|c'
end

-- The started time and worker of a lease value.
local function lease_run(held)
  local started, worker = string.match(held, '^[^|]*|(%d+)|([^|]*)')
  return tonumber(started), worker
end

-- Copies the running attempt's start and worker from its lease into meta, for the
-- history of a job that leaves active through a decoding (cold) path.
local function keep_run(meta, held)
  if held then meta.st, meta.wk = lease_run(held) end
end

-- Finished sets keep at most keep:<state> jobs younger than keepage:<state> ms;
-- at most 100 go per call, so no call is ever slow.
local function trim_finished(state)
  local key = ZSET_OF[state]
  local keep = conf_number('keep:' .. state, D.keep[state])
  local age = conf_number('keepage:' .. state, D.keepage[state])
  local over = redis.call('ZCARD', key) - keep
  local victims = redis.call('ZRANGEBYSCORE', key, '-inf', NOW - age, 'LIMIT', 0, 100)
  if over > #victims then victims = redis.call('ZRANGE', key, 0, math.min(over, 100) - 1) end
  if #victims > 0 then
    for _, key_of_job in ipairs({K_JOBS, K_RES, K_PROG, K_LOGS}) do
      redis.call('HDEL', key_of_job, unpack(victims))
    end
    redis.call('ZREM', key, unpack(victims))
    count(state, -#victims)
  end
end

-- Moves a loaded job to a final state (the caller has taken it out of its old set).
local function finish(ulid, meta, payload, from, state)
  meta.s = state
  meta.fa = NOW
  meta.ra = nil
  store(ulid, meta, payload)
  redis.call('ZADD', ZSET_OF[state], NOW, ulid)
  move_count(from, state)
  if state == 'dead' then count('total:dead', 1) end
  TOUCHED[state] = true
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
local function promote_due(limit)
  local moved = 0
  for _, from in ipairs({'scheduled', 'failed'}) do
    local key = ZSET_OF[from]
    local due = redis.call('ZRANGEBYSCORE', key, '-inf', NOW, 'LIMIT', 0, limit)
    for _, ulid in ipairs(due) do
      redis.call('ZREM', key, ulid)
      local meta, payload = load(ulid)
      if meta then
        meta.s = 'waiting'
        meta.ra, meta.st, meta.wk = nil, nil, nil -- a waiting record has no run
        meta.wa = NOW
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
local function recover_leases(limit)
  local key = ZSET_OF.active
  local lost = redis.call('ZRANGEBYSCORE', key, '-inf', NOW, 'LIMIT', 0, limit)
  local requeued = 0
  for _, ulid in ipairs(lost) do
    local held = redis.call('HGET', K_LEASE, ulid)
    redis.call('ZREM', key, ulid)
    redis.call('HDEL', K_LEASE, ulid)
    local meta, payload = load(ulid)
    if meta then
      local why = 'lease expired: the worker stopped answering'
      keep_run(meta, held)
      add_error(meta, why)
      count('total:failed', 1)
      TP_FAILED = TP_FAILED + 1
      if meta.cr then
        finish(ulid, meta, payload, 'active', 'canceled')
        publish_meta('canceled', ulid, meta, why)
      elseif (meta.a or 0) >= meta.ma then
        finish(ulid, meta, payload, 'active', 'dead')
        publish_meta('dead', ulid, meta, why)
      else
        meta.s = 'waiting'
        meta.st, meta.wk = nil, nil
        meta.wa = NOW
        store(ulid, meta, payload)
        push_waiting(ulid, meta.p)
        move_count('active', 'waiting')
        requeued = requeued + 1
        publish_meta('failed', ulid, meta, why)
      end
    end
  end
  if requeued > 0 then notify() end
end

-- ---- Retry and delete by hand ----
-- Shared by retry.lua and delete.lua (one job) and list.lua (bulk). Each returns
-- nil when done, else an error reply.

-- A dead, failed or canceled job back to waiting with a fresh set of attempts; its
-- error history stays. `new_payload` (nil: keep) replaces the stored payload text.
local function retry_job(ulid, new_payload)
  local meta, payload = load(ulid)
  if not meta then return fail_with('ENOTFOUND', 'job ' .. ulid .. '-' .. Q .. ' not found') end
  local s = meta.s
  if s ~= 'dead' and s ~= 'failed' and s ~= 'canceled' then
    return fail_with('ESTATE', 'job ' .. ulid .. '-' .. Q .. ' is ' .. s
      .. '; only dead, failed or canceled jobs can be retried')
  end
  redis.call('ZREM', ZSET_OF[s], ulid)
  meta.s = 'waiting'
  meta.a = nil
  meta.fa = nil
  meta.ra = nil
  meta.cr = nil
  meta.st, meta.wk = nil, nil -- a waiting record has no run
  meta.wa = NOW
  store(ulid, meta, new_payload or payload)
  push_waiting(ulid, meta.p)
  move_count(s, 'waiting')
  notify()
  publish_meta('retried', ulid, meta)
  return nil
end

-- Removes a job that is not active. A waiting job's id stays in its list (a
-- tombstone that reserve skips).
local function delete_job(ulid)
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
  return nil
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

-- Checks that `token` holds the lease of an active job. Returns meta, payload and
-- the lease value, or nil and an error reply.
local function load_leased(ulid, token)
  local meta, payload = load(ulid)
  if not meta then return nil, fail_with('ENOTFOUND', 'job ' .. ulid .. '-' .. Q .. ' not found') end
  local held = redis.call('HGET', K_LEASE, ulid)
  if meta.s ~= 'active' or not holds(held, token) then
    return nil, fail_with('ELEASE', 'job ' .. ulid .. '-' .. Q .. ' is ' .. meta.s
      .. ' and no longer leased with this token')
  end
  return meta, payload, held
end


-- ---- Enqueue ----
-- The per-job part of an enqueue, shared by enqueue.lua and schedule_fire.lua so a
-- fired job's record, counts, keys, events and wake-up are exactly an enqueued one's.
-- A batch collects its writes in an accumulator and writes them with one variadic
-- command each in enqueue_flush (one redis.call per batch, not per job).
--
-- Per job: ulid, options, body (the meta members after the head, "}\n", payload).
-- Options are '' for a job with every default (priority 0, no delay, no keys: most
-- jobs), else "<priority>,<delay_ms>,<run_at_ms>,<ttl_ms>,<len uk>,<len ik>,<len hash>,"
-- then the unique key, the idempotency key and the request hash, back to back
-- (lengths, because keys may hold any character).
-- An idempotency key is "<hash>|<job id>" at P .. 'i:' .. key, for IDEMPOTENCY_TTL_MS.
local IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000

-- An error reply when `n` more jobs would pass the queue's max length, else nil.
local function refuse_if_full(n)
  local maxlen = tonumber(conf().maxlen)
  if not maxlen then return nil end
  local c = redis.call('HMGET', K_COUNTS, 'waiting', 'scheduled', 'failed', 'active')
  local pending = 0
  for _, v in ipairs(c) do pending = pending + (tonumber(v) or 0) end
  if pending + n > maxlen then
    return fail_with('EFULL', 'queue "' .. Q .. '" is full: ' .. pending .. ' of at most '
      .. maxlen .. ' jobs pending')
  end
  return nil
end

local function enqueue_begin()
  return {records = {}, by_prio = {}, sched = {}, nwait = 0, nsched = 0}
end

-- Adds one job to the batch. Returns 'w' (waiting), 's' (scheduled), 'm' (idempotency
-- key used with another request hash: nothing enqueued), or the first job's id
-- (duplicate: nothing enqueued).
local function enqueue_one(acc, ulid, opts, body)
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
  if first then return first end
  local records = acc.records
  records[#records + 1] = ulid
  if due > NOW then
    records[#records + 1] = '{"s":"scheduled","a":0,"ra":' .. int(due) .. ',' .. body
    if listened() then
      publish('enqueued', ulid, type_literal(body), ',"state":"scheduled","run_at":' .. int(due))
    end
    acc.sched[#acc.sched + 1] = due
    acc.sched[#acc.sched + 1] = ulid
    acc.nsched = acc.nsched + 1
    return 's'
  end
  records[#records + 1] = '{"s":"waiting","a":0,' .. body
  if listened() then publish('enqueued', ulid, type_literal(body), ',"state":"waiting"') end
  local ids = acc.by_prio[prio]
  if not ids then
    ids = {}
    acc.by_prio[prio] = ids
  end
  ids[#ids + 1] = ulid
  acc.nwait = acc.nwait + 1
  return 'w'
end

-- Writes the batch: records, waiting lists, the scheduled set, counts, one wake-up.
local function enqueue_flush(acc)
  if #acc.records > 0 then redis.call('HSET', K_JOBS, unpack(acc.records)) end
  for prio, ids in pairs(acc.by_prio) do
    redis.call('RPUSH', P .. 'w:' .. prio, unpack(ids))
    redis.call('ZADD', K_PRIOS, prio, prio)
  end
  if acc.nsched > 0 then
    redis.call('ZADD', ZSET_OF.scheduled, unpack(acc.sched))
    count('scheduled', acc.nsched)
  end
  if acc.nwait > 0 then
    count('waiting', acc.nwait)
    notify()
  end
  count('total:enqueued', acc.nwait + acc.nsched)
end
