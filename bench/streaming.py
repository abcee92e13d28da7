"""Streaming benchmark driver (run through bench/run.sh).

Starts the deterministic test upstream and a cocoon proxy, worker and client
as separate release processes on loopback, then measures with wrk, in the
same run, requests against the upstream directly and through the client:

  paced    the upstream waits 10 ms between chunks, like a real engine:
           throughput ratio, p50 added latency, time to first byte.
  unpaced  the upstream answers at once: capacity. requests/s, p50/p99 and
           CPU-seconds per request of every process.

Each regime is measured twice through Cocoon, with payments on (every
request reserved and charged in the durable ledger, vouchers signed and
checked) and off, to report what metering costs; and with receipts on and
off (twice, on-off-off-on).

  fixed rate  receipts on and off (on-off-off-on) at one offered load,
           600 requests/s, so CPU per request is compared at equal load.

Requests go sealed end to end (the client's default). With --e2e-only it
compares instead requests sealed to the worker with the same requests in
the clear (sealed-clear-clear-sealed), paced and at the fixed rate, and
writes bench/results/e2e-<time>.md.

30 concurrent streams of 50 chunks x 128 bytes plus a usage chunk. Results
are printed and written to bench/results/streaming-<time>.md.
"""
import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time

BIN = os.environ.get("COCOON_BIN_DIR", "target/release")
HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=15):
    end = time.time() + limit
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"port {port} did not open")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def start(args, log):
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "w"), env={**os.environ, "RUST_LOG": "warn"})


class Stack:
    """Upstream + proxy + worker + client, each its own process."""

    def __init__(self, delay_ms, logdir, payments=True, window_ms=0, receipts=True):
        self.up_port, pp, ph, wh, self.api_port = (free_port() for _ in range(5))
        self.procs = {}
        self.proxy_http = ph
        self.worker_http = wh
        # Every hop is mutual RA-TLS with the sim TEE, as in `cocoon up`.
        tee_dir = os.path.join(logdir, "tee")
        os.makedirs(tee_dir, exist_ok=True)
        policy = os.path.join(tee_dir, "policy.toml")
        subprocess.run([f"{BIN}/cocoon", "attest", "dev-policy", "--data-dir", tee_dir, "--out", policy], check=True)
        tee = ["--dev", "--tee", "sim", "--peer-policy", policy, "--data-dir", tee_dir]
        # A fresh ledger per stack; a deposit no run can spend.
        ledger = os.path.join(tee_dir, "ledger.redb")
        if os.path.exists(ledger):
            os.remove(ledger)
        pay_proxy = (["--payments", "on", "--dev-deposits", "--checkpoint-window-ms", str(window_ms)] if payments
                     else ["--payments", "off"])
        pay_client = ["--dev-deposit", str(10**18)] if payments else []
        # Receipts off (development only): the worker signs none, the client
        # hashes and checks none; what receipts cost is the difference.
        no_receipts = [] if receipts else ["--dev-no-receipts"]
        self.procs["upstream"] = start([f"{BIN}/cocoon-test-upstream", "--listen", f"127.0.0.1:{self.up_port}", "--chunks", "50",
                                        "--chunk-size", "128", "--delay-ms", str(delay_ms)], f"{logdir}/upstream.log")
        wait_port(self.up_port)
        self.procs["proxy"] = start([f"{BIN}/cocoon", "proxy", "--listen", f"127.0.0.1:{pp}", "--http-listen", f"127.0.0.1:{ph}",
                                     *tee, *pay_proxy], f"{logdir}/proxy.log")
        wait_port(pp)
        self.procs["worker"] = start([f"{BIN}/cocoon", "worker", "--proxy", f"127.0.0.1:{pp}", "--model", "bench", "--upstream",
                                      f"http://127.0.0.1:{self.up_port}/v1", "--max-active-requests", "256", "--http-listen",
                                      f"127.0.0.1:{wh}", *tee, *no_receipts, "--name", "bench-worker"], f"{logdir}/worker.log")
        self.procs["client"] = start([f"{BIN}/cocoon", "client", "--listen", f"127.0.0.1:{self.api_port}", "--proxy", f"127.0.0.1:{pp}",
                                      *tee, *pay_client, *no_receipts], f"{logdir}/client.log")
        wait_port(self.api_port)
        end = time.time() + 15
        while time.time() < end:
            c = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=2)
            c.request("GET", "/v1/models")
            body = json.loads(c.getresponse().read())
            if any(m["id"] == "bench" for m in body.get("data", [])):
                return
            time.sleep(0.05)
        sys.exit("the worker never registered")

    def ledger(self):
        """(commits, operations) of the proxy's ledger so far; zeros when off."""
        c = http.client.HTTPConnection("127.0.0.1", self.proxy_http, timeout=5)
        c.request("GET", "/jsonstats")
        ledger = json.loads(c.getresponse().read()).get("detail", {}).get("ledger") or {}
        return int(ledger.get("commits", 0)), int(ledger.get("ops", 0))

    def signatures(self):
        """(receipts signed, signatures) by the worker so far."""
        c = http.client.HTTPConnection("127.0.0.1", self.worker_http, timeout=5)
        c.request("GET", "/jsonstats")
        detail = json.loads(c.getresponse().read()).get("detail", {})
        return int(detail.get("receipts_signed", 0)), int(detail.get("receipt_signatures", 0))

    def cpu(self):
        return {name: cpu_seconds(p.pid) for name, p in self.procs.items()}

    def stop(self):
        for p in self.procs.values():
            p.kill()
            p.wait()


# The checkpoint window of the third payments-on run (--checkpoint-window-ms).
WINDOW_MS = 50
# Offered load of the receipts comparison: below what either side sustains.
FIXED_RATE = 600

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * UNITS[m.group(2)]


def wrk(port, duration, connections=30, rate=None, e2e=""):
    """A closed loop of `connections`, or with `rate` requests/s offered at a
    fixed rate; `e2e` sets the request's X-Cocoon-E2E."""
    env = {**os.environ, "COCOON_BENCH_RATE": str(rate / 2) if rate else "", "COCOON_BENCH_E2E": e2e}
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", f"{HERE}/post.lua",
                          f"http://127.0.0.1:{port}/v1/chat/completions"], capture_output=True, text=True, check=True,
                         env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {q: parse_ms(re.search(rf"^\s+{q}%\s+(\S+)", out, re.M).group(1)) for q in ("50", "99")}
    mean = parse_ms(re.search(r"^\s+Latency\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if errors or socket_errors:
        print(out)
        sys.exit("wrk saw errors; see above")
    # wrk's Requests/sec counts only requests completed inside the run, so
    # with long requests it moves in steps of one request per connection
    # (30 x 550 ms streams in 15 s: 27 or 26 each, a 3.7 % jump at 555 ms).
    # A closed loop's steady rate is connections / mean latency (Little's
    # law); ratios use that.
    steady = connections * 1000 / mean if not rate else rps
    return {"rps": rps, "steady": steady, "requests": total, "mean": mean, "p50": lat["50"], "p99": lat["99"]}


def ttfb(port, n=60, e2e=""):
    """Sequential requests; milliseconds to the first body byte, median."""
    body = re.search(r"^wrk\.body = '(.*)'$", open(f"{HERE}/post.lua").read(), re.M).group(1)
    samples = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(n):
        t0 = time.perf_counter()
        headers = {"Content-Type": "application/json", **({"X-Cocoon-E2E": e2e} if e2e else {})}
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        r = conn.getresponse()
        r.read(1)
        samples.append((time.perf_counter() - t0) * 1000)
        r.read()
    conn.close()
    return statistics.median(samples)


def measure(delay_ms, duration, logdir, payments=True, direct=True, window_ms=0, receipts=True, rate=None, e2e=""):
    stack = Stack(delay_ms, logdir, payments, window_ms, receipts)
    try:
        wrk(stack.up_port, 2)  # warm-up both paths
        wrk(stack.api_port, 2, e2e=e2e)
        res = {}
        paths = (("direct", stack.up_port), ("cocoon", stack.api_port)) if direct else (("cocoon", stack.api_port),)
        for name, port in paths:
            before, ledger_before, signed_before = stack.cpu(), stack.ledger(), stack.signatures()
            r = wrk(port, duration, connections=60, rate=rate, e2e=e2e) if rate else wrk(port, duration, e2e=e2e)
            after, ledger_after, signed_after = stack.cpu(), stack.ledger(), stack.signatures()
            signatures = signed_after[1] - signed_before[1]
            r["receipts_per_signature"] = (signed_after[0] - signed_before[0]) / signatures if signatures else 0.0
            n = max(r["requests"], 1)
            r["cpu_ms_per_req"] = {k: (after[k] - before[k]) * 1000 / n for k in after}
            r["commits_per_req"] = (ledger_after[0] - ledger_before[0]) / n
            r["ops_per_req"] = (ledger_after[1] - ledger_before[1]) / n
            r["ttfb_ms"] = ttfb(port, e2e=e2e)
            res[name] = r
        return res
    finally:
        stack.stop()


def e2e_comparison(duration, logdir):
    """Requests sealed end to end against the same in the clear, in the
    order sealed-clear-clear-sealed (linear drift cancels): paced, in a
    closed loop, and unpaced at one fixed offered load."""
    lines = [f"# End-to-end sealing, {time.strftime('%Y-%m-%d %H:%M:%S')}", "",
             f"{os.cpu_count()} cores; 50 chunks x 128 B + usage chunk; wrk {duration}s per run; "
             "sealed (X-Cocoon-E2E: required) against clear (off), in the order sealed-clear-clear-sealed.", ""]
    for regime, delay, rate in (("paced (10 ms between chunks), closed loop of 30", 10, None),
                                (f"fixed rate ({FIXED_RATE} req/s offered, unpaced upstream, 60 connections)", 0, FIXED_RATE)):
        print(f"==> e2e: {regime}", flush=True)
        runs = [(mode, measure(delay, duration, logdir, direct=False, rate=rate, e2e=mode)["cocoon"])
                for mode in ("required", "off", "off", "required")]
        lines += [f"## {regime}", "", "| requests | req/s (steady) | p50 ms | p99 ms | TTFB p50 ms | CPU ms/req: client | proxy | worker |",
                  "|---|---|---|---|---|---|---|---|"]
        for mode, x in runs:
            cpu = x["cpu_ms_per_req"]
            lines.append(f"| {'sealed' if mode == 'required' else 'clear'} | {x['steady']:.1f} | {x['p50']:.2f} | {x['p99']:.2f} | "
                         f"{x['ttfb_ms']:.2f} | {cpu['client']:.3f} | {cpu['proxy']:.3f} | {cpu['worker']:.3f} |")
        sealed, clear = [x for m, x in runs if m == "required"], [x for m, x in runs if m == "off"]

        def hops(x, *names):
            return sum(x["cpu_ms_per_req"][k] for k in (names or ("client", "proxy", "worker")))
        pairs = [(hops(s) - hops(c)) * 1000 for s, c in zip(sealed, clear)]
        per_hop = {k: (sum(hops(s, k) for s in sealed) - sum(hops(c, k) for c in clear)) * 500 for k in ("client", "proxy", "worker")}
        mean = lambda xs, k: sum(x[k] for x in xs) / len(xs)
        lines += ["", f"- CPU of the three hops, sealed minus clear: **{statistics.mean(pairs):+.1f} µs** per request "
                  f"(target ≤ 100 µs; the two pairs {pairs[0]:+.1f} and {pairs[1]:+.1f}; client {per_hop['client']:+.1f}, "
                  f"proxy {per_hop['proxy']:+.1f}, worker {per_hop['worker']:+.1f})",
                  f"- throughput ratio (sealed / clear): **{mean(sealed, 'steady') / mean(clear, 'steady'):.3f}**; "
                  f"p50 added {mean(sealed, 'p50') - mean(clear, 'p50'):.2f} ms; TTFB added {mean(sealed, 'ttfb_ms') - mean(clear, 'ttfb_ms'):.2f} ms", ""]
        print("\n".join(lines[-9:]), flush=True)
    path = os.path.join(HERE, "results", f"e2e-{time.strftime('%Y%m%d-%H%M%S')}.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"\nwritten to {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=15, help="seconds per wrk run (default 15)")
    ap.add_argument("--e2e-only", action="store_true", help="only compare requests sealed end to end with the same in the clear")
    args = ap.parse_args()
    logdir = os.path.join(HERE, "results", "logs")
    os.makedirs(logdir, exist_ok=True)
    if args.e2e_only:
        return e2e_comparison(args.duration, logdir)
    lines = [f"# Streaming benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}", "",
             f"{os.cpu_count()} cores; 30 connections; 50 chunks x 128 B + usage chunk; wrk {args.duration}s per run.", ""]
    for regime, delay in (("paced (10 ms between chunks)", 10), ("unpaced", 0)):
        print(f"==> {regime}", flush=True)
        r = measure(delay, args.duration, logdir, payments=True)
        unsigned = measure(delay, args.duration, logdir, direct=False, receipts=False)["cocoon"]
        free = measure(delay, args.duration, logdir, payments=False, direct=False)["cocoon"]
        windowed = measure(delay, args.duration, logdir, direct=False, window_ms=WINDOW_MS)["cocoon"]
        # Receipts on and off once more, in the reverse order: whole-process
        # CPU per request drifts on a shared machine by more than receipts
        # cost, and drift that is linear in time cancels out of the mean of
        # on-off-...-off-on.
        unsigned_again = measure(delay, args.duration, logdir, direct=False, receipts=False)["cocoon"]
        again = measure(delay, args.duration, logdir, direct=False)["cocoon"]
        d, c = r["direct"], r["cocoon"]
        lines += [f"## {regime}", "",
                  "| path | req/s (steady) | req/s (wrk) | p50 ms | p99 ms | TTFB p50 ms | CPU ms/req: upstream | client | proxy | worker |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        rows = (("direct", d), ("through cocoon, payments off", free), ("through cocoon, payments on", c),
                ("payments on, receipts off", unsigned), (f"payments on, {WINDOW_MS} ms checkpoint window", windowed),
                ("payments on, receipts off (again)", unsigned_again), ("payments on (again)", again))
        for name, x in rows:
            cpu = x["cpu_ms_per_req"]
            hops = "| - | - | - |" if name == "direct" else f"| {cpu['client']:.3f} | {cpu['proxy']:.3f} | {cpu['worker']:.3f} |"
            lines.append(f"| {name} | {x['steady']:.1f} | {x['rps']:.1f} | {x['p50']:.2f} | {x['p99']:.2f} | {x['ttfb_ms']:.2f} | {cpu['upstream']:.3f} {hops}")
        def hops(x, *names):
            return sum(x["cpu_ms_per_req"][k] for k in (names or ("client", "proxy", "worker")))
        hop_cpu, unsigned_cpu = hops(c), hops(unsigned)
        receipt_us = [(hops(c) - hops(unsigned)) * 1000, (hops(again) - hops(unsigned_again)) * 1000]
        per_hop = {k: (hops(c, k) + hops(again, k) - hops(unsigned, k) - hops(unsigned_again, k)) * 500
                   for k in ("worker", "client", "proxy")}
        lines += ["", f"- throughput ratio (cocoon / direct): **{c['steady'] / d['steady']:.3f}**",
                  f"- p50 added latency: **{c['p50'] - d['p50']:.2f} ms**; p99 added: {c['p99'] - d['p99']:.2f} ms",
                  f"- TTFB added: {c['ttfb_ms'] - d['ttfb_ms']:.2f} ms",
                  f"- CPU of the three cocoon hops per request: **{hop_cpu:.3f} ms**",
                  f"- metering (payments on / off): throughput ratio **{c['steady'] / free['steady']:.3f}**, "
                  f"p50 added {c['p50'] - free['p50']:.2f} ms, TTFB added {c['ttfb_ms'] - free['ttfb_ms']:.2f} ms, "
                  f"proxy CPU {c['cpu_ms_per_req']['proxy']:.3f} vs {free['cpu_ms_per_req']['proxy']:.3f} ms/req",
                  f"- ledger per request: {c['ops_per_req']:.1f} operations, {c['commits_per_req']:.2f} commits",
                  f"- receipts (payments on, receipts on / off, twice in the order on-off-off-on): CPU of the three hops "
                  f"**{statistics.mean(receipt_us):+.1f} µs** per request (target ≤ 50 µs; the two pairs "
                  f"{receipt_us[0]:+.1f} and {receipt_us[1]:+.1f}; worker {per_hop['worker']:+.1f}, client {per_hop['client']:+.1f}, "
                  f"proxy {per_hop['proxy']:+.1f}), throughput ratio {(c['steady'] + again['steady']) / (unsigned['steady'] + unsigned_again['steady']):.3f}, "
                  f"p50 added {(c['p50'] + again['p50'] - unsigned['p50'] - unsigned_again['p50']) / 2:.2f} ms, "
                  f"{(c['receipts_per_signature'] + again['receipts_per_signature']) / 2:.1f} receipts per signature",
                  f"- with a {WINDOW_MS} ms checkpoint window: throughput ratio to payments off **{windowed['steady'] / free['steady']:.3f}**, "
                  f"p50 added {windowed['p50'] - free['p50']:.2f} ms, proxy CPU {windowed['cpu_ms_per_req']['proxy']:.3f} ms/req, "
                  f"ledger {windowed['ops_per_req']:.1f} operations and {windowed['commits_per_req']:.2f} commits per request", ""]
        print("\n".join(lines[-21:]), flush=True)
    # Receipts at one fixed load: closed loops run at whatever rate latency
    # allows, and CPU per request moves with the rate (fewer requests share
    # each wake-up, each commit), so the unpaced difference above mixes what
    # receipts cost with what their latency does to the load.
    print(f"==> fixed rate, {FIXED_RATE} req/s", flush=True)
    on = [measure(0, args.duration, logdir, direct=False, rate=FIXED_RATE)["cocoon"]]
    off = [measure(0, args.duration, logdir, direct=False, receipts=False, rate=FIXED_RATE)["cocoon"] for _ in range(2)]
    on.append(measure(0, args.duration, logdir, direct=False, rate=FIXED_RATE)["cocoon"])
    lines += [f"## fixed rate ({FIXED_RATE} req/s offered, unpaced upstream, 60 connections): receipts", "",
              "| path | req/s | p50 ms | p99 ms | CPU ms/req: upstream | client | proxy | worker |", "|---|---|---|---|---|---|---|---|"]
    for name, x in (("receipts on", on[0]), ("receipts off", off[0]), ("receipts off (again)", off[1]), ("receipts on (again)", on[1])):
        cpu = x["cpu_ms_per_req"]
        lines.append(f"| {name} | {x['rps']:.1f} | {x['p50']:.2f} | {x['p99']:.2f} | {cpu['upstream']:.3f} | {cpu['client']:.3f} | {cpu['proxy']:.3f} | {cpu['worker']:.3f} |")

    def hop(x, k):
        return x["cpu_ms_per_req"][k] * 1000
    pairs = [sum(hop(a, k) - hop(b, k) for k in ("client", "proxy", "worker")) for a, b in ((on[0], off[0]), (on[1], off[1]))]
    per_hop = {k: (hop(on[0], k) + hop(on[1], k) - hop(off[0], k) - hop(off[1], k)) / 2 for k in ("worker", "client", "proxy")}
    lines += ["", f"- receipts at {FIXED_RATE} req/s (on-off-off-on): CPU of the three hops **{statistics.mean(pairs):+.1f} µs** per request "
              f"(target ≤ 50 µs; the two pairs {pairs[0]:+.1f} and {pairs[1]:+.1f}; worker {per_hop['worker']:+.1f}, "
              f"client {per_hop['client']:+.1f}, proxy {per_hop['proxy']:+.1f}), "
              f"p50 added {(on[0]['p50'] + on[1]['p50'] - off[0]['p50'] - off[1]['p50']) / 2:.2f} ms, "
              f"{(on[0]['receipts_per_signature'] + on[1]['receipts_per_signature']) / 2:.1f} receipts per signature", ""]
    print("\n".join(lines[-10:]), flush=True)
    path = os.path.join(HERE, "results", f"streaming-{time.strftime('%Y%m%d-%H%M%S')}.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
