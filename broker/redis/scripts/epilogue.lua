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
if TP_SUCCEEDED + TP_FAILED > 0 then
  local sec = math.floor(NOW / 1000)
  local key, field = P .. 'tp:' .. int(math.floor(sec / 60)), int(sec % 60)
  local created = false
  if TP_SUCCEEDED > 0 then
    created = redis.call('HINCRBY', key, 's' .. field, TP_SUCCEEDED) == TP_SUCCEEDED
  end
  if TP_FAILED > 0 then
    created = redis.call('HINCRBY', key, 'f' .. field, TP_FAILED) == TP_FAILED or created
  end
  if created then redis.call('EXPIRE', key, TP_TTL_S) end
end
return result
