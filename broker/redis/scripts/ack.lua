-- Finish an active job as succeeded. ARGV: ulid, token, result ('' for none)
local ulid, token, result = ARGV[1], ARGV[2], ARGV[3]
local meta, payload = load_leased(ulid, token)
if not meta then return payload end
local now = now_ms()
redis.call('ZREM', ZSET_OF.active, ulid)
redis.call('HDEL', K_LEASE, ulid)
if result ~= '' then redis.call('HSET', K_RES, ulid, result) end
count('total:succeeded', 1)
finish(ulid, meta, payload, 'active', 'succeeded', now, hgetall(K_CONF))
return 'succeeded'
