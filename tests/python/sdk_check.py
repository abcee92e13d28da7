"""Drives a Cocoon client with the official OpenAI Python SDK.

Usage: sdk_check.py BASE_URL MODEL. Prints "ok <check>" per passed check and
exits non-zero on the first failure. The upstream is the deterministic test
upstream, so the expected text shape is known.
"""
import sys

import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key="not-needed-locally", max_retries=0, timeout=30)


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok {name}")


models = client.models.list()
ids = [m.id for m in models.data]
check("models.list", model in ids, ids)

resp = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}])
text = resp.choices[0].message.content
check("chat non-streaming", len(text) == 6 * 20 and text.startswith("[0000]") and resp.usage.completion_tokens == 6, resp)

pieces, usage = [], None
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Hello"}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
check("chat streaming", "".join(pieces) == text and usage is not None and usage.completion_tokens == 6, (pieces, usage))

# Without include_usage the stream still ends with the receipt: a chunk with
# no choices (the shape of OpenAI's usage chunk) that the SDK reads as one.
pieces, receipt = [], None
for chunk in client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Hello"}], stream=True
):
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
    cocoon = (chunk.model_extra or {}).get("cocoon")
    if cocoon:
        receipt = cocoon.get("receipt")
check("chat streaming carries a receipt", "".join(pieces) == text and receipt is not None and "signature" in receipt, (pieces, receipt))

legacy = client.completions.create(model=model, prompt="Once", max_tokens=3)
check("completions", legacy.usage.completion_tokens == 3 and len(legacy.choices[0].text) == 60, legacy)

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    check("NotFoundError", False, "no exception")
except openai.NotFoundError as e:
    check("NotFoundError", e.status_code == 404 and "no-such-model" in str(e), e)

try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], temperature=5)
    check("BadRequestError", False, "no exception")
except openai.BadRequestError as e:
    check("BadRequestError", e.status_code == 400 and e.body.get("param") == "temperature", e.body)
