"""Engine benchmark driver (run through bench/engine.sh).

The same GGUF, greedy decoding, streamed through the OpenAI API, for:
  llama-server   llama.cpp's own C++ server (-np 16, 4096 tokens per slot)
  cocoon         `cocoon up`: client -> proxy -> worker -> embedded llama.cpp
and llama.cpp's llama-bench tg128 (one sequence: the machine's limit).

Both servers run at once on the same cores, and every figure is taken
round by round in turn (the order reversed each round; the idle server
waits), so that the machine's drift weighs on both alike. Twice: on fresh
processes, and again after a long warm-up of each (bursts of concurrent
requests serving --warm-tokens completion tokens), since a long-lived
server must not slow down. Figures:
  N streams   aggregate completion tokens/s of N concurrent streams of
              --max-tokens each (distinct prompts), over --runs rounds
  1 stream    also its decode rate (tokens - 1 over first-to-last token)
  TTFT cold   time to first token for a prompt sharing nothing cached
  TTFT cached the same for a repeated system prompt and a new user turn
Results are printed and written to bench/results/engine-<time>.md.
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("COCOON_BIN_DIR", "target/release")
LLAMA_BIN = os.environ.get("LLAMA_BIN_DIR", "")
HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = "SmolLM2-135M-Instruct"
SYSTEM = ("You are a helpful assistant for a travel company. Answer politely, in plain English, "
          "with short paragraphs. Recommend destinations by season, mention typical weather, "
          "local food worth trying, and one museum or landmark. Never invent prices; say that "
          "prices change and should be checked when booking. If a question is not about travel, "
          "say that you only help with travel, and suggest a travel topic instead. ") * 3
TOPICS = ["a lighthouse keeper", "a dragon who bakes bread", "a lost robot", "two rival chefs",
          "a sailor and a storm", "a clockmaker's apprentice", "a city under the sea", "a talking cat"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_models(port, proc, limit=300):
    end = time.time() + limit
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit(f"server on {port} exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v1/models")
            r = c.getresponse()
            if r.status == 200 and MODEL.encode() in r.read():
                return
        except OSError:
            pass
        time.sleep(0.3)
    sys.exit(f"server on {port} did not come up")


def stream(port, messages, max_tokens):
    """Streams one chat completion; returns (first-token time, last-token
    time, completion tokens), times in seconds from the request."""
    body = json.dumps({"model": MODEL, "stream": True, "temperature": 0, "max_tokens": max_tokens,
                       "stream_options": {"include_usage": True}, "messages": messages})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    first = last = None
    chunks, tokens = 0, None
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
                now = time.perf_counter() - t0
                first = now if first is None else first
                last = now
                chunks += 1
    conn.close()
    return first, last, tokens if tokens is not None else chunks


def story(i):
    return [{"role": "user", "content": f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]} (story {i})."}]


def stream_round(port, n, max_tokens, seed):
    """One round of n concurrent streams: (completion tokens, seconds,
    decode rate of the single stream or None)."""
    out = [None] * n
    def one(i):
        out[i] = stream(port, story(seed + i), max_tokens)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    tokens = sum(o[2] for o in out)
    rate = (out[0][2] - 1) / (out[0][1] - out[0][0]) if n == 1 and out[0][2] > 1 else None
    return tokens, took, rate


def ttft_round(port, r):
    """Time to first token in ms, cold and with the system prompt cached."""
    nonce = f"Session {time.time_ns()}-{r}. "
    cold, _, _ = stream(port, [{"role": "system", "content": nonce + SYSTEM},
                               {"role": "user", "content": "Where should I go in May?"}], 1)
    cached, _, _ = stream(port, [{"role": "system", "content": nonce + SYSTEM},
                                 {"role": "user", "content": f"And in October, trip {r}?"}], 1)
    return cold * 1000, cached * 1000


def warm_up(port, tokens, max_tokens):
    """Serves at least `tokens` completion tokens in bursts of 40 concurrent
    requests, some cancelled midway, as a busy server sees."""
    served, started = 0, time.time()
    while served < tokens:
        got = [0] * 40
        def one(i):
            try:
                if i % 10 == 9:
                    # Hang up early: the engine must free what it held.
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                    c.request("POST", "/v1/chat/completions", headers={"Content-Type": "application/json"},
                              body=json.dumps({"model": MODEL, "stream": True, "max_tokens": max_tokens,
                                               "messages": story(i)}))
                    r = c.getresponse()
                    r.fp.readline()
                    c.close()
                else:
                    got[i] = stream(port, story(served + i), max_tokens)[2]
            except (OSError, RuntimeError) as e:
                print(f"  warm-up request failed: {e}", file=sys.stderr)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        served += sum(got)
        print(f"  warm-up: {served}/{tokens} tokens ({time.time() - started:.0f} s)", flush=True)


def measure(servers, args, tag):
    """Every figure for every server, round by round in turn (the order
    reversed each round), so that the machine's drift over the run weighs
    on all servers alike. Returns {server: row}."""
    names = list(servers)
    acc = {s: {} for s in names}
    def order(r):
        return names if r % 2 == 0 else names[::-1]
    for n in (1, 4, 16):
        for r in range(args.runs):
            for s in order(r):
                tokens, took, rate = stream_round(servers[s], n, args.max_tokens, 1000 * r + hash(f"{tag}{n}") % 997)
                a = acc[s].setdefault(n, {"tokens": 0, "wall": 0.0, "rounds": [], "rates": []})
                a["tokens"] += tokens
                a["wall"] += took
                a["rounds"].append(tokens / took)
                if rate is not None:
                    a["rates"].append(rate)
    for r in range(args.runs):
        for s in order(r):
            cold, cached = ttft_round(servers[s], r)
            acc[s].setdefault("ttft_cold", []).append(cold)
            acc[s].setdefault("ttft_cached", []).append(cached)
    rows = {}
    for s in names:
        row, spread = {}, {}
        for n in (1, 4, 16):
            a = acc[s][n]
            row[n], spread[n] = a["tokens"] / a["wall"], (min(a["rounds"]), max(a["rounds"]))
            if a["rates"]:
                row["decode"] = statistics.median(a["rates"])
        for key in ("ttft_cold", "ttft_cached"):
            row[key], spread[key] = statistics.median(acc[s][key]), (min(acc[s][key]), max(acc[s][key]))
        print(f"  {s} {tag}: " + ", ".join(f"{k}={v:.1f}" for k, v in row.items()), flush=True)
        row["spread"] = spread
        rows[s] = row
    return rows


def llama_env():
    # A shared-library build keeps its libraries beside the binaries.
    return {**os.environ, "LD_LIBRARY_PATH": LLAMA_BIN}


def start_server(name, cmd, port, logs, env=None):
    log = open(os.path.join(logs, f"{name}.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    wait_models(port, proc)
    stream(port, story(0), 8)
    return proc


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def llama_bench(model, threads, logs):
    out = subprocess.run([os.path.join(LLAMA_BIN, "llama-bench"), "-m", model, "-t", str(threads), "-p", "0",
                          "-n", "128", "-r", "3", "-o", "json"], capture_output=True, text=True, check=True,
                         env=llama_env())
    with open(os.path.join(logs, "llama-bench.json"), "w") as f:
        f.write(out.stdout)
    return json.loads(out.stdout)[0]["avg_ts"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="rounds per figure [3]")
    ap.add_argument("--max-tokens", type=int, default=128, help="tokens per answer [128]")
    ap.add_argument("--warm-tokens", type=int, default=100000, help="tokens served between the fresh and the warm figures [100000]")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for both engines [all]")
    ap.add_argument("--only", choices=["llama-server", "cocoon"], help="measure one server")
    args = ap.parse_args()
    out = subprocess.run([f"{BIN}/cocoon", "model", "fetch"], capture_output=True, text=True, check=True).stdout
    model = next(l.split()[1] for l in out.splitlines() if l.strip().startswith("file"))
    logs = os.path.join(HERE, "results", "logs")
    os.makedirs(logs, exist_ok=True)
    servers, procs = {}, []
    data = tempfile.mkdtemp(prefix="cocoon-bench-")
    try:
        if args.only in (None, "llama-server"):
            port = free_port()
            procs.append(start_server("llama-server", [
                os.path.join(LLAMA_BIN, "llama-server"), "-m", model, "--alias", MODEL, "--host", "127.0.0.1",
                "--port", str(port), "-t", str(args.threads), "-np", "16", "-c", "65536"], port, logs,
                env=llama_env()))
            servers["llama-server"] = port
        if args.only in (None, "cocoon"):
            port = free_port()
            procs.append(start_server("cocoon-up", [
                f"{BIN}/cocoon", "up", "--data-dir", data, "--model-file", model, "--model", MODEL,
                "--listen", f"127.0.0.1:{port}", "--proxy-listen", f"127.0.0.1:{free_port()}",
                "--proxy-http-listen", f"127.0.0.1:{free_port()}", "--worker-http-listen", f"127.0.0.1:{free_port()}",
                "--devnet-listen", f"127.0.0.1:{free_port()}", "--threads", str(args.threads)],
                port, logs, env={**os.environ, "RUST_LOG": "warn"}))
            servers["cocoon"] = port
        print("== fresh: " + ", ".join(servers), flush=True)
        fresh = measure(servers, args, "fresh")
        for name, port in servers.items():
            print(f"== warm-up: {name}", flush=True)
            warm_up(port, args.warm_tokens, args.max_tokens)
        print("== after warm-up", flush=True)
        warm = measure(servers, args, "after warm-up")
        results = {name: (fresh[name], warm[name]) for name in servers}
    finally:
        for proc in procs:
            stop_server(proc)
        shutil.rmtree(data, ignore_errors=True)
    tg = llama_bench(model, args.threads, logs)

    def cell(row, key):
        # The figure over all rounds, and the range of single rounds.
        lo_hi = row["spread"].get(key)
        return f"{row[key]:.1f}" + (f" ({lo_hi[0]:.0f}–{lo_hi[1]:.0f})" if lo_hi and args.runs > 1 else "")

    lines = [f"# Engine benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}", "",
             f"{os.cpu_count()} cores, {args.threads} threads; {os.path.basename(model)}; greedy; "
             f"{args.max_tokens} tokens per answer; {args.runs} rounds per figure; "
             f"warm-up {args.warm_tokens} tokens; llama-bench tg128 {tg:.1f} tok/s.", "",
             "| figure | " + " | ".join(f"{s} {p}" for s in results for p in ("fresh", "warm")) + " | ratio fresh | ratio warm |",
             "|---" * (2 * len(results) + 3) + "|"]
    figures = [(1, "1 stream, tok/s"), (4, "4 streams, tok/s"), (16, "16 streams, tok/s"),
               ("decode", "1 stream decode tok/s"), ("ttft_cold", "TTFT cold, ms"), ("ttft_cached", "TTFT cached prefix, ms")]
    for key, label in figures:
        cells = [cell(results[s][i], key) for s in results for i in (0, 1)]
        ratios = []
        if len(results) == 2:
            for i in (0, 1):
                ref, ours = results["llama-server"][i][key], results["cocoon"][i][key]
                # Times: lower is better, so the ratio is ours over theirs.
                ratios.append(f"{(ours / ref if str(key).startswith('ttft') else ours / ref):.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios or ["", ""]) + " |")
    if "cocoon" in results:
        c = results["cocoon"]
        lines += ["", f"- cocoon single-stream decode / llama-bench tg128: {c[0]['decode'] / tg:.2f} fresh, {c[1]['decode'] / tg:.2f} warm",
                  f"- cocoon warm / fresh at 16 streams: {c[1][16] / c[0][16]:.2f}"]
    lines += ["- in brackets: the lowest and highest single round;",
              "- throughput ratios are cocoon / llama-server (target >= 0.95 at 1 stream, >= 1.0 at 4 and 16);",
              "  TTFT ratios are cocoon / llama-server (lower is better; target <= 1.2 with a cached prefix)", ""]
    print("\n".join(lines))
    path = os.path.join(HERE, "results", f"engine-{time.strftime('%Y%m%d-%H%M%S')}.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
