"""The Telegram demo, timed (run through bench/telegram_demo.sh).

Starts `cocoon up` (the default model in the embedded engine, Telegram
sign-in on), the Bot API double (tests/harness/bin/bot_api_double.rs) and
`cocoon bot`, then, each round, a new Telegram user sends the one-page memo
crates/bot/tests/fixtures/supplier-review.md and the time until the bot's
reply is final (the summary in full, with its receipt) is taken at the
double. Beside it, the same prompt sent to the client's API directly
(non-streamed, the same max_tokens and temperature 0), and the engine's
own time from that answer's receipt (the worker's start to finish). Each
document is a new copy of the memo (its title numbered), so no round
finds its prompt already in the engine's cache. Target: the bot's time
under 2 s on this machine's CPU. Results are printed and written to
bench/results/telegram-demo-<time>.md.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BIN = os.environ.get("COCOON_BIN_DIR", "target/release")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOKEN = "7000000001:AAF-demo_bench-token"
DOC = os.path.join(ROOT, "crates/bot/tests/fixtures/supplier-review.md")
# What the bot asks for a document's summary (crates/bot: --summary-tokens,
# temperature 0, its default instruction).
SUMMARY_TOKENS = 96
INSTRUCTION = "Summarise this document in two or three sentences."


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    h = {"content-type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    with urllib.request.urlopen(req, timeout=300) as r:
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


def wait_log(path, needle, limit=180):
    end = time.time() + limit
    while time.time() < end:
        with open(path, errors="replace") as f:
            if needle in f.read():
                return
        time.sleep(0.2)
    sys.exit(f"{needle!r} never appeared in {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cocoon-demo-")
    token_file = os.path.join(work, "bot.token")
    with open(token_file, "w") as f:
        f.write(TOKEN)
    api_port = free_port()
    base = f"http://127.0.0.1:{api_port}"
    procs = []
    logs = {name: open(os.path.join(work, f"{name}.log"), "w+") for name in ("up", "double", "bot")}
    try:
        up = subprocess.Popen([f"{BIN}/cocoon", "up", "--data-dir", os.path.join(work, "up"),
                               "--listen", f"127.0.0.1:{api_port}",
                               "--proxy-listen", f"127.0.0.1:{free_port()}",
                               "--proxy-http-listen", f"127.0.0.1:{free_port()}",
                               "--worker-http-listen", f"127.0.0.1:{free_port()}",
                               "--devnet-listen", f"127.0.0.1:{free_port()}",
                               "--telegram-token-file", token_file, "--telegram-user-rpm", "0"],
                              stdout=logs["up"], stderr=subprocess.STDOUT)
        procs.append(up)
        wait_ok(f"{base}/healthz")
        wait_log(logs["up"].name, "Press Ctrl-C")
        double = subprocess.Popen([f"{BIN}/bot-api-double", TOKEN], stdout=subprocess.PIPE, stderr=logs["double"], text=True)
        procs.append(double)
        line = double.stdout.readline().split()
        tg_api, control = line[0].split("=", 1)[1], line[1].split("=", 1)[1]
        bot = subprocess.Popen([f"{BIN}/cocoon", "bot", "--token-file", token_file, "--api", base,
                                "--telegram-api-url", tg_api, "--summary-tokens", str(SUMMARY_TOKENS)],
                               stdout=logs["bot"], stderr=subprocess.STDOUT)
        procs.append(bot)
        wait_log(logs["bot"].name, "Telegram bot started", 60)
        rows = run_rounds(args.rounds, base, control)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    report(rows)


def direct(base, text, user_auth):
    """The bot's prompt sent to the API directly; wall time and the engine's."""
    prompt = f"{INSTRUCTION}\n\n--- supplier-review.md ---\n{text}"
    started = time.time()
    answer = http("POST", f"{base}/v1/chat/completions",
                  {"model": "SmolLM2-135M-Instruct", "max_tokens": SUMMARY_TOKENS, "temperature": 0,
                   "messages": [{"role": "user", "content": prompt}]}, user_auth)
    wall = (time.time() - started) * 1000
    receipt = json.loads(json.dumps(answer["cocoon"]["receipt"]))["receipt"]
    engine = receipt["finished_at_ms"] - receipt["started_at_ms"]
    return wall, engine, answer["usage"]


def sign(user):
    """initData for `user`, as the bot signs it (Telegram's algorithm)."""
    import hashlib
    import hmac
    import urllib.parse
    fields = {"auth_date": str(int(time.time())), "user": '{"id":%d}' % user}
    dcs = "\n".join(f"{k}={fields[k]}" for k in sorted(fields))
    secret = hmac.new(b"WebAppData", TOKEN.encode(), hashlib.sha256).digest()
    fields["hash"] = hmac.new(secret, dcs.encode(), hashlib.sha256).hexdigest()
    return {"authorization": "tma " + urllib.parse.urlencode(fields)}


def copy_of(text, n):
    """The memo as a distinct document (its title numbered), so no round
    finds its prompt already computed by the engine's cache."""
    return text.replace("confidential", f"confidential (copy {n})", 1)


def run_rounds(rounds, base, control):
    with open(DOC) as f:
        memo = f.read()
    rows = []
    # One round unmeasured: the first request loads what serving needs.
    for i in range(rounds + 1):
        user = 5000 + i
        text = copy_of(memo, 2 * i)
        sent = http("POST", f"{control}/document", {"user": user, "name": "supplier-review.md", "mime": "text/markdown", "text": text})
        deadline = time.time() + 300
        while True:
            try:
                got = http("GET", f"{control}/reply/{user}/{sent['message_id']}")
                break
            except urllib.error.HTTPError as e:
                if e.code != 404 or time.time() > deadline:
                    raise
                time.sleep(0.01)
        wall, engine, usage = direct(base, copy_of(memo, 2 * i + 1), sign(9000 + i))
        if i == 0:
            continue
        rows.append({"bot_ms": got["final_ms"], "first_text_ms": got["first_ms"], "edits": got["edits"],
                     "direct_ms": wall, "engine_ms": engine,
                     "prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"]})
        print(f"round {i}: bot {got['final_ms']:.0f} ms (first text {got['first_ms']:.0f} ms, {got['edits']} texts); "
              f"API directly {wall:.0f} ms; engine {engine} ms; {usage['prompt_tokens']}+{usage['completion_tokens']} tokens", flush=True)
    return rows


def report(rows):
    med = lambda k: statistics.median(r[k] for r in rows)
    lines = [
        "# Telegram demo: a one-page document in, a private summary out",
        "",
        f"{len(rows)} rounds, medians; `cocoon up` with SmolLM2-135M-Instruct (Q4_1) in the embedded engine on this machine's CPU.",
        "",
        "| | ms |",
        "|---|---|",
        f"| document sent → summary final in the chat (bot, via the Bot API double) | {med('bot_ms'):.0f} |",
        f"| document sent → first text of the reply | {med('first_text_ms'):.0f} |",
        f"| the same prompt sent to the API directly | {med('direct_ms'):.0f} |",
        f"| the engine's own time for it (receipt: start to finish) | {med('engine_ms'):.0f} |",
        "",
        f"Tokens: {med('prompt_tokens'):.0f} prompt, {med('completion_tokens'):.0f} completion (median).",
        f"Bot / direct: {med('bot_ms') / med('direct_ms'):.2f}; bot / engine: {med('bot_ms') / max(med('engine_ms'), 1):.2f}. Target: bot under 2000 ms.",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", time.strftime("telegram-demo-%Y%m%d-%H%M%S.md"))
    with open(path, "w") as f:
        f.write(text + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
