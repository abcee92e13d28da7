// The client contract: top-ups, withdrawals above the stake, charges by
// Rust-signed vouchers and every refusal, the close path, bounced charges.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  RustVoucherSigner, world, openClient, clientInit, clientData, proxyData, clientAddress,
  voucher, chargeBody, send, body, assertSuccess, assertRefused, txsOn, balance,
  OP, EXIT, STATE, GAS, RESERVE, OTHER_SEED, CODES, toNano, beginCell, contractAddress,
} from './helpers.mjs';

const signer = new RustVoucherSigner();
after(() => signer.close());

async function setup() {
  const net = await world(signer);
  const owner = await net.bc.treasury('client-owner');
  const client = await openClient(net, owner, toNano('5'));
  return { net, owner, client };
}

test('the proxy contract derives the same client address the owner deploys to', async () => {
  const { net, owner, client } = await setup();
  assert.ok((await clientAddress(net.bc, net.proxy, owner.address)).equals(client));
  const d = await clientData(net.bc, client);
  assert.equal(d.balance, toNano('5'));
  assert.equal(d.stake, net.terms.minClientStake);
  assert.equal(d.state, STATE.OPEN);
  assert.ok(d.owner.equals(owner.address));
  assert.ok(d.proxy.equals(net.proxy));
});

test('a top-up adds exactly its amount and returns the rest of the value', async () => {
  const { net, owner, client } = await setup();
  const friend = await net.bc.treasury('friend');
  const r = await send(net, friend, client, body(OP.TopUp, (b) => b.storeCoins(toNano('2'))), toNano('3'));
  assertSuccess(r, client);
  assert.equal((await clientData(net.bc, client)).balance, toNano('7'));
  const excess = txsOn(r, friend.address, OP.Excesses);
  assert.equal(excess.length, 1, 'the unspent value comes back as Excesses');
  assert.ok(excess[0].inMessage.info.value.coins > toNano('0.9'));
  assert.ok((await balance(net.bc, client)) >= toNano('7') + RESERVE.client);
});

test('a top-up that does not carry its amount is refused and nothing moves', async () => {
  const { net, owner, client } = await setup();
  const r = await send(net, owner, client, body(OP.TopUp, (b) => b.storeCoins(toNano('2'))), toNano('2'));
  assertRefused(r, client, EXIT.NOT_ENOUGH_VALUE);
  assert.equal((await clientData(net.bc, client)).balance, toNano('5'));
});

test('the owner withdraws down to the stake, not below', async () => {
  const { net, owner, client } = await setup();
  const before = await balance(net.bc, client);
  let r = await send(net, owner, client, body(OP.WithdrawBalance, (b) => b.storeCoins(toNano('4'))));
  assertSuccess(r, client);
  const paid = txsOn(r, owner.address, OP.Withdrawal);
  assert.equal(paid.length, 1);
  assert.ok(paid[0].inMessage.info.value.coins >= toNano('4'));
  assert.equal((await clientData(net.bc, client)).balance, toNano('1'));
  assert.ok(before - (await balance(net.bc, client)) >= toNano('4'));

  r = await send(net, owner, client, body(OP.WithdrawBalance, (b) => b.storeCoins(1n)));
  assertRefused(r, client, EXIT.STAKE_LOCKED);
  assert.equal((await clientData(net.bc, client)).balance, toNano('1'));
});

test('only the owner withdraws', async () => {
  const { net, client } = await setup();
  const thief = await net.bc.treasury('thief');
  const r = await send(net, thief, client, body(OP.WithdrawBalance, (b) => b.storeCoins(toNano('1'))));
  assertRefused(r, client, EXIT.NOT_OWNER);
  assert.equal((await clientData(net.bc, client)).balance, toNano('5'));
});

test('a voucher charges exactly its increase, which the proxy contract books as commission', async () => {
  const { net, client } = await setup();
  const proxyOwner = net.proxyOwner;
  let r = await send(net, proxyOwner, client, chargeBody(await voucher(net, 'client', client, 300_000_000n, 1)));
  assertSuccess(r, client);
  assertSuccess(r, net.proxy);
  let d = await clientData(net.bc, client);
  assert.equal(d.committed, 300_000_000n);
  assert.equal(d.balance, toNano('5') - 300_000_000n);
  assert.equal(d.lastSeqno, 1n);
  let p = await proxyData(net.bc, net.proxy);
  assert.equal(p.charged, 300_000_000n);
  assert.equal(p.commission, 300_000_000n);
  assert.equal(txsOn(r, proxyOwner.address, OP.Excesses).length, 1, 'the charge gas comes back to its sender');

  r = await send(net, proxyOwner, client, chargeBody(await voucher(net, 'client', client, 500_000_000n, 2)));
  assertSuccess(r, net.proxy);
  d = await clientData(net.bc, client);
  assert.equal(d.committed, 500_000_000n);
  p = await proxyData(net.bc, net.proxy);
  assert.equal(p.charged, 500_000_000n);
});

test('a replayed voucher is refused and no balance moves', async () => {
  const { net, client } = await setup();
  const v = await voucher(net, 'client', client, 300_000_000n, 1);
  assertSuccess(await send(net, net.proxyOwner, client, chargeBody(v)), net.proxy);
  const r = await send(net, net.proxyOwner, client, chargeBody(v));
  assertRefused(r, client, EXIT.VOUCHER_TOTAL);
  assert.equal((await clientData(net.bc, client)).committed, 300_000_000n);
  assert.equal((await proxyData(net.bc, net.proxy)).charged, 300_000_000n);
});

test('every bad voucher is refused with its own exit code', async () => {
  const { net, owner, client } = await setup();
  const other = await net.bc.treasury('other-client');
  const otherClient = await openClient(net, other, toNano('2'));
  const cases = [
    ['signed by another key', await voucher(net, 'client', client, 1000n, 1, { seed: OTHER_SEED }), EXIT.VOUCHER_SIGNATURE],
    ['a worker voucher', await voucher(net, 'worker', client, 1000n, 1), EXIT.VOUCHER_KIND],
    ['for another proxy contract', await voucher(net, 'client', client, 1000n, 1, { contract: owner.address }), EXIT.VOUCHER_CONTRACT],
    ['for another client', await voucher(net, 'client', otherClient, 1000n, 1), EXIT.VOUCHER_PARTY],
    ['with a zero total', await voucher(net, 'client', client, 0n, 1), EXIT.VOUCHER_TOTAL],
    ['expired', await voucher(net, 'client', client, 1000n, 1, { expiresAt: net.bc.now }), EXIT.VOUCHER_EXPIRED],
  ];
  for (const [what, v, code] of cases) {
    const r = await send(net, net.proxyOwner, client, chargeBody(v));
    assertRefused(r, client, code);
    const d = await clientData(net.bc, client);
    assert.equal(d.committed, 0n, `${what}: nothing committed`);
    assert.equal(d.balance, toNano('5'), `${what}: balance unchanged`);
  }
  assert.equal((await proxyData(net.bc, net.proxy)).charged, 0n);
});

test('a tampered voucher fails its signature', async () => {
  const { net, client } = await setup();
  const signed = await voucher(net, 'client', client, 1000n, 1);
  // Same signature, total raised: rebuild the voucher cell with 10^9.
  const s = signed.refs[0].beginParse();
  const tag = s.loadUint(32);
  const contract = s.loadAddress();
  const party = s.loadAddress();
  s.loadCoins();
  const seqno = s.loadUintBig(64);
  const expires = s.loadUint(32);
  const forged = beginCell()
    .storeUint(tag, 32).storeAddress(contract).storeAddress(party)
    .storeCoins(toNano('1')).storeUint(seqno, 64).storeUint(expires, 32).endCell();
  const tampered = beginCell().storeBits(signed.beginParse().loadBits(512)).storeRef(forged).endCell();
  const r = await send(net, net.proxyOwner, client, chargeBody(tampered));
  assertRefused(r, client, EXIT.VOUCHER_SIGNATURE);
});

test('an older voucher cannot follow a newer one', async () => {
  const { net, client } = await setup();
  assertSuccess(await send(net, net.proxyOwner, client, chargeBody(await voucher(net, 'client', client, 1000n, 5))), net.proxy);
  const r = await send(net, net.proxyOwner, client, chargeBody(await voucher(net, 'client', client, 2000n, 4)));
  assertRefused(r, client, EXIT.VOUCHER_SEQNO);
});

test('a charge above the balance takes what is there; the same voucher takes the rest after a top-up', async () => {
  const { net, owner, client } = await setup();
  const v = await voucher(net, 'client', client, toNano('7'), 1);
  assertSuccess(await send(net, net.proxyOwner, client, chargeBody(v)), net.proxy);
  let d = await clientData(net.bc, client);
  assert.equal(d.committed, toNano('5'));
  assert.equal(d.balance, 0n);

  let r = await send(net, net.proxyOwner, client, chargeBody(v));
  assertRefused(r, client, EXIT.INSUFFICIENT_FUNDS);

  assertSuccess(await send(net, owner, client, body(OP.TopUp, (b) => b.storeCoins(toNano('3'))), toNano('3') + GAS), client);
  assertSuccess(await send(net, net.proxyOwner, client, chargeBody(v)), net.proxy);
  d = await clientData(net.bc, client);
  assert.equal(d.committed, toNano('7'));
  assert.equal(d.balance, toNano('1'));
  assert.equal((await proxyData(net.bc, net.proxy)).charged, toNano('7'));
});

test('close: the proxy charges during the delay, then the rest goes to the owner', async () => {
  const { net, owner, client } = await setup();
  assertSuccess(await send(net, owner, client, body(OP.RequestClientClose)), client);
  let d = await clientData(net.bc, client);
  assert.equal(d.state, STATE.CLOSING);
  assert.equal(d.closeAt, net.bc.now + net.terms.clientCloseDelay);

  let r = await send(net, owner, client, body(OP.FinishClientClose));
  assertRefused(r, client, EXIT.TOO_EARLY);
  r = await send(net, owner, client, body(OP.WithdrawBalance, (b) => b.storeCoins(1n)));
  assertRefused(r, client, EXIT.WRONG_STATE);

  assertSuccess(await send(net, net.proxyOwner, client, chargeBody(await voucher(net, 'client', client, toNano('2'), 1))), net.proxy);

  net.bc.now += net.terms.clientCloseDelay;
  r = await send(net, net.proxyOwner, client, chargeBody(await voucher(net, 'client', client, toNano('3'), 2)));
  assertRefused(r, client, EXIT.CLOSE_DELAY_OVER);

  const stranger = await net.bc.treasury('stranger');
  r = await send(net, stranger, client, body(OP.FinishClientClose));
  assertSuccess(r, client);
  const refund = txsOn(r, owner.address, OP.Withdrawal);
  assert.equal(refund.length, 1, 'the rest goes to the owner, whoever finishes the close');
  assert.ok(refund[0].inMessage.info.value.coins >= toNano('3'));
  d = await clientData(net.bc, client);
  assert.equal(d.state, STATE.CLOSED);
  assert.equal(d.balance, 0n);
  assert.ok((await balance(net.bc, client)) <= RESERVE.client);

  r = await send(net, net.proxyOwner, client, chargeBody(await voucher(net, 'client', client, toNano('3'), 3)));
  assertRefused(r, client, EXIT.WRONG_STATE);
});

test('a top-up reopens a closed contract, which remembers its committed total', async () => {
  const { net, owner, client } = await setup();
  const v = await voucher(net, 'client', client, toNano('1'), 1);
  assertSuccess(await send(net, net.proxyOwner, client, chargeBody(v)), net.proxy);
  assertSuccess(await send(net, owner, client, body(OP.RequestClientClose)), client);
  net.bc.now += net.terms.clientCloseDelay;
  assertSuccess(await send(net, owner, client, body(OP.FinishClientClose)), client);
  assertSuccess(await send(net, owner, client, body(OP.TopUp, (b) => b.storeCoins(toNano('2'))), toNano('2') + GAS), client);
  const d = await clientData(net.bc, client);
  assert.equal(d.state, STATE.OPEN);
  assert.equal(d.committed, toNano('1'));
  const r = await send(net, net.proxyOwner, client, chargeBody(v));
  assertRefused(r, client, EXIT.VOUCHER_TOTAL);
});

test('only the owner asks to close, once', async () => {
  const { net, owner, client } = await setup();
  const thief = await net.bc.treasury('thief');
  assertRefused(await send(net, thief, client, body(OP.RequestClientClose)), client, EXIT.NOT_OWNER);
  assertSuccess(await send(net, owner, client, body(OP.RequestClientClose)), client);
  assertRefused(await send(net, owner, client, body(OP.RequestClientClose)), client, EXIT.WRONG_STATE);
  assertRefused(await send(net, owner, client, body(OP.TopUp, (b) => b.storeCoins(1n))), client, EXIT.WRONG_STATE);
});

test('a charge toward a missing proxy contract bounces and the balance is restored', async () => {
  const { net, owner } = await setup();
  // A client contract bound to a proxy contract that does not exist.
  const ghostProxy = contractAddress(0, { code: CODES.proxy, data: beginCell().storeUint(7, 8).endCell() });
  const client = await openClient(net, owner, toNano('5'), { proxy: ghostProxy });
  const v = await voucher(net, 'client', client, toNano('1'), 1, { contract: ghostProxy });
  const r = await send(net, net.proxyOwner, client, chargeBody(v));
  const d = await clientData(net.bc, client);
  assert.equal(d.committed, 0n, 'the bounce takes the committed total back down');
  assert.equal(d.balance, toNano('5'));
  assert.ok(txsOn(r, client).length >= 2, 'the charge and its bounce');
});

test('a client contract the proxy did not derive cannot book charges', async () => {
  const { net, owner } = await setup();
  // Same owner and proxy, but a key the proxy does not hold: another address.
  const client = await openClient(net, owner, toNano('5'), { proxyKey: await signer.key(OTHER_SEED) });
  const v = await voucher(net, 'client', client, toNano('1'), 1, { seed: OTHER_SEED });
  const r = await send(net, owner, client, chargeBody(v));
  assertRefused(r, net.proxy, EXIT.NOT_CLIENT_CONTRACT);
  const d = await clientData(net.bc, client);
  assert.equal(d.committed, 0n);
  assert.equal(d.balance, toNano('5'));
  assert.equal((await proxyData(net.bc, net.proxy)).charged, 0n);
});

test('an unknown op is refused; a stranger\'s plain transfer is kept, not credited', async () => {
  const { net, owner, client } = await setup();
  const r = await send(net, owner, client, body(0x12345678));
  assertRefused(r, client, EXIT.UNKNOWN_OP);
  const stranger = await net.bc.treasury('stranger');
  const plain = await stranger.send({ to: client, value: toNano('1'), bounce: true });
  assertSuccess(plain, client);
  assert.equal((await clientData(net.bc, client)).balance, toNano('5'));
});

// What a wallet app sends: a plain transfer, or one with a text comment.
// From the owner to an open contract it is a top-up of all but the gas
// (0.02 TON, the unspent part of it coming back); from the owner to a
// closing contract it is kept for the sweep.
test('the owner\'s plain transfer or comment tops an open contract up', async () => {
  const { net, owner, client } = await setup();
  const plain = await owner.send({ to: client, value: toNano('1'), bounce: true });
  assertSuccess(plain, client);
  assert.equal((await clientData(net.bc, client)).balance, toNano('5.98'));
  const back = plain.transactions.find((t) => t.inMessage?.info.dest?.equals?.(owner.address));
  assert.ok(back, 'the unspent gas comes back to the owner');
  const comment = beginCell().storeUint(0, 32).storeStringTail('top up').endCell();
  assertSuccess(await owner.send({ to: client, value: toNano('2'), bounce: true, body: comment }), client);
  assert.equal((await clientData(net.bc, client)).balance, toNano('7.96'));
  // Too little to pay for its own gas: kept, not credited.
  assertSuccess(await owner.send({ to: client, value: toNano('0.01'), bounce: true }), client);
  assert.equal((await clientData(net.bc, client)).balance, toNano('7.96'));
  // While closing, a top-up would dodge the close delay's purpose: kept.
  assertSuccess(await send(net, owner, client, body(OP.RequestClientClose)), client);
  assertSuccess(await owner.send({ to: client, value: toNano('1'), bounce: true }), client);
  assert.equal((await clientData(net.bc, client)).balance, toNano('7.96'));
});
