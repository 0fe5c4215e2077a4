-- Finish active jobs as succeeded, in one step for the whole batch. A string splice
-- of each record's head: no JSON is decoded.
-- ARGV: n, then per job: ulid, token, result ('' for none)
-- Returns per job 'succeeded', or an error text "ENOTFOUND ..." / "ELEASE ...".
local function main()
  local n = tonumber(ARGV[1])
  local ulids = {}
  for i = 1, n do ulids[i] = ARGV[3 * i - 1] end
  local recs = redis.call('HMGET', K_JOBS, unpack(ulids))
  local held = redis.call('HMGET', K_LEASE, unpack(ulids))
  local out, done, records, finished, results, seen = {}, {}, {}, {}, {}, {}
  for i = 1, n do
    local ulid, token, result = ulids[i], ARGV[3 * i], ARGV[3 * i + 1]
    local rec = recs[i]
    local state, attempts, rest
    if rec then state, attempts, rest = head(rec) end
    if not rec then
      out[i] = 'ENOTFOUND job ' .. ulid .. '-' .. Q .. ' not found'
    elseif state ~= 'active' or seen[ulid] or not holds(held[i], token) then
      out[i] = 'ELEASE job ' .. ulid .. '-' .. Q .. ' is ' .. (seen[ulid] and 'succeeded' or state)
        .. ' and no longer leased with this token'
    else
      seen[ulid] = true
      local started, worker = lease_run(held[i])
      record_runtime(NOW - started)
      if listened() then
        publish('succeeded', ulid, type_literal(rec), ',"attempt":' .. int(attempts)
          .. ',"state":"succeeded","runtime_ms":' .. int(NOW - started))
      end
      done[#done + 1] = ulid
      records[#records + 1] = ulid
      records[#records + 1] = '{"s":"succeeded","a":' .. int(attempts) .. ',"fa":' .. int(NOW)
        .. ',"st":' .. int(started) .. ',"wk":"' .. worker .. '",' .. string.sub(rec, rest)
      finished[#finished + 1] = NOW
      finished[#finished + 1] = ulid
      if result ~= '' then
        results[#results + 1] = ulid
        results[#results + 1] = result
      end
      out[i] = 'succeeded'
    end
  end
  local k = #done
  if k > 0 then
    redis.call('ZREM', ZSET_OF.active, unpack(done))
    redis.call('HDEL', K_LEASE, unpack(done))
    redis.call('HSET', K_JOBS, unpack(records))
    redis.call('ZADD', ZSET_OF.succeeded, unpack(finished))
    if #results > 0 then redis.call('HSET', K_RES, unpack(results)) end
    count('active', -k)
    count('succeeded', k)
    count('total:succeeded', k)
    TP_SUCCEEDED = TP_SUCCEEDED + k
    TOUCHED.succeeded = true
  end
  return out
end
