-- ---- epilogue: appended to every script by scripts.c ----
local result = main()
for state in pairs(TOUCHED) do trim_finished(state) end
for field, delta in pairs(PENDING) do
  if delta ~= 0 then redis.call('HINCRBY', K_COUNTS, field, delta) end
end
local timed = false
for bucket, n in pairs(RT) do
  redis.call('HINCRBY', K_RT, int(bucket), n)
  timed = true
end
if timed then redis.call('HINCRBY', K_RT, 'sum', int(RT_SUM)) end
return result
