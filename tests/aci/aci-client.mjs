// An ACI (aci/1) client and verifier written from the public specification
// alone (spec/aci.md, spec/e2ee-v2.md), with Node's own crypto: it shares
// no code with Cocoon. `node aci-client.mjs http://127.0.0.1:PORT [MODEL]`
// checks the service's attestation report against a fresh nonce, sends
// E2EE v2 chat requests (whole and streamed), decrypts the answers,
// verifies their receipts and the attested sessions they cite, and makes
// the refusals the spec defines happen. It prints one JSON line with what
// it saw and exits non-zero at the first failed check.
import crypto from "node:crypto";

const [api, modelArg] = process.argv.slice(2);
const fail = (what) => {
  console.error(`ACI check failed: ${what}`);
  process.exit(1);
};
const check = (ok, what) => ok || fail(what);
const sha256hex = (b) => crypto.createHash("sha256").update(b).digest("hex");

// RFC 8785 for ACI's documents (integers only): sorted by UTF-16 code units.
function jcs(v) {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(jcs).join(",") + "]";
  return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + jcs(v[k])).join(",") + "}";
}

const X25519_PKCS8 = Buffer.from("302e020100300506032b656e04220420", "hex");
const X25519_SPKI = Buffer.from("302a300506032b656e032100", "hex");
const ED25519_SPKI = Buffer.from("302a300506032b6570032100", "hex");
const x25519Public = (raw) => crypto.createPublicKey({ key: Buffer.concat([X25519_SPKI, raw]), format: "der", type: "spki" });
const rawPublic = (key) =>
  Buffer.from((key.type === "public" ? key : crypto.createPublicKey(key)).export({ format: "jwk" }).x, "base64url");

function fieldKey(privateKey, publicRaw) {
  const shared = crypto.diffieHellman({ privateKey, publicKey: x25519Public(publicRaw) });
  return Buffer.from(crypto.hkdfSync("sha256", shared, Buffer.alloc(0), "aci.e2ee.v2.x25519", 32));
}
function seal(recipientRaw, plaintext, aad) {
  const eph = crypto.generateKeyPairSync("x25519").privateKey;
  const iv = crypto.randomBytes(12);
  const c = crypto.createCipheriv("aes-256-gcm", fieldKey(eph, recipientRaw), iv);
  c.setAAD(Buffer.from(aad));
  const body = Buffer.concat([c.update(Buffer.from(plaintext, "utf8")), c.final()]);
  return Buffer.concat([rawPublic(eph), iv, body, c.getAuthTag()]).toString("hex");
}
function open(privateKey, hex, aad) {
  const b = Buffer.from(hex, "hex");
  const d = crypto.createDecipheriv("aes-256-gcm", fieldKey(privateKey, b.subarray(0, 32)), b.subarray(32, 44));
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(b.subarray(b.length - 16));
  return Buffer.concat([d.update(b.subarray(44, b.length - 16)), d.final()]).toString("utf8");
}

async function get(path, headers = {}) {
  const r = await fetch(api + path, { headers });
  return { status: r.status, headers: r.headers, text: await r.text() };
}

// §9.1: the workload identity, bound to our own fresh nonce.
async function establish() {
  const nonce = crypto.randomBytes(32).toString("hex");
  const r = await get(`/v1/aci/attestation?nonce=${nonce}`);
  check(r.status === 200, `attestation status ${r.status}: ${r.text}`);
  const rep = JSON.parse(r.text);
  check(rep.api_version === "aci/1", "api_version");
  const ks = rep.attestation.workload_keyset;
  const digest = "sha256:" + sha256hex(jcs(ks));
  check(digest === rep.workload_keyset_digest, `keyset digest ${digest} != ${rep.workload_keyset_digest}`);
  check(r.headers.get("x-aci-keyset-digest") === digest, "X-ACI-Keyset-Digest");
  check(r.headers.get("x-aci-version") === "aci/1", "X-ACI-Version");
  const statement = `{"keyset_digest":"${digest}","nonce":"${nonce}","purpose":"aci.report_data.v1"}`;
  check(sha256hex(statement) === rep.attestation.report_data, "report_data is not sha256(statement) for our nonce");
  const ev = rep.attestation.evidence;
  check(ev.report_data_slot === rep.attestation.report_data + "0".repeat(64), "report-data slot");
  if (ev.quote) check(ev.quote.includes(rep.attestation.report_data), "the quote does not carry the report data");
  check(ks.not_after > Date.now() / 1000, "keyset expired");
  const e2ee = ks.e2ee_public_keys.find((k) => k.algo === "x25519-aes-256-gcm-hkdf-sha256");
  check(e2ee, "no X25519 E2EE key");
  check(rep.service_capabilities.supported_e2ee_versions.includes("2"), "E2EE v2 not advertised");
  // Keys are per role.
  check(!ks.receipt_signing_keys.some((k) => k.public_key === e2ee.public_key), "a key serves two roles");
  return { keyset: ks, digest, e2ee, teeType: rep.attestation.tee_type };
}

function e2eeRequest(id, body, overrides = {}) {
  const client = crypto.generateKeyPairSync("x25519");
  const nonce = overrides.nonce ?? crypto.randomBytes(32).toString("hex");
  const ts = overrides.ts ?? Math.floor(Date.now() / 1000);
  const base = { algo: id.e2ee.algo, model: body.model, nonce, ts };
  const sealed = structuredClone(body);
  sealed.messages.forEach((m, i) => {
    const field = `messages.${i}.content`;
    m.content = seal(Buffer.from(id.e2ee.public_key, "hex"), m.content, jcs({ ...base, purpose: "aci.e2ee.request.v2", field }));
  });
  const headers = {
    "content-type": "application/json",
    "x-e2ee-version": "2",
    "x-client-pub-key": rawPublic(client.publicKey).toString("hex"),
    "x-model-pub-key": overrides.modelKey ?? id.e2ee.public_key,
    "x-e2ee-nonce": nonce,
    "x-e2ee-timestamp": String(ts),
  };
  return { client, base, sealed, headers };
}

function openAnswer(req, answer, path) {
  const id = answer.id ?? "";
  for (const [pos, ch] of (answer.choices ?? []).entries()) {
    const i = ch.index ?? pos;
    for (const name of ["content", "reasoning", "reasoning_content"]) {
      const where = ch[path];
      if (where && typeof where[name] === "string") {
        where[name] = open(req.client.privateKey, where[name], jcs({ ...req.base, purpose: "aci.e2ee.response.v2", id, field: `choices.${i}.${path}.${name}` }));
      }
    }
  }
}

// §9.3: the receipt signs exactly what we sent (restored) and received.
async function verifyReceipt(id, receiptId, restored, wire) {
  const r = await get(`/v1/aci/receipts/${receiptId}`);
  check(r.status === 200, `receipt ${receiptId}: ${r.status} ${r.text}`);
  const doc = JSON.parse(r.text);
  const { signature, ...unsigned } = doc;
  const key = id.keyset.receipt_signing_keys.find((k) => k.key_id === doc.key_id && k.algo === "ed25519");
  check(key, `receipt key ${doc.key_id} not in the keyset`);
  const pub = crypto.createPublicKey({ key: Buffer.concat([ED25519_SPKI, Buffer.from(key.public_key, "hex")]), format: "der", type: "spki" });
  check(crypto.verify(null, Buffer.from(jcs(unsigned)), pub, Buffer.from(signature, "hex")), "receipt signature");
  check(doc.api_version === "aci/1" && doc.workload_keyset_digest === id.digest, "receipt keyset");
  const ev = (t) => doc.event_log.find((e) => e.type === t);
  check(doc.event_log[0].type === "request.received", "first event");
  check(ev("request.received").body_hash === "sha256:" + sha256hex(restored), "request.received hash");
  check(ev("response.returned").body_hash === "sha256:" + sha256hex(wire), "response.returned hash");
  const up = ev("upstream.verified");
  check(up, "an aggregator's receipt has an upstream.verified event");
  let session = null;
  if (up.result === "verified") {
    const s = await get(`/v1/aci/sessions/${up.session_id}`);
    check(s.status === 200, `session ${up.session_id}: ${s.status}`);
    const sdoc = JSON.parse(s.text);
    check(sha256hex(jcs(sdoc)) === up.session_id, "session id is not the digest of its document");
    const data = Buffer.from(sdoc.evidence.data.split(",")[1], "base64");
    check("sha256:" + sha256hex(data) === sdoc.evidence.digest, "session evidence digest");
    check(doc.served_at <= sdoc.expires_at, "served after the session expired");
    session = { id: up.session_id, tee_attested: sdoc.claims.tee_attested.status, bindings: sdoc.channel_binding.map((b) => b.type) };
  }
  return { upstream: up.result, required: up.required, session, served: ev("cocoon.served") };
}

async function chat(id, stream) {
  const body = { model, messages: [{ role: "user", content: "the marker is MARKER-7f3a" }], max_tokens: 16, stream };
  const req = e2eeRequest(id, body);
  const r = await fetch(api + "/v1/chat/completions", { method: "POST", headers: req.headers, body: JSON.stringify(req.sealed) });
  const wire = Buffer.from(await r.arrayBuffer());
  check(r.status === 200, `chat status ${r.status}: ${wire}`);
  check(r.headers.get("x-e2ee-applied") === "true", "X-E2EE-Applied");
  check(!wire.toString().includes("MARKER-7f3a"), "the prompt came back in the clear");
  let text = "";
  if (stream) {
    for (const line of wire.toString().split("\n")) {
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const chunk = JSON.parse(line.slice(6));
      openAnswer(req, chunk, "delta");
      text += chunk.choices?.[0]?.delta?.content ?? "";
    }
  } else {
    const answer = JSON.parse(wire);
    openAnswer(req, answer, "message");
    text = answer.choices[0].message.content;
  }
  const restored = JSON.stringify(body);
  const receipt = await verifyReceipt(id, r.headers.get("x-receipt-id"), restored, wire);
  // Whether the client sealed it on to the worker too (Cocoon's own header).
  receipt.sealed_to_worker = r.headers.get("x-cocoon-e2e") === "sealed";
  return { req, text, receipt };
}

async function refused(req, mutate, expected) {
  const r = structuredClone({ headers: req.headers, body: req.sealed });
  mutate(r);
  const resp = await fetch(api + "/v1/chat/completions", { method: "POST", headers: r.headers, body: JSON.stringify(r.body) });
  const err = JSON.parse(await resp.text()).error ?? {};
  check(resp.status === 400 && err.type === expected, `expected 400 ${expected}, got ${resp.status} ${err.type}: ${err.message}`);
  return expected;
}

// The model asked for, or the first one served.
const model = modelArg ?? JSON.parse((await get("/v1/models")).text).data[0].id;
const id = await establish();
const whole = await chat(id, false);
const streamed = await chat(id, true);
const refusals = [];
// The same request again: its nonce was used.
refusals.push(await refused(whole.req, () => {}, "e2ee_replay_detected"));
const fresh = () => e2eeRequest(id, { model, messages: [{ role: "user", content: "hi" }, { role: "user", content: "there" }], max_tokens: 4 });
refusals.push(await refused(fresh(), (r) => { r.headers["x-model-pub-key"] = "11".repeat(32); }, "e2ee_model_key_mismatch"));
refusals.push(await refused(fresh(), (r) => { r.headers["x-e2ee-timestamp"] = String(Math.floor(Date.now() / 1000) - 3600); }, "e2ee_invalid_timestamp"));
refusals.push(await refused(fresh(), (r) => { [r.body.messages[0].content, r.body.messages[1].content] = [r.body.messages[1].content, r.body.messages[0].content]; }, "e2ee_decryption_failed"));
refusals.push(await refused(fresh(), (r) => { delete r.headers["x-e2ee-nonce"]; }, "e2ee_header_missing"));
refusals.push(await refused(fresh(), (r) => { r.headers["x-client-pub-key"] = "abcd"; }, "e2ee_invalid_public_key"));
console.log(JSON.stringify({ tee_type: id.teeType, whole: whole.text, streamed: streamed.text, receipts: [whole.receipt, streamed.receipt], refusals }));
