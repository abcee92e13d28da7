"""Settlement latency benchmark (run through bench/settlement.sh).

Starts `cocoon up` (its devnet at the default block interval, 300 ms) in
front of the deterministic test upstream and measures, several times each:

  deposit   from `cocoon client deposit` starting to the proxy serving
            against the new money (the command returns once the proxy
            counts it; a request is then served);
  withdraw  from `cocoon worker withdraw` starting to the worker's wallet
            credited, as the devnet's API shows it.

Each is reported in seconds and in blocks (the devnet's block number before
and after), beside the chain's own floor: blocks x the block interval. The
ratio of the two is what the nodes add on top of the chain (polling,
confirmation reads). Results are printed and written to
bench/results/settlement-<time>.md.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = os.environ.get("COCOON_BIN_DIR", "target/release")
HERE = os.path.dirname(os.path.abspath(__file__))
INTERVAL_S = 0.3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def wait_ok(url, limit=180):
    end = time.time() + limit
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer within {limit} s")


def cocoon(*args):
    out = subprocess.run([f"{BIN}/cocoon", *args], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        sys.exit(f"cocoon {' '.join(args)}: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Up:
    def __init__(self, workdir):
        self.up_port, self.api, self.devnet, wh = (free_port() for _ in range(4))
        self.worker_http = wh
        self.chain = f"http://127.0.0.1:{self.devnet}/api/v2"
        self.procs = [
            subprocess.Popen(
                [f"{BIN}/cocoon-test-upstream", "--listen", f"127.0.0.1:{self.up_port}", "--chunks", "8", "--chunk-size", "16"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        ]
        args = [
            f"{BIN}/cocoon", "up", "--data-dir", workdir, "--upstream", f"http://127.0.0.1:{self.up_port}/v1",
            "--model", "bench-model", "--listen", f"127.0.0.1:{self.api}",
            "--proxy-listen", f"127.0.0.1:{free_port()}", "--proxy-http-listen", f"127.0.0.1:{free_port()}",
            "--worker-http-listen", f"127.0.0.1:{wh}", "--devnet-listen", f"127.0.0.1:{self.devnet}",
            "--commit-above", "1",
        ]
        self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "up.log"), "w"),
                                           env={**os.environ, "RUST_LOG": "warn"}))
        wait_ok(f"http://127.0.0.1:{self.api}/healthz")

    def block(self):
        return http("GET", f"{self.chain}/getMasterchainInfo")["result"]["last"]["seqno"]

    def chat(self):
        return http("POST", f"http://127.0.0.1:{self.api}/v1/chat/completions",
                    {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})

    def balance(self, address):
        return int(http("GET", f"{self.chain}/getAddressInformation?address={address}")["result"]["balance"])

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def measure(up, rounds):
    rows = {"deposit": [], "withdraw": []}
    worker_api = f"http://127.0.0.1:{up.worker_http}"
    wallet = http("GET", f"{worker_api}/jsonstats")["info"]["wallet"]
    for _ in range(rounds):
        b0, t0 = up.block(), time.monotonic()
        cocoon("client", "deposit", "--api", f"http://127.0.0.1:{up.api}", "--amount", "0.5")
        up.chat()
        rows["deposit"].append((time.monotonic() - t0, up.block() - b0))

        for _ in range(3):
            up.chat()
        before = up.balance(wallet)
        b0, t0 = up.block(), time.monotonic()
        w = cocoon("worker", "withdraw", "--api", worker_api)
        while up.balance(wallet) == before:
            time.sleep(0.05)
        rows["withdraw"].append((time.monotonic() - t0, up.block() - b0))
        assert int(w["paid"]) > 0, w
    return rows


def report(rows):
    lines = [
        f"Block interval {INTERVAL_S * 1000:.0f} ms (the devnet's default). Medians of {len(rows['deposit'])} rounds.",
        "",
        "| from → to | seconds | blocks | chain floor (blocks × interval), s | seconds / floor |",
        "|---|---|---|---|---|",
    ]
    names = {"deposit": "client deposit → served on it", "withdraw": "worker withdraw → wallet credited"}
    for key, name in names.items():
        secs = statistics.median(r[0] for r in rows[key])
        blocks = statistics.median(r[1] for r in rows[key])
        floor = blocks * INTERVAL_S
        ratio = secs / floor if floor else float("nan")
        lines.append(f"| {name} | {secs:.2f} | {blocks:.0f} | {floor:.2f} | {ratio:.2f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="cocoon-bench-settlement-")
    up = Up(workdir)
    try:
        up.chat()
        text = report(measure(up, a.rounds))
    finally:
        up.stop()
    print(text)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = os.path.join(HERE, "results", time.strftime("settlement-%Y%m%d-%H%M%S.md"))
    with open(out, "w") as f:
        f.write("# Settlement latency\n\n" + text + "\n")
    print(f"\nwritten to {out}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
