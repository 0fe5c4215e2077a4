-- wrk script for bench/run.sh: the request comes from the environment and the
-- figures go out as "<figure> <metric> <value>" lines, like broker_bench prints.
--   WRK_NAME=http_post_32 WRK_METHOD=POST WRK_BODY='{...}' wrk -s wrk_report.lua URL
local name = os.getenv("WRK_NAME") or "http"
wrk.method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
if body and #body > 0 then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read +
              summary.errors.write + summary.errors.timeout
  io.write(string.format("%s requests_per_s %.0f\n", name, summary.requests / secs))
  io.write(string.format("%s p50_us %d\n", name, latency:percentile(50)))
  io.write(string.format("%s p99_us %d\n", name, latency:percentile(99)))
  io.write(string.format("%s errors %d\n", name, bad))
end
