-- One streamed chat completion per request; the upstream answers with its
-- configured chunks (50 x 128 bytes) and a usage chunk.
--
-- With COCOON_BENCH_RATE set (requests per second per wrk thread), requests
-- go out at that fixed rate whatever the answers' latency (as long as enough
-- connections are free), not each as soon as the last one ended: CPU per
-- request compared at the same load.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}'

-- COCOON_BENCH_E2E: "off" sends requests to the proxy in the clear,
-- "required" sealed end to end to the workers (the client's default seals
-- whenever it can).
local e2e = os.getenv("COCOON_BENCH_E2E") or ""
if e2e ~= "" then
  wrk.headers["X-Cocoon-E2E"] = e2e
end

local rate = tonumber(os.getenv("COCOON_BENCH_RATE") or "")
if rate and rate > 0 then
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock, bench_timespec *ts);
  ]]
  local ts = ffi.new("bench_timespec")
  local CLOCK_MONOTONIC = 1
  local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local period, due = 1000 / rate, nil
  -- Called as each answer ends: the next request takes the next free slot
  -- of this thread's schedule.
  function delay()
    local t = now_ms()
    due = (due or t) + period
    return math.max(0, due - t)
  end
end
