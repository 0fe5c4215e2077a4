-- Remove a job that is not active (delete_job, prelude.lua). ARGV: ulid
local function main()
  local err = delete_job(ARGV[1])
  if err then return err end
  return 'deleted'
end
