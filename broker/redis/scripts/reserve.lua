-- Lease up to `max` waiting jobs, highest priority first, FIFO within one.
-- ARGV: max, lease_ms, token, worker
-- Returns {next_due_ms, lease_deadline_ms, now_ms, {ulid, record, ulid, record, ...}}
-- The common case is a string splice of the record's head: no JSON is decoded.
local function main()
  promote_due(1000)
  recover_leases(1000)
  local max, token, worker = tonumber(ARGV[1]), ARGV[3], ARGV[4]
  local deadline = NOW + tonumber(ARGV[2])
  local out, records, leases, active, seen = {}, {}, {}, {}, {}
  local taken = 0
  -- Canceled and deleted jobs leave their id in the list; skipping them is bounded.
  local budget = max * 4 + 100
  while conf().paused ~= '1' and taken < max and budget > 0 do
    local top = redis.call('ZREVRANGE', K_PRIOS, 0, 0)[1]
    if not top then break end
    local list = P .. 'w:' .. top
    local want = math.min(max - taken, budget)
    local ids = redis.call('LPOP', list, want)
    if not ids or #ids < want or redis.call('LLEN', list) == 0 then
      redis.call('ZREM', K_PRIOS, top)
    end
    if ids then
      budget = budget - #ids
      redis.call('HINCRBY', K_WPOP, top, #ids)
      local recs = redis.call('HMGET', K_JOBS, unpack(ids))
      for i, ulid in ipairs(ids) do
        -- An id can sit in a list twice (see docs/architecture.md); take it once.
        local rec = recs[i]
        local state, attempts, rest
        if rec and not seen[ulid] then
          seen[ulid] = true
          state, attempts, rest = head(rec)
        end
        -- Anything not waiting is a tombstone: canceled, or moved on since it was pushed.
        if state == 'waiting' then
          local nl = string.find(rec, '\n', rest, true)
          local ex = string.find(rec, '"ex":', rest, true) -- keys cannot hide in strings
          local expired = false
          if ex and ex < nl then
            local meta, payload = decode(rec)
            if meta.ex <= NOW then
              add_error(meta, 'expired: not started by its expires_at')
              finish(ulid, meta, payload, 'waiting', 'dead')
              publish_meta('dead', ulid, meta, 'expired: not started by its expires_at')
              expired = true
            end
          end
          if not expired then
            rec = '{"s":"active","a":' .. int(attempts + 1) .. ',' .. string.sub(rec, rest)
            records[#records + 1] = ulid
            records[#records + 1] = rec
            leases[#leases + 1] = ulid
            leases[#leases + 1] = lease_value(token, NOW, worker)
            active[#active + 1] = deadline
            active[#active + 1] = ulid
            out[#out + 1] = ulid
            out[#out + 1] = rec
            taken = taken + 1
            if listened() then
              publish('started', ulid, type_literal(rec),
                ',"attempt":' .. int(attempts + 1) .. ',"state":"active"')
            end
          end
        end
      end
    end
  end
  if taken > 0 then
    redis.call('HSET', K_JOBS, unpack(records))
    redis.call('HSET', K_LEASE, unpack(leases))
    redis.call('ZADD', ZSET_OF.active, unpack(active))
    count('waiting', -taken)
    count('active', taken)
    -- Pass the wake-up on: another idle worker should come for the rest.
    if redis.call('ZCARD', K_PRIOS) > 0 then notify() end
  end
  return {int(next_due()), int(deadline), int(NOW), out}
end
