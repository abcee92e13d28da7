// A randomized walk over all four contracts: owners, strangers, plain
// transfers, bounces, slashes, the root's terms and prices (in and out of
// bounds) and time jumps, in an order a seeded random
// generator picks (COCOON_WALK_SEED, COCOON_WALK_STEPS to explore more).
// After every step the books must hold:
//
//   - every contract holds at least its books (coins >= what it owes);
//   - Σ client commits = the proxy's charged, Σ worker commits = its paid,
//     and what the proxy books as owed = Σ what its workers were not paid;
//   - Σ client charges = Σ worker payouts + commission, with the proxy's
//     stake and withdrawals: stake in + charged = paid + taken out + held;
//   - every client's balance and every worker's stake is what went in,
//     less what went out, to the nanoton;
//   - what workers were slashed arrived in client contracts.
//
// At the end every owner follows the documented path home, and every
// contract is left with no more than its storage reserve.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  RustVoucherSigner, world, openClient, openWorker, clientData, workerData, workerStake, proxyData,
  send, body, balance, txsOn, computeOf, toNano,
  OP, GAS, RESERVE, PROXY_SEED, DEFAULT_TERMS, DEFAULT_PRICES, WITHDRAW_WINDOW, slashableFor, storeTerms, storePrices,
} from './helpers.mjs';
import { keyPair, signedVoucher, signedReceipt, signedEvidence } from './independent.mjs';

const rust = new RustVoucherSigner();
after(() => rust.close());

const SEED = Number(process.env.COCOON_WALK_SEED ?? 20261207);
const STEPS = Number(process.env.COCOON_WALK_STEPS ?? 300);
const PROXY = keyPair(PROXY_SEED);
const HOUR = 3600;

/** mulberry32: a small seeded generator, so a failing walk can be replayed. */
function random(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    ton: (most) => BigInt(Math.floor(next() * most * 1000)) * 1_000_000n,
    chance: (p) => next() < p,
  };
}

/** Whether the transaction on `address` in `result` ran and committed. */
function ran(result, address, op) {
  const tx = txsOn(result, address, op)[0];
  if (!tx) return false;
  const c = computeOf(tx);
  return c !== null && c.exitCode === 0 && !tx.description.aborted;
}

/** Σ of an op's amount (its first Coins after op and query id) sent to `to`. */
function amountsTo(result, to, op) {
  return txsOn(result, to, op).reduce((sum, tx) => {
    const s = tx.inMessage.body.beginParse();
    s.skip(32 + 64);
    return sum + s.loadCoins();
  }, 0n);
}

test(`a random walk of ${STEPS} steps (seed ${SEED}) keeps every book`, async () => {
  const rnd = random(SEED);
  const terms = { ...DEFAULT_TERMS, minProxyStake: toNano('2'), proxyCloseDelay: 2 * 86400, clientCloseDelay: HOUR };
  const net = await world(rust, { terms, stake: toNano('5') });
  const stranger = await net.bc.treasury('stranger');

  const clients = [];
  for (const name of ['alice', 'bob']) {
    const owner = await net.bc.treasury(name);
    const address = await openClient(net, owner, toNano('5'));
    clients.push({ name, owner, address, total: 0n, seqno: 0n, toppedUp: toNano('5'), withdrawn: 0n, refunded: 0n });
  }
  const workers = [];
  for (const [i, name] of ['w1', 'w2'].entries()) {
    const owner = await net.bc.treasury(name);
    const address = await openWorker(net, owner, { stake: toNano('2') });
    const key = keyPair((0xb1 + i).toString(16).repeat(32));
    await send(net, owner, address, body(OP.AddReceiptKey, (b) => b.storeUint(key.key, 256)));
    workers.push({ name, owner, address, key, total: 0n, seqno: 0n, staked: toNano('2'), withdrawn: 0n, received: 0n, requests: 0n });
  }
  const proxy = { stakeIn: toNano('5'), takenOut: 0n };
  let step = 0;
  const witnesses = [keyPair('c1'.repeat(32)), keyPair('c2'.repeat(32))];

  const voucherFor = (kind, party, total, seqno) => signedVoucher({
    kind, contract: net.proxy, party, total, seqno, expiresAt: net.bc.now + HOUR,
  }, PROXY);
  const evidenceAgainst = (w) => {
    w.requests += 1n;
    const time = net.bc.now - rnd.int(60);
    const request = (0xabcn << 32n) | (BigInt(workers.indexOf(w)) << 24n) | w.requests;
    const r = (signer, content) => signedReceipt({ request, content, model: 7n, time }, signer);
    return signedEvidence({
      worker: w.address, clientOwner: rnd.pick(clients).owner.address, expiresAt: net.bc.now + HOUR,
      accused: r(w.key, 0xd0n), first: r(witnesses[0], 0xc0n), second: r(witnesses[1], 0xc0n),
    }, PROXY);
  };

  /** Records what a result moved that the books below must account for. */
  const account = (result) => {
    for (const c of clients) {
      c.refunded += amountsTo(result, c.address, OP.SlashRefund);
    }
    for (const w of workers) {
      w.received += amountsTo(result, w.owner.address, OP.WorkerPaid);
    }
  };

  const actions = [
    // Clients: top-ups, charges (sometimes a replay), withdrawals, closes.
    async () => {
      const c = rnd.pick(clients);
      const amount = rnd.ton(3) + 1n;
      const r = await send(net, c.owner, c.address, body(OP.TopUp, (b) => b.storeCoins(amount)), amount + GAS);
      if (ran(r, c.address)) c.toppedUp += amount;
      return r;
    },
    async () => {
      const c = rnd.pick(clients);
      if (!rnd.chance(0.2)) {
        c.total += rnd.ton(2) + 1n;
        c.seqno += 1n;
      }
      return send(net, rnd.pick([net.proxyOwner, c.owner, stranger]), c.address, body(OP.Charge, (b) => b.storeRef(voucherFor('client', c.address, c.total, c.seqno))));
    },
    async () => {
      const c = rnd.pick(clients);
      const amount = rnd.ton(4) + 1n;
      const r = await send(net, rnd.chance(0.8) ? c.owner : stranger, c.address, body(OP.WithdrawBalance, (b) => b.storeCoins(amount)));
      if (ran(r, c.address)) c.withdrawn += amount;
      return r;
    },
    async () => send(net, rnd.pick(clients).owner, rnd.pick(clients).address, body(OP.RequestClientClose)),
    async () => {
      const c = rnd.pick(clients);
      const before = (await clientData(net.bc, c.address)).balance;
      const r = await send(net, rnd.pick([c.owner, stranger]), c.address, body(OP.FinishClientClose));
      if (ran(r, c.address)) c.withdrawn += before;
      return r;
    },
    // Workers: payouts (often above what the proxy holds), stakes, keys.
    async () => {
      const w = rnd.pick(workers);
      if (!rnd.chance(0.2)) {
        w.total += rnd.ton(4) + 1n;
        w.seqno += 1n;
      }
      return send(net, rnd.pick([w.owner, stranger]), w.address, body(OP.Payout, (b) => b.storeRef(voucherFor('worker', w.address, w.total, w.seqno))));
    },
    async () => {
      const w = rnd.pick(workers);
      const amount = rnd.ton(2) + 1n;
      const r = await send(net, rnd.pick([w.owner, stranger]), w.address, body(OP.AddWorkerStake, (b) => b.storeCoins(amount)), amount + GAS);
      if (ran(r, w.address)) w.staked += amount;
      return r;
    },
    async () => send(net, rnd.pick(workers).owner, rnd.pick(workers).address, body(OP.RequestStakeWithdrawal)),
    async () => send(net, rnd.pick(workers).owner, rnd.pick(workers).address, body(OP.CancelStakeWithdrawal)),
    async () => {
      const w = rnd.pick(workers);
      const before = (await workerStake(net.bc, w.address)).stake;
      const r = await send(net, rnd.pick([w.owner, stranger]), w.address, body(OP.WithdrawWorkerStake));
      if (ran(r, w.address)) w.withdrawn += before;
      return r;
    },
    async () => send(net, rnd.pick([net.proxyOwner, stranger]), rnd.pick(workers).address, body(OP.Slash, (b) => b.storeRef(evidenceAgainst(rnd.pick(workers))))),
    async () => {
      const w = rnd.pick(workers);
      return send(net, w.owner, w.address, body(rnd.pick([OP.AddReceiptKey, OP.RemoveReceiptKey]), (b) => b.storeUint(w.key.key, 256)));
    },
    // The proxy's owner: stake, commission, close; strangers trying the same.
    async () => {
      const amount = rnd.ton(3) + 1n;
      const from = rnd.chance(0.8) ? net.proxyOwner : stranger;
      const r = await send(net, from, net.proxy, body(OP.AddProxyStake, (b) => b.storeCoins(amount)), amount + GAS);
      if (ran(r, net.proxy)) proxy.stakeIn += amount;
      return r;
    },
    async () => {
      const amount = rnd.ton(1) + 1n;
      const r = await send(net, rnd.chance(0.8) ? net.proxyOwner : stranger, net.proxy, body(OP.WithdrawCommission, (b) => b.storeCoins(amount)));
      if (ran(r, net.proxy)) proxy.takenOut += amount;
      return r;
    },
    // The proxy's close ends its business: late in the walk only.
    async () => (step > STEPS * 0.9 || rnd.chance(0.05)) ? send(net, rnd.pick([net.proxyOwner, stranger]), net.proxy, body(OP.RequestProxyClose)) : null,
    async () => {
      const p = await proxyData(net.bc, net.proxy);
      const r = await send(net, rnd.pick([net.proxyOwner, stranger]), net.proxy, body(OP.FinishProxyClose));
      if (ran(r, net.proxy)) proxy.takenOut += p.stake + p.commission;
      return r;
    },
    // The root's owner changes prices and terms (sometimes out of bounds:
    // refused), lists images, takes what the root holds; strangers try too.
    async () => {
      const from = rnd.chance(0.8) ? net.rootOwner : stranger;
      if (rnd.chance(0.5)) {
        const t = { ...terms, slashShare: rnd.int(12000), clientCloseDelay: rnd.pick([0, 600, HOUR, 0xffffffff]) };
        return send(net, from, net.root, body(OP.SetTerms, (b) => storeTerms(b, t)));
      }
      const p = { ...DEFAULT_PRICES, workerFeePerToken: BigInt(rnd.int(2000)), completionMultiplier: rnd.int(3) * 10000 };
      return send(net, from, net.root, body(OP.SetPrices, (b) => storePrices(b, p)));
    },
    async () => send(net, rnd.chance(0.8) ? net.rootOwner : stranger, net.root, body(OP.SetImage, (b) => b.storeUint(rnd.int(3), 8).storeUint(BigInt(rnd.int(8)), 256).storeBit(rnd.chance(0.5)))),
    async () => send(net, rnd.chance(0.8) ? net.rootOwner : stranger, net.root, body(OP.WithdrawFromRoot)),
    // Plain transfers and unknown ops to anyone; time passing.
    async () => rnd.pick([net.proxyOwner, stranger]).send({ to: rnd.pick([net.proxy, net.root, clients[0].address, workers[1].address]), value: rnd.ton(1) + 1n, bounce: rnd.chance(0.5) }),
    async () => send(net, stranger, rnd.pick([net.proxy, clients[1].address, workers[0].address]), body(0x0badc0de)),
    async () => {
      net.bc.now += rnd.pick([60, HOUR, 86400, 3 * 86400, WITHDRAW_WINDOW, slashableFor(terms)]);
      return null;
    },
  ];

  const check = async (step) => {
    const at = `step ${step} (seed ${SEED})`;
    assert.ok(await balance(net.bc, net.root) > 0n, `${at}: the root is alive`);
    const p = await proxyData(net.bc, net.proxy);
    assert.ok(await balance(net.bc, net.proxy) >= p.stake + p.commission, `${at}: the proxy contract holds its books`);
    let committed = 0n;
    let refunds = 0n;
    for (const c of clients) {
      const d = await clientData(net.bc, c.address);
      assert.ok(await balance(net.bc, c.address) >= d.balance, `${at}: ${c.name}'s contract holds its balance`);
      assert.equal(d.balance, c.toppedUp + c.refunded - c.withdrawn - d.committed, `${at}: ${c.name}'s balance is what went in less what went out`);
      committed += d.committed;
      refunds += c.refunded;
    }
    assert.equal(committed, p.charged, `${at}: Σ client commits = the proxy's charged`);
    let paid = 0n;
    let owed = 0n;
    let slashed = 0n;
    for (const w of workers) {
      const d = await workerData(net.bc, w.address);
      const s = await workerStake(net.bc, w.address);
      assert.equal(d.inFlight, 0n, `${at}: ${w.name} has no payout left in flight`);
      assert.ok(await balance(net.bc, w.address) >= s.stake, `${at}: ${w.name}'s contract holds its stake`);
      assert.equal(s.stake, w.staked - s.slashed - w.withdrawn, `${at}: ${w.name}'s stake is what went in less what went out`);
      assert.equal(w.received, d.committed, `${at}: ${w.name}'s owner received exactly what its contract committed`);
      paid += d.committed;
      owed += d.owed;
      slashed += s.slashed;
    }
    assert.equal(paid, p.paid, `${at}: Σ worker commits = the proxy's paid`);
    assert.equal(owed, p.owed, `${at}: the proxy's owed = Σ what its workers were not paid`);
    assert.equal(refunds, slashed, `${at}: what workers were slashed arrived in client contracts`);
    assert.equal(proxy.stakeIn + p.charged, p.paid + proxy.takenOut + p.stake + p.commission,
      `${at}: stake in + charged = paid + taken out + held`);
  };

  // What the walk did, so a walk that stopped exercising something shows.
  const done = new Map();
  const tally = (result) => {
    for (const tx of result.transactions) {
      const c = computeOf(tx);
      const s = tx.inMessage?.body?.beginParse();
      if (!c || !s || s.remainingBits < 32) continue;
      const key = `${s.loadUint(32).toString(16)}:${c.exitCode}`;
      done.set(key, (done.get(key) ?? 0) + 1);
    }
  };

  await check(0);
  for (step = 1; step <= STEPS; step++) {
    const result = await rnd.pick(actions)();
    if (result) {
      account(result);
      tally(result);
    }
    await check(step);
  }
  const times = (op, exit = 0) => done.get(`${op.toString(16)}:${exit}`) ?? 0;
  if (STEPS >= 300) {
    for (const op of [OP.ClientCharged, OP.PayWorker, OP.PayoutSettled, OP.ForwardSlash, OP.SlashRefund]) {
      assert.ok(times(op) > 0, `the walk exercised op ${op.toString(16)}: ${[...done].join(' ')}`);
    }
  }

  // The documented paths home: every owner gets its money back and every
  // contract keeps no more than its reserve.
  net.bc.now += WITHDRAW_WINDOW;
  for (const c of clients) {
    const d = await clientData(net.bc, c.address);
    if (d.state === 0) await send(net, c.owner, c.address, body(OP.RequestClientClose));
  }
  for (const w of workers) {
    await send(net, w.owner, w.address, body(OP.CancelStakeWithdrawal));
    await send(net, w.owner, w.address, body(OP.RequestStakeWithdrawal));
  }
  if ((await proxyData(net.bc, net.proxy)).state === 0) {
    await send(net, net.proxyOwner, net.proxy, body(OP.RequestProxyClose));
  }
  net.bc.now += Math.max(terms.proxyCloseDelay, slashableFor(terms)) + HOUR;
  for (const c of clients) {
    const before = (await clientData(net.bc, c.address)).balance;
    const r = await send(net, c.owner, c.address, body(OP.FinishClientClose));
    assert.ok(ran(r, c.address), `${c.name} closes`);
    c.withdrawn += before;
    assert.ok(await balance(net.bc, c.address) <= RESERVE.client, `${c.name}'s contract keeps only its reserve`);
  }
  for (const w of workers) {
    const before = (await workerStake(net.bc, w.address)).stake;
    if (before > 0n) {
      const r = await send(net, w.owner, w.address, body(OP.WithdrawWorkerStake));
      assert.ok(ran(r, w.address), `${w.name} takes its stake back`);
      w.withdrawn += before;
    }
    await send(net, w.owner, w.address, body(OP.ReclaimWorker));
    assert.ok(await balance(net.bc, w.address) <= RESERVE.worker, `${w.name}'s contract keeps only its reserve`);
  }
  const p = await proxyData(net.bc, net.proxy);
  const r = await send(net, net.proxyOwner, net.proxy, body(OP.FinishProxyClose));
  assert.ok(ran(r, net.proxy), 'the proxy closes');
  proxy.takenOut += p.stake + p.commission;
  assert.ok(await balance(net.bc, net.proxy) <= RESERVE.proxy, 'the proxy contract keeps only its reserve');
  assert.ok(ran(await send(net, net.rootOwner, net.root, body(OP.WithdrawFromRoot)), net.root), 'the root\'s owner sweeps it');
  assert.ok(await balance(net.bc, net.root) <= RESERVE.root, 'the root keeps only its reserve');
  await check('home');
});
