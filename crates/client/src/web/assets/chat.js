// The private chat: streams answers from the network, attaches a text
// document to summarise, and checks any answer's receipt on the spot.
// Runs as a Telegram Mini App too (initData from the URL fragment). Every
// message is encrypted in this page to the client's attested key (ACI,
// E2EE v2; e2ee.js), once the page has checked the attestation itself.
"use strict";

(() => {
  const { el, api, ton, short, verification, auth, headers } = Cocoon;
  const $ = (id) => document.getElementById(id);
  const history = [];
  let doc = null;
  let info = null;
  let aci = null;

  /** Server-sent events as they arrive: awaits onEvent with each payload;
   * returns the raw stream. */
  async function readStream(resp, onEvent) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let raw = "", pending = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const text = decoder.decode(value, { stream: true });
      raw += text; pending += text;
      let cut;
      while ((cut = pending.indexOf("\n\n")) >= 0) {
        const event = pending.slice(0, cut); pending = pending.slice(cut + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (data) await onEvent(data);
      }
    }
    return raw;
  }

  function bubble(kind, text) {
    const b = el("div", { class: `msg ${kind}` }, text);
    $("chat").append(b);
    b.scrollIntoView({ block: "end" });
    return b;
  }

  /** The ACI receipt, checked here, then the worker's receipt, checked by
   * the client over the answer as this page decrypted it. */
  async function showReceipt(raw, sent) {
    $("receipt-section").hidden = false;
    $("receipt").replaceChildren(el("p", { class: "muted" }, "checking…"));
    const parts = [];
    try {
      if (sent) {
        const r = await Aci.verifyReceipt(aci, sent.receiptId, sent.restored, sent.wire, headers());
        parts.push(el("div", { "data-aci": r.ok ? "verified" : "failed" },
          el("p", { class: r.ok ? "verdict good" : "verdict bad" }, r.ok ? "✓ ACI receipt verified in this browser" : "✗ the ACI receipt does not check out"),
          Cocoon.table(["check", ""], r.checks.map((c) => [`${c.ok ? "✓" : "✗"} ${c.name}`, c.detail || ""]))));
      }
      const v = await api("/v1/cocoon/receipts/verify", { method: "POST", body: raw });
      parts.push(verification(v));
    } catch (e) {
      parts.push(el("p", { class: "verdict bad" }, `✗ ${e.message}`));
    }
    $("receipt").replaceChildren(...parts);
    $("receipt-section").scrollIntoView();
  }

  async function send() {
    const model = $("model").value;
    let text = $("input").value.trim();
    if (!text && !doc) return;
    if (doc) {
      text = `${text || "Summarise this document in a few sentences."}\n\n--- ${doc.name} ---\n${doc.text}`;
    }
    bubble("user", doc ? `${$("input").value.trim() || "Summarise this document."} [${doc.name}]` : text);
    history.push({ role: "user", content: text });
    $("input").value = ""; doc = null; $("attached").textContent = "";
    $("send").disabled = true;
    const answer = bubble("assistant", "");
    answer.dataset.state = "streaming";
    let content = "", last = null;
    try {
      if (!aci) throw new Error("this page has not verified the client's attestation, so it sends nothing");
      const body = { model, messages: history, stream: true, stream_options: { include_usage: true } };
      const sealed = await Aci.request(aci, body);
      const resp = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: headers({ "Content-Type": "application/json", ...sealed.headers }),
        body: sealed.body,
      });
      if (!resp.ok) {
        const body = await resp.json().catch(() => ({}));
        throw new Error(body.error ? body.error.message : `HTTP ${resp.status}`);
      }
      // The answer as the worker gave it (decrypted), for its own receipt.
      let plain = "";
      const wire = await readStream(resp, async (data) => {
        if (data === "[DONE]") { plain += "data: [DONE]\n\n"; return; }
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        await sealed.openFields(chunk, "delta");
        plain += `data: ${JSON.stringify(chunk)}\n\n`;
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) { content += delta.content; answer.firstChild ? answer.firstChild.textContent = content : answer.append(content); }
        if (chunk.cocoon) last = chunk;
      });
      const raw = plain;
      const sent = { receiptId: resp.headers.get("X-Receipt-Id"), restored: sealed.restored, wire };
      history.push({ role: "assistant", content });
      const c = last && last.cocoon;
      const usage = last && last.usage;
      answer.append(el("span", { class: "meta" },
        usage ? `${usage.prompt_tokens + usage.completion_tokens} tokens` : "",
        usage && usage.cost_nanoton !== undefined ? ` · ${ton(usage.cost_nanoton)}` : "",
        c ? ` · worker ${short(c.worker, 8)} (${c.worker_tee || "?"} TEE) · ` : " · ",
        c && c.receipt ? el("button", { class: "ghost receipt", onclick: () => showReceipt(raw, sent) }, "receipt") : "no receipt"));
      answer.dataset.state = "done";
      refreshAccount();
    } catch (e) {
      answer.remove();
      bubble("error", e.message).dataset.state = "error";
      history.pop();
    } finally {
      $("send").disabled = false;
    }
  }

  async function loadModels() {
    try {
      const list = await api("/v1/models", { headers: headers() });
      const price = info && info.prices ? info.prices.price_per_token : 0;
      $("model").replaceChildren(...list.data.map((m) => {
        const c = m.cocoon.coefficient.median;
        const each = price ? ` · ≈${ton(Math.round(price * c / 1000))}/token` : "";
        return el("option", { value: m.id }, `${m.id} — ${m.cocoon.workers} worker(s), ${(c / 1000).toFixed(2)}×${each}`);
      }));
      const trust = info.attestation.proxy && info.attestation.proxy.evidence;
      $("model-info").textContent = trust ? `through an attested ${trust.tee} proxy; every answer's receipt is checked` : "development network: no attestation";
      if (!list.data.length) $("model-info").textContent = "no model is served right now";
    } catch (e) {
      if (e.status === 401) { $("key-section").hidden = false; }
      $("model-info").textContent = e.message;
    }
  }

  async function refreshAccount() {
    if (auth().kind === "none") return;
    try {
      const b = await api("/v1/cocoon/balance", { headers: headers() });
      if (!b.account) return;
      const a = b.account;
      $("account-section").hidden = false;
      $("account").replaceChildren(Cocoon.table(["", ""], [
        ["available", ton(a.available_nanoton)], ["spent", ton(a.spent_nanoton)], ["budget", ton(a.budget_nanoton)],
        ["renews", a.renews_at ? Cocoon.date(a.renews_at) : "never"],
      ]));
    } catch (_) { /* the account is optional */ }
  }

  async function showDeposit() {
    if (auth().kind !== "telegram" || !info || !info.chain) return;
    try {
      const c = await api("/v1/cocoon/chain", { headers: headers() });
      $("deposit").replaceChildren(el("h3", {}, "Top up the network's contract"),
        el("p", {}, el("a", { href: c.deposit_link }, `Add ${ton(c.deposit_link_amount_nanoton)} with a TON wallet`),
          el("span", { class: "muted" }, " (the wallet also sends 0.1 TON for fees; what they do not use comes back)")),
        el("img", { class: "qr", src: "/v1/cocoon/deposit-qr.svg", alt: "QR code of the top-up link" }));
    } catch (_) { /* no chain */ }
  }

  $("send").addEventListener("click", send);
  $("input").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); } });
  $("attach").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", async () => {
    const f = $("file").files[0];
    if (!f) return;
    const text = await f.text();
    if (text.includes("\u0000")) { $("attached").textContent = `${f.name} is not text: attach a text or markdown file`; return; }
    doc = { name: f.name, text };
    $("attached").textContent = `attached: ${f.name} (${text.length.toLocaleString()} characters)`;
  });
  $("save-key").addEventListener("click", () => {
    localStorage.setItem("cocoon.key", $("key").value.trim());
    $("key-section").hidden = true;
    loadModels(); refreshAccount();
  });

  (async () => {
    try { info = await api("/v1/cocoon/explorer"); } catch (e) { $("who").textContent = e.message; return; }
    const a = auth();
    $("who").textContent = a.kind === "telegram" ? "signed in with Telegram" : a.kind === "key" ? "with an API key" : "";
    if (info.access.restricted && a.kind === "none") $("key-section").hidden = false;
    try {
      aci = await Aci.establish();
      $("sealed").textContent = `🔒 encrypted in this page to the client's attested key (keyset ${aci.digest.slice(7, 19)}…, ${aci.teeType} TEE${aci.development ? ": development, proves nothing" : ""})`;
      $("sealed").dataset.state = "verified";
    } catch (e) {
      $("sealed").textContent = `✗ ${e.message}`;
      $("sealed").dataset.state = "failed";
    }
    await loadModels();
    refreshAccount(); showDeposit();
    document.body.dataset.loaded = "yes";
  })();
})();
