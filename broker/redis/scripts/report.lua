-- Progress or a log line from the worker holding a job.
-- ARGV: ulid, token, percent ('' for a log line), message, level, line
-- Progress is "<percent>|<message>" in K_PROG; logs are JSON lines [at, level, text]
-- in K_LOGS, the oldest dropped past D.log_max bytes.
local function main()
  local ulid, token = ARGV[1], ARGV[2]
  if not holds(redis.call('HGET', K_LEASE, ulid), token) then
    if redis.call('HEXISTS', K_JOBS, ulid) == 0 then
      return fail_with('ENOTFOUND', 'job ' .. ulid .. '-' .. Q .. ' not found')
    end
    return fail_with('ELEASE', 'job ' .. ulid .. '-' .. Q .. ' is no longer leased with this token')
  end
  if ARGV[3] ~= '' then
    redis.call('HSET', K_PROG, ulid, ARGV[3] .. '|' .. ARGV[4])
    local extra = ',"progress":' .. ARGV[3]
    if ARGV[4] ~= '' then extra = extra .. ',"message":' .. cjson.encode(ARGV[4]) end
    if listened() then
      publish('progress', ulid, type_literal(redis.call('HGET', K_JOBS, ulid) or ''), extra)
    end
    return 'ok'
  end
  local logs = (redis.call('HGET', K_LOGS, ulid) or '')
    .. cjson.encode({NOW, tonumber(ARGV[5]), ARGV[6]}) .. '\n'
  if #logs > D.log_max then
    local cut = string.find(logs, '\n', #logs - D.log_max, true)
    logs = string.sub(logs, cut + 1)
  end
  redis.call('HSET', K_LOGS, ulid, logs)
  return 'ok'
end
