// One table of voucher boundaries (vectors/voucher-boundaries.json),
// judged by a client contract here and by crates/pay in
// crates/pay/tests/boundaries.rs: the two must agree on every row, so a
// party never pays for a commit the contract refuses, nor skips one it
// would take. Vouchers are signed with @ton/crypto.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  RustVoucherSigner, world, openClient, clientData, send, body, assertSuccess, assertRefused,
  CONTRACTS_DIR, PROXY_SEED, toNano, OP,
} from './helpers.mjs';
import { keyPair, signedVoucher } from './independent.mjs';

const rust = new RustVoucherSigner();
after(() => rust.close());

const table = JSON.parse(readFileSync(join(CONTRACTS_DIR, 'vectors', 'voucher-boundaries.json'), 'utf-8'));
const PROXY = keyPair(PROXY_SEED);
const charge = (v) => body(OP.Charge, (b) => b.storeRef(v));

for (const row of table.rows) {
  test(`voucher boundary: ${row.name}`, async () => {
    const net = await world(rust);
    net.bc.now = table.now - 100;
    const owner = await net.bc.treasury('client-owner');
    const client = await openClient(net, owner, toNano('10'));
    const sign = ({ total, seqno, expires_at: expiresAt }) => signedVoucher({
      kind: 'client', contract: net.proxy, party: client, total: BigInt(total), seqno: BigInt(seqno), expiresAt,
    }, PROXY);
    const committed = { total: BigInt(row.committed.total), seqno: BigInt(row.committed.seqno) };
    if (committed.total > 0n) {
      const first = sign({ total: committed.total, seqno: committed.seqno, expires_at: table.now + 3600 });
      assertSuccess(await send(net, owner, client, charge(first)), client);
    }
    const before = await clientData(net.bc, client);
    assert.equal(before.committed, committed.total);
    assert.equal(before.lastSeqno, committed.seqno);
    net.bc.now = table.now;
    const r = await send(net, owner, client, charge(sign(row.voucher)));
    if (row.exit === 0) {
      assertSuccess(r, client);
      const after = await clientData(net.bc, client);
      assert.ok(after.committed > before.committed, 'the commit moved the total');
    } else {
      assertRefused(r, client, row.exit);
      assert.equal((await clientData(net.bc, client)).committed, committed.total);
    }
  });
}
