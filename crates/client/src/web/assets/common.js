// Shared by the explorer and the chat: fetching JSON, making elements,
// formatting money, and showing a receipt's verification.
"use strict";

const Cocoon = (() => {
  const NANO = 1e9;

  /** An element with attributes and children (strings become text). */
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  /** GET or POST JSON; throws an Error carrying the API's message. */
  async function api(path, opts = {}) {
    const r = await fetch(path, opts);
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
    if (!r.ok) {
      const msg = body && body.error ? body.error.message : `HTTP ${r.status}`;
      const err = new Error(msg);
      err.status = r.status;
      err.code = body && body.error ? body.error.code : null;
      throw err;
    }
    return body;
  }

  function ton(nanoton) {
    if (nanoton === null || nanoton === undefined) return "—";
    const n = Number(nanoton);
    if (n !== 0 && Math.abs(n) < 1e6) return `${n.toLocaleString()} nanoton`;
    return `${(n / NANO).toLocaleString(undefined, { maximumFractionDigits: 6 })} TON`;
  }

  function short(s, n = 10) {
    if (!s) return "—";
    s = String(s);
    return s.length <= 2 * n + 1 ? s : `${s.slice(0, n)}…${s.slice(-n)}`;
  }

  function date(unixSeconds) {
    if (!unixSeconds) return "—";
    return new Date(unixSeconds * 1000).toISOString().replace(".000Z", "Z");
  }

  function table(headers, rows) {
    return el("table", {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
  }

  /** A verification report (POST /v1/cocoon/receipts/verify) as elements. */
  function verification(v) {
    const ok = v.verified;
    const r = v.receipt || {};
    const out = el("div", { class: "verification" },
      el("p", { class: `verdict ${ok ? "ok" : "bad"}`, "data-verdict": ok ? "verified" : "not-verified" },
        ok ? "✓ verified" : "✗ not verified", el("span", { class: "muted" }, ` — ${v.verdict} (${v.file})`)),
      el("ul", { class: "checks" }, (v.checks || []).map((c) =>
        el("li", { class: c.ok ? "" : "failed" }, el("b", {}, c.check), ": ", c.detail))),
      table(["fact", "signed value"], [
        ["request", el("code", {}, r.request_id || "—")],
        ["worker", `${r.worker || "—"} (certificate ${short(r.worker_certificate_sha256)})`],
        ["model", `${r.model || "—"}, weights ${short(r.model_hash)}`],
        ["ran in", `${r.tee || "unstated"} TEE, image ${short(r.image_hash)}`],
        ["proxy", r.proxy ? `${r.proxy.name}${r.proxy.contract ? " (" + short(r.proxy.contract) + ")" : ""}` : "—"],
        ["price", r.cost_nanoton !== undefined && r.cost_nanoton !== null ? `${ton(r.cost_nanoton)} at coefficient ${r.coefficient}` : "not charged"],
        ["time", r.finished_at_ms ? new Date(r.finished_at_ms).toISOString() : "—"],
      ]));
    if (v.evidence) {
      const e = v.evidence;
      out.append(el("h3", {}, "Evidence, decoded"),
        e.simulated ? el("p", { class: "pill warn" }, "SIMULATED TEE — proves nothing about hardware") : null,
        table(["", ""], [
          ["TEE", e.tee], ["image", el("code", {}, e.image_hash)], ["TCB status", e.tcb_status],
          ["advisories", e.advisories.length ? e.advisories.join(", ") : "none"],
          ["weights", el("code", {}, e.model_hash || "—")],
          ["certificate valid", `${date(e.issued_at)} → ${date(e.expires_at)}`],
          ...e.measurements.map(([k, val]) => [k, el("code", {}, val)]),
        ]));
    }
    return out;
  }

  /** How this page authenticates: a Telegram Mini App's initData (from
   * the URL fragment Telegram opens it with), or a saved API key. */
  function auth() {
    const hash = new URLSearchParams(location.hash.slice(1));
    const tg = hash.get("tgWebAppData");
    if (tg) { sessionStorage.setItem("cocoon.tma", tg); }
    const tma = sessionStorage.getItem("cocoon.tma");
    if (tma) return { header: `tma ${tma}`, kind: "telegram" };
    const key = localStorage.getItem("cocoon.key");
    if (key) return { header: `Bearer ${key}`, kind: "key" };
    return { header: null, kind: "none" };
  }

  function headers(extra = {}) {
    const a = auth();
    return a.header ? { ...extra, Authorization: a.header } : extra;
  }

  return { el, api, ton, short, date, table, verification, auth, headers };
})();
