// ACI in the browser, with WebCrypto alone: the page checks this client's
// attestation report against its own fresh nonce, encrypts each message to
// the attested E2EE key (E2EE v2: X25519, HKDF-SHA256, AES-256-GCM, the
// field path and request bound in the associated data), opens the answer's
// fields, and verifies the signed ACI receipt over the exact bytes sent
// and received. Every binding the page can compute it recomputes (the
// keyset's digest, the nonce in the report data, the receipt's signature
// and hashes); the quote's own signature is for a verifier that knows the
// TEE (`cocoon attest verify`, or any ACI verifier), not for this page.
"use strict";

const Aci = (() => {
  const enc = new TextEncoder();
  const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const unhex = (s) => new Uint8Array(s.match(/../g).map((h) => parseInt(h, 16)));
  const sha256 = async (bytes) => hex(await crypto.subtle.digest("SHA-256", typeof bytes === "string" ? enc.encode(bytes) : bytes));
  const SUITE = "x25519-aes-256-gcm-hkdf-sha256";

  /** RFC 8785 for ACI's documents (integers only): sorted UTF-16 names. */
  function jcs(v) {
    if (v === null || typeof v !== "object") return JSON.stringify(v);
    if (Array.isArray(v)) return "[" + v.map(jcs).join(",") + "]";
    return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + jcs(v[k])).join(",") + "}";
  }

  /** The report, checked: the keyset's digest, our nonce bound into the
   * report data, the evidence's report-data slot, expiry, an X25519 key. */
  async function establish() {
    const nonce = hex(crypto.getRandomValues(new Uint8Array(32)));
    const r = await fetch(`/v1/aci/attestation?nonce=${nonce}`);
    if (!r.ok) throw new Error(`attestation report: HTTP ${r.status}`);
    const rep = await r.json();
    const ks = rep.attestation.workload_keyset;
    const digest = "sha256:" + (await sha256(jcs(ks)));
    const fail = (what) => { throw new Error(`the attestation report does not check out: ${what}`); };
    if (rep.api_version !== "aci/1") fail("api_version");
    if (digest !== rep.workload_keyset_digest) fail("the keyset's digest");
    const statement = `{"keyset_digest":"${digest}","nonce":"${nonce}","purpose":"aci.report_data.v1"}`;
    if ((await sha256(statement)) !== rep.attestation.report_data) fail("the report data does not bind this page's nonce");
    const ev = rep.attestation.evidence || {};
    if (ev.report_data_slot !== rep.attestation.report_data + "0".repeat(64)) fail("the evidence's report-data slot");
    if (ev.quote && !ev.quote.includes(rep.attestation.report_data)) fail("the quote does not carry the report data");
    if (!(ks.not_after > Date.now() / 1000)) fail("the keyset expired");
    const key = ks.e2ee_public_keys.find((k) => k.algo === SUITE);
    if (!key) fail("no X25519 E2EE key");
    return { keyset: ks, digest, key, teeType: rep.attestation.tee_type, development: ev.development || null };
  }

  async function fieldKey(privateKey, publicRaw) {
    const pub = await crypto.subtle.importKey("raw", publicRaw, { name: "X25519" }, false, []);
    const shared = await crypto.subtle.deriveBits({ name: "X25519", public: pub }, privateKey, 256);
    const ikm = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
    return crypto.subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: enc.encode("aci.e2ee.v2.x25519") },
      ikm, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
  }

  async function seal(recipientHex, plaintext, aad) {
    const eph = await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const key = await fieldKey(eph.privateKey, unhex(recipientHex));
    const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: enc.encode(aad) }, key, enc.encode(plaintext));
    const ephRaw = new Uint8Array(await crypto.subtle.exportKey("raw", eph.publicKey));
    return hex(ephRaw) + hex(iv) + hex(ct);
  }

  async function open(privateKey, fieldHex, aad) {
    const b = unhex(fieldHex);
    const key = await fieldKey(privateKey, b.slice(0, 32));
    const pt = await crypto.subtle.decrypt({ name: "AES-GCM", iv: b.slice(32, 44), additionalData: enc.encode(aad) }, key, b.slice(44));
    return new TextDecoder().decode(pt);
  }

  /** An E2EE v2 request: headers and body with every message sealed, and
   * what opens its answer. */
  async function request(id, body) {
    const client = await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
    const base = { algo: id.key.algo, model: body.model, nonce: hex(crypto.getRandomValues(new Uint8Array(32))), ts: Math.floor(Date.now() / 1000) };
    const sealed = JSON.parse(JSON.stringify(body));
    for (const [i, m] of sealed.messages.entries()) {
      const plain = typeof m.content === "string" ? m.content : JSON.stringify(m.content);
      m.content = await seal(id.key.public_key, plain, jcs({ ...base, purpose: "aci.e2ee.request.v2", field: `messages.${i}.content` }));
    }
    const headers = {
      "X-E2EE-Version": "2",
      "X-Client-Pub-Key": hex(await crypto.subtle.exportKey("raw", client.publicKey)),
      "X-Model-Pub-Key": id.key.public_key,
      "X-E2EE-Nonce": base.nonce,
      "X-E2EE-Timestamp": String(base.ts),
    };
    /** Opens a chunk's (or a whole answer's) generated fields in place. */
    async function openFields(answer, member) {
      for (const [pos, ch] of (answer.choices || []).entries()) {
        const where = ch[member];
        if (!where) continue;
        for (const name of ["content", "reasoning", "reasoning_content"]) {
          if (typeof where[name] !== "string") continue;
          const field = `choices.${ch.index ?? pos}.${member}.${name}`;
          where[name] = await open(client.privateKey, where[name], jcs({ ...base, purpose: "aci.e2ee.response.v2", id: answer.id || "", field }));
        }
      }
      return answer;
    }
    return { headers, body: JSON.stringify(sealed), restored: JSON.stringify(body), openFields };
  }

  /** The ACI receipt of a response, verified: its Ed25519 signature under
   * the established keyset, the request and response hashes. */
  async function verifyReceipt(id, receiptId, restored, wire, authHeaders) {
    const r = await fetch(`/v1/aci/receipts/${encodeURIComponent(receiptId)}`, { headers: authHeaders });
    if (!r.ok) throw new Error(`receipt ${receiptId}: HTTP ${r.status}`);
    const doc = await r.json();
    const { signature, ...unsigned } = doc;
    const entry = id.keyset.receipt_signing_keys.find((k) => k.key_id === doc.key_id && k.algo === "ed25519");
    const checks = [];
    const check = (name, ok, detail) => checks.push({ name, ok: Boolean(ok), detail });
    check("keyset", doc.api_version === "aci/1" && doc.workload_keyset_digest === id.digest, `signed under ${short(doc.workload_keyset_digest)}`);
    let signed = false;
    if (entry) {
      const key = await crypto.subtle.importKey("raw", unhex(entry.public_key), { name: "Ed25519" }, false, ["verify"]);
      signed = await crypto.subtle.verify({ name: "Ed25519" }, key, unhex(signature), enc.encode(jcs(unsigned)));
    }
    check("signature", signed, `Ed25519, key ${doc.key_id}`);
    const ev = (t) => doc.event_log.find((e) => e.type === t) || {};
    check("request", ev("request.received").body_hash === "sha256:" + (await sha256(restored)), "the request this page sent, decrypted");
    check("response", ev("response.returned").body_hash === "sha256:" + (await sha256(wire)), "the exact bytes this page received");
    const up = ev("upstream.verified");
    check("worker", up.result === "verified", up.result === "verified" ? `attested session ${short(up.session_id)}` : up.reason);
    return { ok: checks.every((c) => c.ok), checks, receipt: doc };
  }

  const short = (s) => (s || "").replace("sha256:", "").slice(0, 12) + "…";
  return { establish, request, verifyReceipt, jcs };
})();
