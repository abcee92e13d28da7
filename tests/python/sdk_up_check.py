"""Drives `cocoon up` serving the real default model with the official
OpenAI Python SDK. Usage: sdk_up_check.py BASE_URL. Prints "ok <check>"
per passed check and exits non-zero on the first failure."""
import sys

import openai

MODEL = "SmolLM2-135M-Instruct"
client = openai.OpenAI(base_url=sys.argv[1], api_key="not-needed-locally", max_retries=0, timeout=120)


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok {name}")


ids = [m.id for m in client.models.list().data]
check("models.list", MODEL in ids, ids)

messages = [{"role": "user", "content": "What is the capital of France?"}]
resp = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, seed=1, max_tokens=32)
text = resp.choices[0].message.content
check("chat non-streaming", text.strip() != "" and resp.usage.completion_tokens > 0, resp)

pieces, usage = [], None
for chunk in client.chat.completions.create(
    model=MODEL, messages=messages, temperature=0, seed=1, max_tokens=32, stream=True, stream_options={"include_usage": True}
):
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
check("chat streaming", "".join(pieces) == text and usage is not None and usage.completion_tokens == resp.usage.completion_tokens,
      (pieces, text, usage))

legacy = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=5, temperature=0)
check("completions", legacy.usage.completion_tokens == 5 and legacy.choices[0].finish_reason == "length", legacy)

try:
    client.chat.completions.create(model="no-such-model", messages=messages)
    check("NotFoundError", False, "no exception")
except openai.NotFoundError as e:
    check("NotFoundError", e.status_code == 404, e)
