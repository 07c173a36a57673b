-- wrk reports through this script: JSON to $BENCH_WRK_OUT; $BENCH_POST_BODY makes it a POST.
wrk.headers["X-Forwarded-Proto"] = "https"
local body = os.getenv("BENCH_POST_BODY")
if body then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Token " .. os.getenv("BENCH_TOKEN")
end
done = function(summary, latency, requests)
  local e = summary.errors
  local out = io.open(os.getenv("BENCH_WRK_OUT"), "w")
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, "errors_read": %d, '
    .. '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
  out:close()
end
