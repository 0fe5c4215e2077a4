-- Promote due jobs, recover expired leases, trim finished jobs by age.
-- Returns next_due_ms.
local now = now_ms()
local conf = hgetall(K_CONF)
promote_due(now, 1000)
recover_leases(now, 1000, conf)
for _, state in ipairs({'succeeded', 'dead', 'canceled'}) do trim_finished(state, now, conf) end
return int(next_due())
