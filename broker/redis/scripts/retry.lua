-- Put a dead, failed or canceled job back to waiting with a fresh set of attempts;
-- its error history stays (retry_job, prelude.lua).
-- ARGV: ulid, then '1' and a payload to store in place of the job's, or nothing.
local function main()
  local ulid = ARGV[1]
  local err = retry_job(ulid, ARGV[2] == '1' and ARGV[3] or nil)
  if err then return err end
  return 'waiting'
end
