// Field ciphertexts for E2EE v2, made with Node's own crypto (OpenSSL) from
// the specification alone: an implementation independent of crates/aci.
// `node e2ee-vectors.mjs` prints the values tests/vectors.rs pins.
import crypto from "node:crypto";

const x25519Private = (seed) =>
  crypto.createPrivateKey({
    key: Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), seed]),
    format: "der",
    type: "pkcs8",
  });
const rawPublic = (priv) =>
  Buffer.from(crypto.createPublicKey(priv).export({ format: "jwk" }).x, "base64url");
const x25519Public = (raw) =>
  crypto.createPublicKey({
    key: Buffer.concat([Buffer.from("302a300506032b656e032100", "hex"), raw]),
    format: "der",
    type: "spki",
  });

function seal(recipientRaw, plaintext, aad, ephemeralSeed, iv) {
  const eph = x25519Private(ephemeralSeed);
  const shared = crypto.diffieHellman({ privateKey: eph, publicKey: x25519Public(recipientRaw) });
  const key = Buffer.from(crypto.hkdfSync("sha256", shared, Buffer.alloc(0), "aci.e2ee.v2.x25519", 32));
  const c = crypto.createCipheriv("aes-256-gcm", key, iv);
  c.setAAD(Buffer.from(aad));
  const body = Buffer.concat([c.update(Buffer.from(plaintext)), c.final()]);
  return Buffer.concat([rawPublic(eph), iv, body, c.getAuthTag()]).toString("hex");
}

const jcs = (o) =>
  "{" + Object.keys(o).sort().map((k) => JSON.stringify(k) + ":" + JSON.stringify(o[k])).join(",") + "}";
const base = {
  algo: "x25519-aes-256-gcm-hkdf-sha256",
  model: "demo-model",
  nonce: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
  ts: 1750000000,
};
const service = rawPublic(x25519Private(Buffer.alloc(32, 3)));
const client = rawPublic(x25519Private(Buffer.alloc(32, 4)));
const requestAad = jcs({ ...base, purpose: "aci.e2ee.request.v2", field: "messages.0.content" });
const responseAad = jcs({ ...base, purpose: "aci.e2ee.response.v2", id: "chatcmpl-123", field: "choices.0.message.content" });
console.log("service_public", service.toString("hex"));
console.log("client_public", client.toString("hex"));
console.log("request_field", seal(service, "hi", requestAad, Buffer.alloc(32, 5), Buffer.alloc(12, 6)));
console.log("response_field", seal(client, "Hello!", responseAad, Buffer.alloc(32, 7), Buffer.alloc(12, 8)));
