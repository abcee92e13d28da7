// A second, independent implementation of what the contracts take from
// outside: vouchers, receipt facts, receipts and slash evidence, built
// from contracts/README.md's TL-B with @ton/core and signed with
// @ton/crypto's Ed25519. It shares no code with crates/pay or
// crates/receipt, so a bug the Rust signer and the contracts share
// cannot hide behind it. The attack tests sign with it.

import { keyPairFromSeed, sign } from '@ton/crypto';
import { beginCell } from '@ton/core';

const TAG = {
  clientVoucher: 0x55f2abf7,
  workerVoucher: 0xecd0a149,
  facts: 0x52435402,
  factsBeforeV4: 0x52435401,
  evidence: 0x5e1a5402,
  evidenceBeforeAudit: 0x5e1a5401,
};

/** An Ed25519 key pair from a 32-byte hex seed. */
export function keyPair(seedHex) {
  const kp = keyPairFromSeed(Buffer.from(seedHex, 'hex'));
  return { ...kp, key: BigInt('0x' + kp.publicKey.toString('hex')) };
}

/**
 * The signature R = identity, S = 0: under a public key of small order
 * (the identity, 0x01 followed by 31 zero bytes, say) it verifies over any
 * message with a cofactorless verifier.
 */
export const IDENTITY_SIGNATURE = Buffer.concat([Buffer.from([1]), Buffer.alloc(63)]);

/** The public key that encodes the identity point. */
export const IDENTITY_KEY = BigInt('0x01' + '00'.repeat(31));

/**
 * The fourteen encodings of points of small order libsodium blocks, as
 * big-endian integers of their 32 bytes: seven y-coordinates, each with
 * either sign bit (the top bit of the last byte).
 */
export const SMALL_ORDER_KEYS = [
  '00'.repeat(32),
  '01' + '00'.repeat(31),
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'ec' + 'ff'.repeat(30) + '7f',
  'ed' + 'ff'.repeat(30) + '7f',
  'ee' + 'ff'.repeat(30) + '7f',
].flatMap((hex) => {
  const y = BigInt('0x' + hex);
  return [y, y | 0x80n];
});

function signatureOf(cell, signer) {
  return signer === 'identity' ? IDENTITY_SIGNATURE : sign(cell.hash(), signer.secretKey);
}

/** A `signed_voucher` cell; `signer` is a key pair or 'identity'. */
export function signedVoucher({ kind, contract, party, total, seqno, expiresAt }, signer) {
  const voucher = beginCell()
    .storeUint(kind === 'client' ? TAG.clientVoucher : TAG.workerVoucher, 32)
    .storeAddress(contract)
    .storeAddress(party)
    .storeCoins(total)
    .storeUint(seqno, 64)
    .storeUint(expiresAt, 32)
    .endCell();
  return beginCell().storeBuffer(signatureOf(voucher, signer)).storeRef(voucher).endCell();
}

const BODY = beginCell().storeUint(0xabn, 256).endCell();

/**
 * A `signed_receipt` of facts (request, content, model: bigints; time: a
 * UNIX time, or null for the facts receipts had before version 4), signed
 * alone by `signer`.
 */
export function signedReceipt({ request, content, model, time = null }, signer) {
  const b = beginCell()
    .storeUint(time === null ? TAG.factsBeforeV4 : TAG.facts, 32)
    .storeUint(request, 256)
    .storeUint(content, 256)
    .storeUint(model, 256);
  if (time !== null) b.storeUint(time, 32);
  const facts = b.storeRef(BODY).endCell();
  const key = signer === 'identity' ? IDENTITY_KEY : signer.key;
  return beginCell()
    .storeUint(key, 256)
    .storeBuffer(signatureOf(facts, signer))
    .storeRef(facts)
    .storeBit(false)
    .endCell();
}

/** A `signed_evidence` cell of today's layout, signed by `signer`. */
export function signedEvidence({ worker, clientOwner, expiresAt, accused, first, second }, signer) {
  const evidence = beginCell()
    .storeUint(TAG.evidence, 32)
    .storeAddress(worker)
    .storeAddress(clientOwner)
    .storeUint(expiresAt, 32)
    .storeRef(accused)
    .storeRef(first)
    .storeRef(second)
    .endCell();
  return beginCell().storeBuffer(signatureOf(evidence, signer)).storeRef(evidence).endCell();
}

/**
 * Slash evidence in the layout the contracts took before this audit: any
 * payee, any amount, and receipts without a time.
 */
export function signedEvidenceBeforeAudit({ worker, client, amount, expiresAt, accused, first, second }, signer) {
  const evidence = beginCell()
    .storeUint(TAG.evidenceBeforeAudit, 32)
    .storeAddress(worker)
    .storeAddress(client)
    .storeCoins(amount)
    .storeUint(expiresAt, 32)
    .storeRef(accused)
    .storeRef(first)
    .storeRef(second)
    .endCell();
  return beginCell().storeBuffer(signatureOf(evidence, signer)).storeRef(evidence).endCell();
}
