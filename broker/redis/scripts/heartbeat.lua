-- Extend leases. ARGV: lease_ms, then pairs of ulid, token.
-- Returns per job 0 (held), 1 (held, cancel asked) or 2 (lost).
local deadline = now_ms() + tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV, 2 do
  local ulid, token = ARGV[i], ARGV[i + 1]
  local held = redis.call('HGET', K_LEASE, ulid)
  local status = 2
  if held == token then
    status = 0
  elseif held == token .. ' cancel' then
    status = 1
  end
  if status ~= 2 then redis.call('ZADD', ZSET_OF.active, 'XX', deadline, ulid) end
  out[#out + 1] = status
end
return out
