"""Engine benchmark driver (run through bench/engine.sh).

Same model file, same prompt, greedy decoding, same max_tokens, for:
  llama.cpp    llama-cpp-python's OpenAI server, called directly
  cocoon       `cocoon up`: client -> proxy -> worker -> embedded llama.cpp

Single stream: decode tokens/s = (tokens - 1) / (time of last token - time
of first token), from the arrival times of streamed chunks, median of the
runs; plus time to first token. Four concurrent streams: aggregate
completion tokens/s over the wall time. Results are printed and written to
bench/results/engine-<time>.md.
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

BIN = os.environ.get("COCOON_BIN_DIR", "target/release")
PY = os.environ.get("LLAMA_SERVER_PYTHON", "python3")
HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = "SmolLM2-135M-Instruct"
PROMPT = "Write a detailed story about a lighthouse keeper who finds a message in a bottle."


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_path():
    out = subprocess.run([f"{BIN}/cocoon", "model", "fetch"], capture_output=True, text=True, check=True).stdout
    return next(l.split()[1] for l in out.splitlines() if l.strip().startswith("file"))


def wait_models(port, limit=120):
    end = time.time() + limit
    while time.time() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v1/models")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"server on {port} did not come up")


def stream_once(port, model, max_tokens):
    """Returns (chunk arrival times, completion tokens)."""
    body = json.dumps({"model": model, "stream": True, "temperature": 0, "max_tokens": max_tokens,
                       "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": PROMPT}]})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    times, tokens, buf = [], None, b""
    while True:
        line = resp.fp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        v = json.loads(data)
        if v.get("usage"):
            tokens = v["usage"]["completion_tokens"]
        for ch in v.get("choices", []):
            if ch.get("delta", {}).get("content"):
                times.append(time.perf_counter() - t0)
    conn.close()
    return times, tokens


def single(port, model, runs, max_tokens):
    """Both servers stream one chunk per decoded token here (ASCII text), so
    the rate of content chunks is the decode rate, measured the same way
    for both (llama-cpp-python's server sends no usage when streaming)."""
    rates, ttft, toks = [], [], []
    for _ in range(runs):
        times, tokens = stream_once(port, model, max_tokens)
        if len(times) < 2:
            sys.exit(f"server on {port} streamed {len(times)} chunks")
        rates.append((len(times) - 1) / (times[-1] - times[0]))
        ttft.append(times[0] * 1000)
        toks.append(tokens if tokens is not None else len(times))
    return statistics.median(rates), statistics.median(ttft), statistics.median(toks)


def concurrent(port, model, n, max_tokens):
    results = []
    def worker():
        times, tokens = stream_once(port, model, max_tokens)
        results.append(tokens if tokens is not None else len(times))
    threads = [threading.Thread(target=worker) for _ in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(results) / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    path = model_path()
    threads = os.cpu_count()
    logs = os.path.join(HERE, "results", "logs")
    os.makedirs(logs, exist_ok=True)

    lport = free_port()
    llama = subprocess.Popen([PY, "-m", "llama_cpp.server", "--model", path, "--model_alias", MODEL, "--host", "127.0.0.1",
                              "--port", str(lport), "--n_ctx", "4096", "--n_threads", str(threads), "--n_threads_batch", str(threads)],
                             stdout=subprocess.DEVNULL, stderr=open(f"{logs}/llama-server.log", "w"))
    cport = free_port()
    cocoon = subprocess.Popen([f"{BIN}/cocoon", "up", "--model-file", path, "--model", MODEL, "--listen", f"127.0.0.1:{cport}",
                               "--proxy-listen", f"127.0.0.1:{free_port()}", "--proxy-http-listen", f"127.0.0.1:{free_port()}",
                               "--worker-http-listen", f"127.0.0.1:{free_port()}", "--max-active-requests", "4",
                               "--context-size", "4096", "--threads", str(threads)],
                              stdout=subprocess.DEVNULL, stderr=open(f"{logs}/cocoon-up.log", "w"), env={**os.environ, "RUST_LOG": "warn"})
    try:
        wait_models(lport)
        wait_models(cport)
        rows = {}
        for name, port in (("llama.cpp server", lport), ("cocoon (full path)", cport)):
            stream_once(port, MODEL, 16)  # warm-up
            rate, ttft, toks = single(port, MODEL, args.runs, args.max_tokens)
            # llama-cpp-python's server runs one request at a time; its
            # "concurrent" figure is what callers see, queued.
            agg = concurrent(port, MODEL, 4, args.max_tokens)
            rows[name] = (rate, ttft, toks, agg)
            print(f"{name}: {rate:.1f} tok/s single, TTFT {ttft:.1f} ms, {agg:.1f} tok/s at 4 streams", flush=True)
        (lr, _, _, la), (cr, _, _, ca) = rows["llama.cpp server"], rows["cocoon (full path)"]
        lines = [f"# Engine benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}", "",
                 f"{os.cpu_count()} cores; {os.path.basename(path)}; greedy; max_tokens {args.max_tokens}; median of {args.runs} runs.", "",
                 "| engine | decode tok/s (1 stream) | TTFT ms | tokens | aggregate tok/s (4 streams) |", "|---|---|---|---|---|"]
        for name, (rate, ttft, toks, agg) in rows.items():
            lines.append(f"| {name} | {rate:.1f} | {ttft:.1f} | {toks} | {agg:.1f} |")
        lines += ["", f"- single-stream ratio (cocoon / llama.cpp): **{cr / lr:.3f}** (target >= 0.95)",
                  f"- 4-stream aggregate ratio: {ca / la:.3f}", ""]
        print("\n".join(lines))
        out = os.path.join(HERE, "results", f"engine-{time.strftime('%Y%m%d-%H%M%S')}.md")
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"written to {out}")
    finally:
        for p in (llama, cocoon):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
