// The worker contract: payouts by Rust-signed worker vouchers, every
// refusal, a payout the proxy cannot cover (bounced, then paid later).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  RustVoucherSigner, world, openWorker, openClient, workerData, proxyData, workerAddress,
  voucher, payoutBody, chargeBody, send, body, assertSuccess, assertRefused, txsOn, balance,
  OP, EXIT, OTHER_SEED, RESERVE, toNano,
} from './helpers.mjs';

const signer = new RustVoucherSigner();
after(() => signer.close());

async function setup(opts) {
  const net = await world(signer, opts);
  const owner = await net.bc.treasury('worker-owner');
  const worker = await openWorker(net, owner);
  return { net, owner, worker };
}

function paidTo(result, owner) {
  const txs = txsOn(result, owner, OP.WorkerPaid);
  assert.equal(txs.length, 1, 'one WorkerPaid to the owner');
  const s = txs[0].inMessage.body.beginParse();
  s.skip(32 + 64);
  return { value: txs[0].inMessage.info.value.coins, amount: s.loadCoins() };
}

test('the proxy contract derives the same worker address the owner deploys to', async () => {
  const { net, owner, worker } = await setup();
  assert.ok((await workerAddress(net.bc, net.proxy, owner.address)).equals(worker));
  const d = await workerData(net.bc, worker);
  assert.equal(d.committed, 0n);
  assert.equal(d.proxyKey, net.proxyKey);
});

test('a payout pays exactly the increase to the owner, whoever submits it', async () => {
  const { net, owner, worker } = await setup();
  const relayer = await net.bc.treasury('relayer');
  let r = await send(net, relayer, worker, payoutBody(await voucher(net, 'worker', worker, toNano('2'), 1)));
  assertSuccess(r, worker);
  assertSuccess(r, net.proxy);
  let paid = paidTo(r, owner.address);
  assert.equal(paid.amount, toNano('2'));
  assert.equal(paid.value, toNano('2'), 'the payment carries exactly the amount');
  assert.equal(txsOn(r, relayer.address, OP.Excesses).length, 1, 'the gas comes back to the submitter');

  r = await send(net, owner, worker, payoutBody(await voucher(net, 'worker', worker, toNano('3'), 2)));
  paid = paidTo(r, owner.address);
  assert.equal(paid.amount, toNano('1'));
  const d = await workerData(net.bc, worker);
  assert.equal(d.committed, toNano('3'));
  assert.equal(d.lastSeqno, 2n);
  const p = await proxyData(net.bc, net.proxy);
  assert.equal(p.paid, toNano('3'));
  assert.equal(p.stake, toNano('7'), 'with no commission yet, the stake backs the payout');
});

test('commission pays workers before the stake does', async () => {
  const { net, owner, worker } = await setup();
  const clientOwner = await net.bc.treasury('client-owner');
  const client = await openClient(net, clientOwner, toNano('5'));
  assertSuccess(await send(net, net.proxyOwner, client, chargeBody(await voucher(net, 'client', client, toNano('4'), 1))), net.proxy);
  const r = await send(net, owner, worker, payoutBody(await voucher(net, 'worker', worker, toNano('3'), 1)));
  assertSuccess(r, net.proxy);
  const p = await proxyData(net.bc, net.proxy);
  assert.equal(p.commission, toNano('1'));
  assert.equal(p.stake, toNano('10'));
});

test('every bad voucher is refused with its own exit code, and nothing is paid', async () => {
  const { net, owner, worker } = await setup();
  const otherOwner = await net.bc.treasury('other-worker');
  const otherWorker = await openWorker(net, otherOwner);
  const cases = [
    ['signed by another key', await voucher(net, 'worker', worker, 1000n, 1, { seed: OTHER_SEED }), EXIT.VOUCHER_SIGNATURE],
    ['a client voucher', await voucher(net, 'client', worker, 1000n, 1), EXIT.VOUCHER_KIND],
    ['for another proxy contract', await voucher(net, 'worker', worker, 1000n, 1, { contract: owner.address }), EXIT.VOUCHER_CONTRACT],
    ['for another worker', await voucher(net, 'worker', otherWorker, 1000n, 1), EXIT.VOUCHER_PARTY],
    ['with a zero total', await voucher(net, 'worker', worker, 0n, 1), EXIT.VOUCHER_TOTAL],
    ['expired', await voucher(net, 'worker', worker, 1000n, 1, { expiresAt: net.bc.now - 1 }), EXIT.VOUCHER_EXPIRED],
  ];
  for (const [what, v, code] of cases) {
    const r = await send(net, owner, worker, payoutBody(v));
    assertRefused(r, worker, code);
    assert.equal(txsOn(r, owner.address, OP.WorkerPaid).length, 0, `${what}: nothing paid`);
  }
  assert.equal((await workerData(net.bc, worker)).committed, 0n);
  assert.equal((await proxyData(net.bc, net.proxy)).paid, 0n);
});

test('a replayed or older worker voucher is refused', async () => {
  const { net, owner, worker } = await setup();
  const v = await voucher(net, 'worker', worker, 1000n, 3);
  assertSuccess(await send(net, owner, worker, payoutBody(v)), net.proxy);
  assertRefused(await send(net, owner, worker, payoutBody(v)), worker, EXIT.VOUCHER_TOTAL);
  assertRefused(await send(net, owner, worker, payoutBody(await voucher(net, 'worker', worker, 2000n, 2))), worker, EXIT.VOUCHER_SEQNO);
  assert.equal((await proxyData(net.bc, net.proxy)).paid, 1000n);
});

test('a payout the proxy cannot cover pays what it holds; the same voucher pays the rest once it can', async () => {
  const { net, owner, worker } = await setup({ stake: toNano('1') });
  const v = await voucher(net, 'worker', worker, toNano('3'), 1);
  let r = await send(net, owner, worker, payoutBody(v));
  assertSuccess(r, net.proxy);
  assertSuccess(r, worker);
  assert.equal(paidTo(r, owner.address).amount, toNano('1'), 'all the proxy contract held');
  let d = await workerData(net.bc, worker);
  assert.equal(d.committed, toNano('1'));
  assert.equal(d.owed, toNano('2'));
  assert.equal(d.inFlight, 0n);
  let p = await proxyData(net.bc, net.proxy);
  assert.equal(p.owed, toNano('2'), 'the proxy contract books what it could not pay');
  assert.equal(p.stake, 0n);

  assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.AddProxyStake, (b) => b.storeCoins(toNano('5'))), toNano('5.1')), net.proxy);
  r = await send(net, owner, worker, payoutBody(v));
  assert.equal(paidTo(r, owner.address).amount, toNano('2'));
  d = await workerData(net.bc, worker);
  assert.equal(d.committed, toNano('3'));
  assert.equal(d.owed, 0n);
  p = await proxyData(net.bc, net.proxy);
  assert.equal(p.owed, 0n);
  assert.equal(p.paid, toNano('3'));
  assertRefused(await send(net, owner, worker, payoutBody(v)), worker, EXIT.VOUCHER_TOTAL);
});

test('a worker contract the proxy did not derive cannot be paid', async () => {
  const { net, owner } = await setup();
  const forged = await openWorker(net, owner, { proxyKey: await signer.key(OTHER_SEED) });
  const r = await send(net, owner, forged, payoutBody(await voucher(net, 'worker', forged, toNano('1'), 1, { seed: OTHER_SEED })));
  assertRefused(r, net.proxy, EXIT.NOT_WORKER_CONTRACT);
  assert.equal((await workerData(net.bc, forged)).committed, 0n);
  assert.equal((await proxyData(net.bc, net.proxy)).stake, toNano('10'));
});

test('only the owner reclaims what a worker contract holds beyond its reserve', async () => {
  const { net, owner, worker } = await setup();
  await owner.send({ to: worker, value: toNano('2'), bounce: true });
  const thief = await net.bc.treasury('thief');
  assertRefused(await send(net, thief, worker, body(OP.ReclaimWorker)), worker, EXIT.NOT_OWNER);
  const r = await send(net, owner, worker, body(OP.ReclaimWorker));
  assertSuccess(r, worker);
  assert.ok(txsOn(r, owner.address, OP.Withdrawal)[0].inMessage.info.value.coins > toNano('2'));
  const left = await balance(net.bc, worker);
  assert.ok(left <= RESERVE.worker + net.terms.minWorkerStake, 'only the reserve and the stake stay');
  assert.ok(left >= net.terms.minWorkerStake, 'a reclaim never takes the stake');
});
