// The proxy contract: stake, commission, the delayed close, and who may
// send what.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  RustVoucherSigner, world, openClient, openWorker, proxyData, clientData, voucher, chargeBody, payoutBody,
  send, body, assertSuccess, assertRefused, txsOn, balance, get,
  OP, EXIT, STATE, GAS, RESERVE, toNano,
} from './helpers.mjs';

const signer = new RustVoucherSigner();
after(() => signer.close());

test('a registered proxy contract knows its root, owner, key and terms', async () => {
  const net = await world(signer);
  const p = await proxyData(net.bc, net.proxy);
  assert.ok(p.root.equals(net.root));
  assert.ok(p.owner.equals(net.proxyOwner.address));
  assert.equal(p.key, net.proxyKey);
  assert.equal(p.stake, toNano('10'));
  assert.equal(p.state, STATE.OPEN);
  const t = await get(net.bc, net.proxy, 'get_proxy_terms');
  assert.equal(t.readNumber(), net.terms.proxyCloseDelay);
  assert.equal(t.readNumber(), net.terms.clientCloseDelay);
  assert.equal(t.readBigNumber(), net.terms.minClientStake);
  assert.equal(t.readBigNumber(), net.terms.minWorkerStake);
  assert.equal(t.readBigNumber(), net.terms.minProxyStake);
  assert.equal(t.readNumber(), net.terms.slashShare);
});

test('only the owner stakes, and a stake must carry its amount', async () => {
  const net = await world(signer);
  const stranger = await net.bc.treasury('stranger');
  assertRefused(await send(net, stranger, net.proxy, body(OP.AddProxyStake, (b) => b.storeCoins(1n))), net.proxy, EXIT.NOT_OWNER);
  assertRefused(await send(net, net.proxyOwner, net.proxy, body(OP.AddProxyStake, (b) => b.storeCoins(toNano('5'))), toNano('5')), net.proxy, EXIT.NOT_ENOUGH_VALUE);
  assertRefused(await send(net, net.proxyOwner, net.proxy, body(OP.AddProxyStake, (b) => b.storeCoins(0n))), net.proxy, EXIT.ZERO_AMOUNT);
  assert.equal((await proxyData(net.bc, net.proxy)).stake, toNano('10'));
});

test('the owner withdraws commission, not more', async () => {
  const net = await world(signer);
  const clientOwner = await net.bc.treasury('client-owner');
  const client = await openClient(net, clientOwner, toNano('5'));
  assertSuccess(await send(net, net.proxyOwner, client, chargeBody(await voucher(net, 'client', client, toNano('2'), 1))), net.proxy);

  assertRefused(await send(net, net.proxyOwner, net.proxy, body(OP.WithdrawCommission, (b) => b.storeCoins(toNano('2') + 1n))), net.proxy, EXIT.INSUFFICIENT_FUNDS);
  const stranger = await net.bc.treasury('stranger');
  assertRefused(await send(net, stranger, net.proxy, body(OP.WithdrawCommission, (b) => b.storeCoins(1n))), net.proxy, EXIT.NOT_OWNER);

  const r = await send(net, net.proxyOwner, net.proxy, body(OP.WithdrawCommission, (b) => b.storeCoins(toNano('1.5'))));
  assertSuccess(r, net.proxy);
  assert.ok(txsOn(r, net.proxyOwner.address, OP.Withdrawal)[0].inMessage.info.value.coins >= toNano('1.5'));
  const p = await proxyData(net.bc, net.proxy);
  assert.equal(p.commission, toNano('0.5'));
  assert.equal(p.stake, toNano('10'));
});

test('close: workers are paid during the delay, then stake and commission go to the owner', async () => {
  const net = await world(signer);
  const workerOwner = await net.bc.treasury('worker-owner');
  const worker = await openWorker(net, workerOwner);
  const stranger = await net.bc.treasury('stranger');

  assertRefused(await send(net, stranger, net.proxy, body(OP.RequestProxyClose)), net.proxy, EXIT.NOT_OWNER);
  assertRefused(await send(net, net.proxyOwner, net.proxy, body(OP.FinishProxyClose)), net.proxy, EXIT.WRONG_STATE);
  assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.RequestProxyClose)), net.proxy);
  let p = await proxyData(net.bc, net.proxy);
  assert.equal(p.state, STATE.CLOSING);
  assert.equal(p.closeAt, net.bc.now + net.terms.proxyCloseDelay);
  assertRefused(await send(net, net.proxyOwner, net.proxy, body(OP.AddProxyStake, (b) => b.storeCoins(1n))), net.proxy, EXIT.WRONG_STATE);
  assertRefused(await send(net, net.proxyOwner, net.proxy, body(OP.FinishProxyClose)), net.proxy, EXIT.TOO_EARLY);

  const paid = await send(net, workerOwner, worker, payoutBody(await voucher(net, 'worker', worker, toNano('1'), 1)));
  assert.equal(txsOn(paid, workerOwner.address, OP.WorkerPaid).length, 1);

  net.bc.now += net.terms.proxyCloseDelay;
  const r = await send(net, stranger, net.proxy, body(OP.FinishProxyClose));
  assertSuccess(r, net.proxy);
  const refund = txsOn(r, net.proxyOwner.address, OP.Withdrawal);
  assert.equal(refund.length, 1);
  assert.ok(refund[0].inMessage.info.value.coins >= toNano('9'));
  p = await proxyData(net.bc, net.proxy);
  assert.equal(p.state, STATE.CLOSED);
  assert.equal(p.stake, 0n);
  assert.ok((await balance(net.bc, net.proxy)) <= RESERVE.proxy);
});

test('a closed proxy contract, its stake gone, books no charge: the charge bounces into the client\'s balance', async () => {
  const net = await world(signer);
  const clientOwner = await net.bc.treasury('client-owner');
  const client = await openClient(net, clientOwner, toNano('5'));
  assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.RequestProxyClose)), net.proxy);
  net.bc.now += net.terms.proxyCloseDelay;
  assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.FinishProxyClose)), net.proxy);

  const r = await send(net, net.proxyOwner, client, chargeBody(await voucher(net, 'client', client, toNano('2'), 1)));
  assertRefused(r, net.proxy, EXIT.PROXY_STAKE_BELOW_MINIMUM);
  const c = await clientData(net.bc, client);
  assert.equal(c.balance, toNano('5'), 'the bounce restores the balance');
  assert.equal(c.committed, 0n);
  assert.equal((await proxyData(net.bc, net.proxy)).charged, 0n);
  assertRefused(await send(net, net.proxyOwner, net.proxy, body(OP.WithdrawCommission, (b) => b.storeCoins(1n))), net.proxy, EXIT.WRONG_STATE);
});

test('a proxy contract below the root\'s minimum stake books no charge until it stakes it', async () => {
  const net = await world(signer, { stake: toNano('9') });
  const clientOwner = await net.bc.treasury('client-owner');
  const client = await openClient(net, clientOwner, toNano('5'));
  const v = await voucher(net, 'client', client, toNano('2'), 1);
  assertRefused(await send(net, net.proxyOwner, client, chargeBody(v)), net.proxy, EXIT.PROXY_STAKE_BELOW_MINIMUM);
  assert.equal((await clientData(net.bc, client)).balance, toNano('5'));
  assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.AddProxyStake, (b) => b.storeCoins(toNano('1'))), toNano('1') + GAS), net.proxy);
  assertSuccess(await send(net, net.proxyOwner, client, chargeBody(v)), net.proxy);
  assert.equal((await proxyData(net.bc, net.proxy)).charged, toNano('2'));
});

test('only client and worker contracts it derives may book charges or claim payouts', async () => {
  const net = await world(signer);
  const impostor = await net.bc.treasury('impostor');
  let r = await send(net, impostor, net.proxy, body(OP.ClientCharged, (b) =>
    b.storeCoins(toNano('1')).storeAddress(impostor.address).storeAddress(impostor.address)), toNano('1.1'));
  assertRefused(r, net.proxy, EXIT.NOT_CLIENT_CONTRACT);
  r = await send(net, impostor, net.proxy, body(OP.PayWorker, (b) =>
    b.storeCoins(toNano('1')).storeCoins(0).storeAddress(impostor.address).storeAddress(impostor.address)));
  assertRefused(r, net.proxy, EXIT.NOT_WORKER_CONTRACT);
  r = await send(net, impostor, net.proxy, body(OP.ForwardSlash, (b) =>
    b.storeCoins(toNano('1')).storeUint(1n, 256).storeAddress(impostor.address).storeAddress(impostor.address)), toNano('1.1'));
  assertRefused(r, net.proxy, EXIT.NOT_WORKER_CONTRACT);
  r = await send(net, impostor, net.proxy, body(OP.DeployProxy));
  assertRefused(r, net.proxy, EXIT.NOT_ROOT);
  const p = await proxyData(net.bc, net.proxy);
  assert.equal(p.charged, 0n);
  assert.equal(p.paid, 0n);
  assert.equal(p.stake, toNano('10'));
});

test('an unknown op is refused', async () => {
  const net = await world(signer);
  assertRefused(await send(net, net.proxyOwner, net.proxy, body(0x0badc0de)), net.proxy, EXIT.UNKNOWN_OP);
});

test('excess value comes back to whoever sent it', async () => {
  const net = await world(signer);
  const r = await send(net, net.proxyOwner, net.proxy, body(OP.AddProxyStake, (b) => b.storeCoins(toNano('1'))), toNano('3'));
  assertSuccess(r, net.proxy);
  const excess = txsOn(r, net.proxyOwner.address, OP.Excesses);
  assert.equal(excess.length, 1);
  assert.ok(excess[0].inMessage.info.value.coins > toNano('1.9'));
  assert.equal((await proxyData(net.bc, net.proxy)).stake, toNano('11'));
  assert.ok((await balance(net.bc, net.proxy)) >= toNano('11'));
  assert.ok((await balance(net.bc, net.proxy)) <= toNano('11') + RESERVE.proxy + GAS);
});
