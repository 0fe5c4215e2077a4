-- ---- epilogue: appended to every script by scripts.c ----
local result = main()
for state in pairs(TOUCHED) do trim_finished(state) end
for field, delta in pairs(PENDING) do
  if delta ~= 0 then redis.call('HINCRBY', K_COUNTS, field, delta) end
end
return result
