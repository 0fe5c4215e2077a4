-- Promote due jobs, recover expired leases, trim finished jobs by age.
-- Returns next_due_ms.
local function main()
  promote_due(1000)
  recover_leases(1000)
  for _, state in ipairs({'succeeded', 'dead', 'canceled'}) do TOUCHED[state] = true end
  return int(next_due())
end
