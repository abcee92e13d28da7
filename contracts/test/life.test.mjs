// A whole life of the network, end to end: deploy the root, register and
// stake a proxy, clients top up, the proxy's vouchers are charged, workers
// are paid, a client closes and gets the rest, the proxy closes. Checks
// the money flow (what clients were charged = what workers were paid + the
// proxy's commission) and the conservation of value to the nanoton from
// the sandbox's own transaction list, and reports the gas of every op.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  RustVoucherSigner, world, openClient, openWorker, clientData, workerData, proxyData,
  voucher, chargeBody, payoutBody, send, body, assertSuccess, txsOn, gasOf, balance, text,
  OP, STATE, GAS, DEFAULT_TERMS, toNano,
} from './helpers.mjs';

const ACCUSED_SEED = 'a1'.repeat(32);

/** Evidence that `worker` (whose receipt key is ACCUSED_SEED's) dissented on a request of `client`'s owner. */
function dissent(signer, net, worker, clientOwner) {
  const r = (seed, content) => ({ seed, request: '01'.repeat(32), content, model: '0a'.repeat(32), time: net.bc.now });
  return signer.evidence({
    worker, clientOwner, expiresAt: net.bc.now + 3600,
    accused: r(ACCUSED_SEED, 'd0'.repeat(32)), first: r('a2'.repeat(32), 'c0'.repeat(32)), second: r('a3'.repeat(32), 'c0'.repeat(32)),
  });
}

const signer = new RustVoucherSigner();
after(() => signer.close());

/** Messages a set of contracts received from outside, sent outside, and what fees took. */
function flows(results, contracts) {
  const inSet = (a) => a && contracts.some((c) => c.equals(a));
  const seen = new Set();
  const f = { in: 0n, out: 0n, fees: 0n, forward: 0n };
  for (const r of results) {
    for (const tx of r.transactions) {
      const id = tx.hash().toString('hex');
      if (seen.has(id)) continue;
      seen.add(id);
      const m = tx.inMessage;
      if (m?.info.type !== 'internal') continue;
      const { src, dest, value, forwardFee } = m.info;
      if (!inSet(src) && inSet(dest)) f.in += value.coins;
      if (inSet(src) && !inSet(dest)) f.out += value.coins;
      if (inSet(src)) f.forward += forwardFee;
      if (inSet(dest)) f.fees += tx.totalFees.coins;
    }
  }
  return f;
}

test('a whole life: money flows as the books say and no nanoton appears or vanishes', async () => {
  const gas = [];
  const note = (op, result, address, opcode) => gas.push({ op, ...gasOf(result, address, opcode) });

  const net = await world(signer, { stake: 0n });
  note('root: RegisterProxy', net.results[1], net.root, OP.RegisterProxy);
  note('proxy: DeployProxy', net.results[1], net.proxy, OP.DeployProxy);
  let r = await send(net, net.proxyOwner, net.proxy, body(OP.AddProxyStake, (b) => b.storeCoins(toNano('10'))), toNano('10') + GAS);
  assertSuccess(r, net.proxy);
  note('proxy: AddProxyStake', r, net.proxy, OP.AddProxyStake);

  r = await send(net, net.rootOwner, net.root, body(OP.SetImage, (b) => b.storeUint(1, 8).storeUint(7n, 256).storeBit(true)));
  note('root: SetImage', r, net.root, OP.SetImage);
  r = await send(net, net.rootOwner, net.root, body(OP.SetModel, (b) => b.storeUint(9n, 256).storeMaybeRef(text('SmolLM2-135M-Instruct'))));
  note('root: SetModel', r, net.root, OP.SetModel);

  // Clients and workers join.
  const alice = await net.bc.treasury('alice');
  const bob = await net.bc.treasury('bob');
  const w1 = await net.bc.treasury('worker-1');
  const w2 = await net.bc.treasury('worker-2');
  const a = await openClient(net, alice, toNano('5'));
  note('client: TopUp (deploy)', net.results.at(-1), a, OP.TopUp);
  const b = await openClient(net, bob, toNano('3'));
  const wa = await openWorker(net, w1);
  const wb = await openWorker(net, w2);
  r = await send(net, bob, b, body(OP.TopUp, (x) => x.storeCoins(toNano('1'))), toNano('1') + GAS);
  note('client: TopUp', r, b, OP.TopUp);

  // The proxy commits its vouchers.
  r = await send(net, net.proxyOwner, a, chargeBody(await voucher(net, 'client', a, toNano('2'), 1)));
  note('client: Charge', r, a, OP.Charge);
  note('proxy: ClientCharged', r, net.proxy, OP.ClientCharged);
  assertSuccess(await send(net, net.proxyOwner, a, chargeBody(await voucher(net, 'client', a, toNano('3.5'), 2))), net.proxy);
  assertSuccess(await send(net, net.proxyOwner, b, chargeBody(await voucher(net, 'client', b, toNano('1.2'), 1))), net.proxy);

  // Workers are paid.
  let workerPaid = 0n;
  const payout = async (owner, worker, total, seqno) => {
    const res = await send(net, owner, worker, payoutBody(await voucher(net, 'worker', worker, total, seqno)));
    assertSuccess(res, net.proxy);
    for (const tx of txsOn(res, owner.address, OP.WorkerPaid)) workerPaid += tx.inMessage.info.value.coins;
    return res;
  };
  r = await payout(w1, wa, toNano('2'), 1);
  note('worker: Payout', r, wa, OP.Payout);
  note('proxy: PayWorker', r, net.proxy, OP.PayWorker);
  note('worker: PayoutSettled', r, wa, OP.PayoutSettled);
  await payout(w1, wa, toNano('2.5'), 2);
  await payout(w2, wb, toNano('1'), 1);

  r = await send(net, net.proxyOwner, net.proxy, body(OP.WithdrawCommission, (x) => x.storeCoins(toNano('0.5'))));
  assertSuccess(r, net.proxy);
  note('proxy: WithdrawCommission', r, net.proxy, OP.WithdrawCommission);

  // The first worker is outvoted on a request of Bob's: the root's share
  // of its stake goes into Bob's contract.
  const accusedKey = await signer.key(ACCUSED_SEED);
  r = await send(net, w1, wa, body(OP.AddReceiptKey, (x) => x.storeUint(accusedKey, 256)));
  assertSuccess(r, wa);
  note('worker: AddReceiptKey', r, wa, OP.AddReceiptKey);
  const bobBefore = (await clientData(net.bc, b)).balance;
  const evidence = await dissent(signer, net, wa, bob.address);
  r = await send(net, net.proxyOwner, wa, body(OP.Slash, (x) => x.storeRef(evidence)));
  assertSuccess(r, b);
  note('worker: Slash', r, wa, OP.Slash);
  note('proxy: ForwardSlash', r, net.proxy, OP.ForwardSlash);
  note('client: SlashRefund', r, b, OP.SlashRefund);
  const share = (net.terms.minWorkerStake * BigInt(DEFAULT_TERMS.slashShare)) / 10000n;
  assert.equal((await clientData(net.bc, b)).balance, bobBefore + share);

  // Bob takes back what is above his stake.
  r = await send(net, bob, b, body(OP.WithdrawBalance, (x) => x.storeCoins(toNano('1.8'))));
  assertSuccess(r, b);
  note('client: WithdrawBalance', r, b, OP.WithdrawBalance);

  // Alice closes; the proxy commits its last voucher within the delay.
  r = await send(net, alice, a, body(OP.RequestClientClose));
  note('client: RequestClientClose', r, a, OP.RequestClientClose);
  assertSuccess(await send(net, net.proxyOwner, a, chargeBody(await voucher(net, 'client', a, toNano('4'), 3))), net.proxy);
  net.bc.now += net.terms.clientCloseDelay;
  r = await send(net, alice, a, body(OP.FinishClientClose));
  assertSuccess(r, a);
  note('client: FinishClientClose', r, a, OP.FinishClientClose);
  assert.equal((await clientData(net.bc, a)).state, STATE.CLOSED);

  // The proxy closes; a worker claims within the delay.
  r = await send(net, net.proxyOwner, net.proxy, body(OP.RequestProxyClose));
  note('proxy: RequestProxyClose', r, net.proxy, OP.RequestProxyClose);
  await payout(w2, wb, toNano('1.5'), 2);
  const beforeClose = await proxyData(net.bc, net.proxy);
  net.bc.now += net.terms.proxyCloseDelay;
  r = await send(net, net.proxyOwner, net.proxy, body(OP.FinishProxyClose));
  assertSuccess(r, net.proxy);
  note('proxy: FinishProxyClose', r, net.proxy, OP.FinishProxyClose);

  // The money flow, from the contracts' books.
  const charged = (await clientData(net.bc, a)).committed + (await clientData(net.bc, b)).committed;
  const paid = (await workerData(net.bc, wa)).committed + (await workerData(net.bc, wb)).committed;
  assert.equal(charged, toNano('5.2'));
  assert.equal(paid, toNano('4'));
  assert.equal(beforeClose.charged, charged, 'the proxy booked every client charge');
  assert.equal(beforeClose.paid, paid, 'the proxy paid every worker claim');
  assert.equal(workerPaid, paid, 'the workers\' owners received exactly their vouchers\' totals');
  const commission = charged - paid;
  assert.equal(
    beforeClose.commission + beforeClose.stake,
    toNano('10') + commission - toNano('0.5'),
    'stake + commission = stake put in + (charges - payouts) - commission withdrawn',
  );

  // Conservation: value in = value out + fees + what the contracts still hold.
  const contracts = [net.root, net.proxy, a, b, wa, wb];
  const f = flows(net.results, contracts);
  let held = 0n;
  for (const c of contracts) held += await balance(net.bc, c);
  assert.equal(f.in, f.out + f.fees + f.forward + held, 'to the nanoton');

  console.log('\n| op | gas | fees, nanoton |\n|---|---|---|');
  for (const g of gas) console.log(`| ${g.op} | ${g.gas} | ${g.fees} |`);
});

test('the least value of each op covers what the op actually costs', async () => {
  // A charge is the costliest chain (signature check, address derivation,
  // two transactions and a reply); it must fit GAS_CHAINED with room for a bounce.
  const net = await world(signer);
  const owner = await net.bc.treasury('client-owner');
  const client = await openClient(net, owner, toNano('5'));
  const r = await send(net, net.proxyOwner, client, chargeBody(await voucher(net, 'client', client, toNano('1'), 1)), toNano('0.05'));
  assertSuccess(r, client);
  assertSuccess(r, net.proxy);
  const fees = txsOn(r, client).concat(txsOn(r, net.proxy)).reduce((s, tx) => s + tx.totalFees.coins, 0n);
  assert.ok(fees * 3n < toNano('0.05'), `a charge costs ${fees} nanoton, a third of the least value at most`);
  // A payout is three transactions (worker, proxy, worker again), a slash
  // three too (worker, proxy, client): each fits its least value.
  const workerOwner = await net.bc.treasury('worker-owner');
  const worker = await openWorker(net, workerOwner, { stake: toNano('2') });
  const p = await send(net, workerOwner, worker, payoutBody(await voucher(net, 'worker', worker, toNano('1'), 1)), toNano('0.05'));
  assertSuccess(p, worker);
  assert.equal(txsOn(p, workerOwner.address, OP.WorkerPaid).length, 1);
  const key = await signer.key(ACCUSED_SEED);
  assertSuccess(await send(net, workerOwner, worker, body(OP.AddReceiptKey, (x) => x.storeUint(key, 256)), toNano('0.02')), worker);
  const evidence = await dissent(signer, net, worker, owner.address);
  const s = await send(net, net.proxyOwner, worker, body(OP.Slash, (x) => x.storeRef(evidence)), toNano('0.05'));
  assertSuccess(s, client);
  const slashFees = [worker, net.proxy, client].flatMap((a) => txsOn(s, a)).reduce((sum, tx) => sum + tx.totalFees.coins, 0n);
  assert.ok(slashFees * 2n < toNano('0.05'), `a slash costs ${slashFees} nanoton, half of the least value at most`);
});
