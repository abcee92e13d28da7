-- One streamed chat completion per request; the upstream answers with its
-- configured chunks (50 x 128 bytes) and a usage chunk.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}'
