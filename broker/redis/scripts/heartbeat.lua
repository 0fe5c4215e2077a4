-- Extend leases. ARGV: lease_ms, then pairs of ulid, token.
-- Returns per job 0 (held), 1 (held, cancel asked) or 2 (lost).
local function main()
  local deadline = NOW + tonumber(ARGV[1])
  local ulids = {}
  for i = 2, #ARGV, 2 do ulids[#ulids + 1] = ARGV[i] end
  local held = redis.call('HMGET', K_LEASE, unpack(ulids))
  local out, extend = {}, {}
  for i, ulid in ipairs(ulids) do
    local token = ARGV[2 * i + 1]
    if not holds(held[i], token) then
      out[i] = 2
    elseif cancel_asked(held[i]) then
      out[i] = 1
    else
      out[i] = 0
    end
    if out[i] ~= 2 then
      extend[#extend + 1] = deadline
      extend[#extend + 1] = ulid
    end
  end
  if #extend > 0 then redis.call('ZADD', ZSET_OF.active, 'XX', unpack(extend)) end
  return out
end
