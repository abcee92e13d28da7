// The explorer: the registry, the proxies, the workers seen, activity over
// time, the request path, and receipts checked on the spot.
"use strict";

(() => {
  const { el, api, ton, short, date, table, verification } = Cocoon;
  const $ = (id) => document.getElementById(id);

  function box(x, y, w, title, lines, ok) {
    const g = document.createElementNS("http://www.w3.org/2000/svg", "g");
    const rect = document.createElementNS(g.namespaceURI, "rect");
    Object.entries({ x, y, width: w, height: 112, rx: 10, fill: "#fff",
      stroke: ok === false ? "#a3322b" : "#2f6f5e", "stroke-width": 1.6 })
      .forEach(([k, v]) => rect.setAttribute(k, v));
    g.append(rect);
    [title, ...lines].forEach((t, i) => {
      const text = document.createElementNS(g.namespaceURI, "text");
      text.setAttribute("x", x + 10);
      text.setAttribute("y", y + 20 + i * 17);
      if (i === 0) text.setAttribute("font-weight", "700");
      text.textContent = t;
      g.append(text);
    });
    return g;
  }

  function arrow(svg, x1, x2, y, label) {
    const ns = svg.namespaceURI;
    const line = document.createElementNS(ns, "path");
    line.setAttribute("d", `M${x1},${y} L${x2 - 6},${y} M${x2 - 12},${y - 5} L${x2 - 4},${y} L${x2 - 12},${y + 5}`);
    line.setAttribute("stroke", "#5b6b66");
    line.setAttribute("fill", "none");
    svg.append(line);
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x1 + 4);
    t.setAttribute("y", y - 8);
    t.textContent = label;
    svg.append(t);
  }

  function drawPath(d) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 1040 140");
    svg.setAttribute("width", "100%");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "request path");
    const p = d.attestation.proxy;
    const ev = p && p.evidence;
    const w = d.attestation.workers[d.attestation.workers.length - 1];
    svg.append(box(10, 14, 150, "Your app", ["OpenAI API", "loopback or a key"], true));
    arrow(svg, 160, 230, 70, "HTTP");
    svg.append(box(230, 14, 220, `Client ${d.client.name}`, [
      d.client.receipts_checked ? "checks every receipt" : "receipts NOT checked",
      d.access.restricted ? "keys / Telegram required" : "open on loopback",
      `link to proxy: ${d.client.proxy_link}`], d.client.receipts_checked));
    arrow(svg, 450, 520, 70, "RA-TLS");
    svg.append(box(520, 14, 240, `Proxy ${d.client.proxy_name || d.client.proxy}`, ev ? [
      `${ev.tee} TEE, TCB ${ev.tcb_status}`, `image ${short(ev.image_hash, 8)}`,
      p.authenticated ? "attestation verified by the client" : "NOT authenticated"] :
      ["no attestation", "(development, no policy)"], !!(p && p.authenticated)));
    arrow(svg, 760, 830, 70, "RA-TLS");
    svg.append(box(830, 14, 205, w ? `Worker ${short(w.worker, 6)}` : "Worker", w ? [
      `${w.tee || "?"} TEE, image ${short(w.image_hash, 5)}`, `weights ${short(w.model_hash, 6)}`,
      "proxy-verified; receipt checked"] : ["none answered yet"], !!w));
    $("path").replaceChildren(svg);
  }

  function drawChart(minutes) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 1000 180");
    svg.setAttribute("width", "100%");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "tokens and spend per minute");
    if (!minutes.length) {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", 10); t.setAttribute("y", 30);
      t.textContent = "No answers yet: ask something in the private chat.";
      svg.append(t);
      $("chart").replaceChildren(svg);
      return;
    }
    const maxT = Math.max(...minutes.map((m) => m.tokens), 1);
    const maxS = Math.max(...minutes.map((m) => m.spent), 1);
    const t0 = minutes[0].at, t1 = Math.max(minutes[minutes.length - 1].at, t0 + 60);
    const x = (at) => 40 + ((at - t0) / (t1 - t0)) * 900;
    minutes.forEach((m) => {
      const bar = document.createElementNS(ns, "rect");
      const h = (m.tokens / maxT) * 130;
      Object.entries({ x: x(m.at), y: 150 - h, width: 8, height: h, fill: "#9cc9b8" })
        .forEach(([k, v]) => bar.setAttribute(k, v));
      const tip = document.createElementNS(ns, "title");
      tip.textContent = `${date(m.at)}: ${m.requests} answers, ${m.tokens} tokens, ${ton(m.spent)}`;
      bar.append(tip);
      svg.append(bar);
    });
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", minutes.map((m) => `${x(m.at) + 4},${150 - (m.spent / maxS) * 130}`).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#2f6f5e");
    line.setAttribute("stroke-width", 2);
    svg.append(line);
    const legend = document.createElementNS(ns, "text");
    legend.setAttribute("x", 40); legend.setAttribute("y", 172);
    legend.textContent = `bars: tokens per minute (max ${maxT}); line: spend per minute (max ${ton(maxS)}); ${date(t0)} → ${date(t1)}`;
    svg.append(legend);
    $("chart").replaceChildren(svg);
  }

  function totals(d) {
    const sum = (k) => d.history.reduce((a, m) => a + m[k], 0);
    const stat = (label, value) => el("div", { class: "stat" }, el("b", {}, value), label);
    $("totals").replaceChildren(
      stat("answers in the last day", sum("requests").toLocaleString()),
      stat("tokens in the last day", sum("tokens").toLocaleString()),
      stat("spent in the last day", ton(sum("spent"))),
      stat("price per token at 1×", d.prices ? ton(d.prices.price_per_token) : "free (no payments)"),
      stat("receipts kept", d.receipts_kept));
  }

  function registry(d) {
    const r = d.registry;
    if (!r) return $("registry").replaceChildren(el("p", { class: "muted" }, "This client runs on a development ledger: there is no chain to read."));
    if (r.unreadable) return $("registry").replaceChildren(el("p", { class: "pill bad" }, `unreadable: ${r.unreadable}`));
    const images = Object.entries(r.images).flatMap(([role, list]) =>
      list.map((h) => [role, el("code", {}, h)]));
    $("registry").replaceChildren(
      table(["", ""], [
        ["root", el("code", {}, r.root)], ["owner", el("code", {}, r.owner)], ["parameters version", r.version],
        ["price per token", `${ton(r.prices.price_per_token)} (${ton(r.prices.worker_fee_per_token)} to workers)`],
        ["stakes", `proxy ${ton(r.terms.min_proxy_stake)}, client ${ton(r.terms.min_client_stake)}, worker ${ton(r.terms.min_worker_stake)}`],
        ["slash share", `${r.terms.slash_share_basis_points / 100}%`],
      ]),
      ...(d.price_history && d.price_history.length ? [el("h3", {}, "Prices, as this client saw them change"),
        table(["since", "price per token", "to workers"], d.price_history.map((p) => [date(p.since), ton(p.price_per_token), ton(p.worker_fee_per_token)]))] : []),
      el("h3", {}, "Allowed images"), table(["role", "image hash"], images),
      el("h3", {}, "Models"), table(["name", "weights (SHA-256)"], Object.entries(r.models).map(([h, n]) => [n, el("code", {}, h)])),
      el("h3", {}, "Proxies"), table(["contract", "state", "stake", "commission", "endpoints"], r.proxies.map((p) => [
        el("code", { title: p.contract }, short(p.contract)),
        p.on_chain.state ? el("span", { class: p.on_chain.state === "open" ? "pill" : "pill warn" }, p.on_chain.state) : el("span", { class: "pill bad" }, "unreadable"),
        ton(p.on_chain.stake), ton(p.on_chain.commission), p.endpoints])));
  }

  function workers(d) {
    const names = (d.registry && d.registry.models) || {};
    const rows = d.attestation.workers.map((w) => [
      w.worker, w.tee ? el("span", { class: w.tee === "sim" ? "pill warn" : "pill" }, w.tee) : "—",
      el("code", { title: w.image_hash || "" }, short(w.image_hash)),
      el("span", { title: w.model_hash || "" }, names[w.model_hash] ? `${names[w.model_hash]} ` : "", el("code", {}, short(w.model_hash))),
      w.coefficient ? `${(w.coefficient / 1000).toFixed(3)}×` : "—", date(w.last_seen)]);
    $("workers").replaceChildren(rows.length ? table(["worker", "TEE", "image", "weights", "coefficient", "last answered"], rows)
      : el("p", { class: "muted" }, "No worker has answered through this client yet."));
  }

  function models(d) {
    const list = (d.models && d.models.data) || [];
    if (d.models && d.models.unreachable) return $("models").replaceChildren(el("p", { class: "pill bad" }, `proxy unreachable: ${d.models.unreachable}`));
    $("models").replaceChildren(table(["model", "workers", "coefficient (min / median / max)", "answers compared", "dissenting", "median latency"],
      list.map((m) => {
        const c = m.cocoon; const rep = c.reputation;
        return [m.id, c.workers, `${c.coefficient.min} / ${c.coefficient.median} / ${c.coefficient.max}`, rep.compared_answers, rep.dissenting_answers,
          rep.median_latency_ms ? `${rep.median_latency_ms} ms` : "—"];
      })));
  }

  async function verify(text) {
    $("report").replaceChildren(el("p", { class: "muted" }, "checking…"));
    try {
      const v = await api("/v1/cocoon/receipts/verify", { method: "POST", body: text });
      $("report").replaceChildren(verification(v));
    } catch (e) {
      $("report").replaceChildren(el("p", { class: "verdict bad" }, `✗ ${e.message}`));
    }
  }

  /** A standalone explorer (`cocoon explorer`): the chain only. */
  function standalone(d) {
    for (const id of ["path-section", "activity-section", "workers-section", "models-section"]) $(id).hidden = true;
    $("latest").hidden = true;
    $("who").textContent = `root ${short(d.chain.root)} on ${d.chain.endpoint} · receipts checked under: ${d.policy}`;
    registry(d);
    document.body.dataset.loaded = "yes";
  }

  async function load() {
    try {
      const d = await api("/v1/cocoon/explorer");
      if (d.standalone) return standalone(d);
      $("who").textContent = `client ${d.client.name} · proxy ${d.client.proxy_name || d.client.proxy} (${d.client.proxy_link})`;
      drawPath(d); totals(d); drawChart(d.history); registry(d); workers(d); models(d);
      document.body.dataset.loaded = "yes";
    } catch (e) {
      $("who").textContent = `cannot read this client: ${e.message}`;
    }
  }

  $("verify").addEventListener("click", () => verify($("saved").value));
  $("latest").addEventListener("click", async () => {
    try {
      const list = await api("/v1/cocoon/receipts", { headers: Cocoon.headers() });
      if (!list.data.length) throw new Error("no receipts kept yet");
      const text = JSON.stringify(list.data[0]);
      $("saved").value = text;
      verify(text);
    } catch (e) { $("report").replaceChildren(el("p", { class: "verdict bad" }, `✗ ${e.message}`)); }
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault(); drop.classList.remove("over");
    const f = e.dataTransfer.files[0];
    if (f) { const text = await f.text(); $("saved").value = text; verify(text); }
  });
  load();
  setInterval(load, 10000);
  // A link to one receipt (the bot's /verify gives one): check it at once.
  const asked = new URLSearchParams(location.search).get("request");
  if (asked) {
    api(`/v1/cocoon/receipts/${encodeURIComponent(asked)}`)
      .then((entry) => { const text = JSON.stringify(entry); $("saved").value = text; return verify(text); })
      .then(() => $("report").scrollIntoView())
      .catch((e) => $("report").replaceChildren(el("p", { class: "verdict bad" }, `✗ ${e.message}`)));
  }
})();
