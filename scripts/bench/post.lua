-- wrk script: POST the body in $BENCH_BODY as many distinct clients (X-Forwarded-For from a
-- trusted proxy), $BENCH_CLIENTS of them, round robin; prints latency percentiles at the end.
local body_file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local body = body_file:read("*a")
body_file:close()
local clients = tonumber(os.getenv("BENCH_CLIENTS") or "10000")
local n = 0
-- Optional pacing: $BENCH_RATE requests/s in total over $BENCH_CONNECTIONS connections. wrk waits
-- before each request, so this is closed-loop pacing, fine below saturation (where we use it).
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local connections = tonumber(os.getenv("BENCH_CONNECTIONS") or "1")
if rate > 0 then
  function delay()
    return connections * 1000 / rate
  end
end

wrk.method = "POST"
wrk.body = body
-- The route and Content-Type of the body's format (the native batch by default).
local route = os.getenv("BENCH_PATH") or "/api/client-telemetry"
wrk.path = route
local content_type = os.getenv("BENCH_CONTENT_TYPE") or "text/plain;charset=UTF-8"
-- a browser's, as examples/loadgen.rs sends it (the gateway logs it, truncated)
local user_agent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

-- Optional: $BENCH_IDS=1 names a session per client and a new batch id per request in the query
-- string, as the browser client does (per-session limits and de-duplication).
local ids = os.getenv("BENCH_IDS") == "1"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function request()
  n = n + 1
  local c = n % clients
  local ip = string.format("10.%d.%d.%d", math.floor(c / 65536) % 256, math.floor(c / 256) % 256, c % 256)
  local path = route
  if ids then
    path = string.format("/api/client-telemetry?session=s-%d&batch=%d-%d-%d", c, os.time(), tid, n)
  end
  -- wrk.format takes these headers instead of wrk.headers: the Content-Type goes here too.
  return wrk.format(nil, path, { ["X-Forwarded-For"] = ip, ["Content-Type"] = content_type, ["User-Agent"] = user_agent }, nil)
end

function done(summary, latency, requests)
  local statuses = {}
  io.write(string.format("BENCH requests=%d duration_us=%d errors_status=%d errors_connect=%d errors_timeout=%d p50_us=%d p99_us=%d p999_us=%d\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
