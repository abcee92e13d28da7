// The stuck-funds search: every contract driven into each of its states,
// including after bounces and with the other party gone, and in each the
// owner gets the money back. A contract ends holding no more than its
// storage reserve.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  RustVoucherSigner, world, network, openClient, openWorker, clientData, workerData, proxyData,
  voucher, chargeBody, payoutBody, send, body, assertSuccess, assertRefused, txsOn, balance,
  OP, EXIT, STATE, CODES, RESERVE, slashableFor, toNano, beginCell, contractAddress,
} from './helpers.mjs';

const signer = new RustVoucherSigner();
after(() => signer.close());

/** What `owner` received as Withdrawal in `result`. */
function refunded(result, owner) {
  return txsOn(result, owner.address, OP.Withdrawal).reduce((s, tx) => s + tx.inMessage.info.value.coins, 0n);
}

async function emptied(net, address) {
  const most = [RESERVE.root, RESERVE.proxy, RESERVE.client, RESERVE.worker].reduce((a, b) => (a > b ? a : b));
  assert.ok((await balance(net.bc, address)) <= most, `${address} keeps only its storage reserve`);
}

async function closeClient(net, owner, client) {
  assertSuccess(await send(net, owner, client, body(OP.RequestClientClose)), client);
  net.bc.now += net.terms.clientCloseDelay;
  const r = await send(net, owner, client, body(OP.FinishClientClose));
  assertSuccess(r, client);
  return r;
}

test('client, open: the owner gets everything back through a close', async () => {
  const net = await world(signer);
  const owner = await net.bc.treasury('client-owner');
  const client = await openClient(net, owner, toNano('5'));
  const r = await closeClient(net, owner, client);
  assert.ok(refunded(r, owner) >= toNano('5'));
  await emptied(net, client);
});

test('client, proxy contract gone: the close needs no proxy', async () => {
  const net = await world(signer);
  const owner = await net.bc.treasury('client-owner');
  const ghost = contractAddress(0, { code: CODES.proxy, data: beginCell().storeUint(1, 8).endCell() });
  const client = await openClient(net, owner, toNano('5'), { proxy: ghost });
  // A charge toward the missing proxy bounces; the balance is whole again.
  await send(net, net.proxyOwner, client, chargeBody(await voucher(net, 'client', client, toNano('2'), 1, { contract: ghost })));
  assert.equal((await clientData(net.bc, client)).balance, toNano('5'));
  const r = await closeClient(net, owner, client);
  assert.ok(refunded(r, owner) >= toNano('5'));
  await emptied(net, client);
});

test('client, closed: a charge that bounces after the close and a plain transfer are swept to the owner', async () => {
  const net = await world(signer);
  const owner = await net.bc.treasury('client-owner');
  const ghost = contractAddress(0, { code: CODES.proxy, data: beginCell().storeUint(2, 8).endCell() });
  const client = await openClient(net, owner, toNano('5'), { proxy: ghost });
  await closeClient(net, owner, client);
  await owner.send({ to: client, value: toNano('1'), bounce: false });
  const r = await send(net, owner, client, body(OP.FinishClientClose));
  assertSuccess(r, client);
  assert.ok(refunded(r, owner) >= toNano('1'));
  await emptied(net, client);
  assert.equal((await clientData(net.bc, client)).state, STATE.CLOSED);
});

test('client, closing, with the proxy refusing its charges: the close still returns everything', async () => {
  const net = await world(signer);
  const owner = await net.bc.treasury('client-owner');
  const client = await openClient(net, owner, toNano('5'), { proxyKey: await signer.key('33'.repeat(32)) });
  assertSuccess(await send(net, owner, client, body(OP.RequestClientClose)), client);
  const r = await send(net, owner, client, chargeBody(await voucher(net, 'client', client, toNano('2'), 1, { seed: '33'.repeat(32) })));
  assertRefused(r, net.proxy, EXIT.NOT_CLIENT_CONTRACT);
  assert.equal((await clientData(net.bc, client)).balance, toNano('5'));
  net.bc.now += net.terms.clientCloseDelay;
  const done = await send(net, owner, client, body(OP.FinishClientClose));
  assert.ok(refunded(done, owner) >= toNano('5'));
  await emptied(net, client);
});

test('worker, proxy contract gone: payouts bounce, the committed total holds, the reserve and the stake are reclaimable', async () => {
  const net = await world(signer);
  const owner = await net.bc.treasury('worker-owner');
  const ghost = contractAddress(0, { code: CODES.proxy, data: beginCell().storeUint(3, 8).endCell() });
  const worker = await openWorker(net, owner, { proxy: ghost });
  await send(net, owner, worker, payoutBody(await voucher(net, 'worker', worker, toNano('1'), 1, { contract: ghost })));
  assert.equal((await workerData(net.bc, worker)).committed, 0n);
  await owner.send({ to: worker, value: toNano('1'), bounce: false });
  const r = await send(net, owner, worker, body(OP.ReclaimWorker));
  assert.ok(refunded(r, owner) >= toNano('1'));
  // The stake needs no proxy: ask, wait out the delay, take it.
  assertSuccess(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker);
  net.bc.now += slashableFor(net.terms);
  const w = await send(net, owner, worker, body(OP.WithdrawWorkerStake));
  assert.ok(refunded(w, owner) >= net.terms.minWorkerStake);
  await emptied(net, worker);
});

test('worker, proxy closed: a payout after the close is refused, and the stake and reserve still come home', async () => {
  const net = await world(signer, { stake: toNano('1') });
  const owner = await net.bc.treasury('worker-owner');
  const worker = await openWorker(net, owner);
  assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.RequestProxyClose)), net.proxy);
  net.bc.now += net.terms.proxyCloseDelay;
  assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.FinishProxyClose)), net.proxy);
  const r = await send(net, owner, worker, payoutBody(await voucher(net, 'worker', worker, toNano('1'), 1)));
  assertRefused(r, net.proxy, EXIT.WRONG_STATE);
  const d = await workerData(net.bc, worker);
  assert.equal(d.committed, 0n, 'nothing was paid, so nothing is committed');
  assert.equal(d.inFlight, 0n, 'the bounce ends the payout');
  assertSuccess(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker);
  net.bc.now += slashableFor(net.terms);
  const w = await send(net, owner, worker, body(OP.WithdrawWorkerStake));
  assert.ok(refunded(w, owner) >= net.terms.minWorkerStake);
  await emptied(net, worker);
});

test('proxy, open, closing and closed: stake, commission and strays all reach the owner', async () => {
  const net = await world(signer);
  const clientOwner = await net.bc.treasury('client-owner');
  const client = await openClient(net, clientOwner, toNano('5'));
  assertSuccess(await send(net, net.proxyOwner, client, chargeBody(await voucher(net, 'client', client, toNano('2'), 1))), net.proxy);
  // A plain transfer to the proxy contract while open.
  await clientOwner.send({ to: net.proxy, value: toNano('1'), bounce: false });

  assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.RequestProxyClose)), net.proxy);
  net.bc.now += net.terms.proxyCloseDelay;
  let r = await send(net, net.proxyOwner, net.proxy, body(OP.FinishProxyClose));
  assert.ok(refunded(r, net.proxyOwner) >= toNano('10') + toNano('2') + toNano('1'));
  await emptied(net, net.proxy);

  // Closed: a late charge bounces back to the client (no stake is at risk
  // any more); a stray transfer is swept again.
  assertRefused(await send(net, net.proxyOwner, client, chargeBody(await voucher(net, 'client', client, toNano('3'), 2))), net.proxy, EXIT.PROXY_STAKE_BELOW_MINIMUM);
  assert.equal((await clientData(net.bc, client)).balance, toNano('3'));
  await clientOwner.send({ to: net.proxy, value: toNano('1'), bounce: false });
  r = await send(net, net.proxyOwner, net.proxy, body(OP.FinishProxyClose));
  assertSuccess(r, net.proxy);
  assert.ok(refunded(r, net.proxyOwner) >= toNano('0.99'));
  await emptied(net, net.proxy);
  assert.equal((await proxyData(net.bc, net.proxy)).commission, 0n);
});

test('root: what it holds beyond its reserve goes to the owner', async () => {
  const net = await network();
  const r = await send(net, net.rootOwner, net.root, body(OP.WithdrawFromRoot));
  assert.ok(refunded(r, net.rootOwner) > 0n);
  await emptied(net, net.root);
});
