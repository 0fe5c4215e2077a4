-- Enqueue a batch into one queue, all or nothing.
-- ARGV: n, then per job: ulid, options, body, as enqueue_one (prelude.lua) takes them.
-- Redis copies every ARGV into Lua before the script runs, so fewer is faster.
-- Returns per job 'w' (waiting), 's' (scheduled), 'm' (idempotency key used with
-- another request hash: nothing enqueued), or the first job's id (duplicate).
local function main()
  local n = tonumber(ARGV[1])
  local full = refuse_if_full(n)
  if full then return full end
  local acc, out = enqueue_begin(), {}
  for i = 0, n - 1 do
    local b = 2 + i * 3
    out[i + 1] = enqueue_one(acc, ARGV[b], ARGV[b + 1], ARGV[b + 2])
  end
  enqueue_flush(acc)
  return out
end
