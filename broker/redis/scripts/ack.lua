-- Finish active jobs as succeeded, in one step for the whole batch.
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
    local id = ulid .. '-' .. Q
    if not recs[i] then
      out[i] = 'ENOTFOUND job ' .. id .. ' not found'
    else
      local meta, payload = decode(recs[i])
      if meta.s ~= 'active' or seen[ulid] or not holds(held[i], token) then
        out[i] = 'ELEASE job ' .. id .. ' is ' .. (seen[ulid] and 'succeeded' or meta.s)
          .. ' and no longer leased with this token'
      else
        seen[ulid] = true
        meta.s = 'succeeded'
        meta.fa = NOW
        meta.wk = nil
        done[#done + 1] = ulid
        records[#records + 1] = ulid
        records[#records + 1] = encode(meta, payload)
        finished[#finished + 1] = NOW
        finished[#finished + 1] = ulid
        if result ~= '' then
          results[#results + 1] = ulid
          results[#results + 1] = result
        end
        out[i] = 'succeeded'
      end
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
    TOUCHED.succeeded = true
  end
  return out
end
