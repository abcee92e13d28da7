// The audit's findings, one test each: every attack is run against the
// contracts deployed before the audit (fixtures/before-audit/, where it
// must work) and against today's (where the attacker must take home
// nothing). Every voucher, receipt and piece of evidence in an attack is
// built and signed here with @ton/crypto (independent.mjs), not by the
// Rust code the nodes use.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Dictionary } from '@ton/core';
import {
  RustVoucherSigner, world, openClient, openWorker, clientAddress, clientData, workerData, workerStake, proxyData,
  send, body, balance, assertSuccess, assertRefused, txsOn, get, contractAddress, beginCell, toNano,
  OP, EXIT, GAS, RESERVE, PROXY_SEED, DEFAULT_TERMS, DEFAULT_PRICES, EVIDENCE_WINDOW, WITHDRAW_WINDOW, REGISTER_VALUE,
  storeTerms, storePrices, text, network, workerInit, slashableFor,
} from './helpers.mjs';
import {
  keyPair, signedVoucher, signedReceipt, signedEvidence, signedEvidenceBeforeAudit,
  IDENTITY_KEY, SMALL_ORDER_KEYS,
} from './independent.mjs';
import { oldWorld, oldWorker, oldClient, oldWorkerInit, storeOldTerms } from './before-audit.mjs';

const rust = new RustVoucherSigner();
after(() => rust.close());

const PROXY = keyPair(PROXY_SEED);
const HOUR = 3600;
const REQUEST = 0x01n;
const MODEL = 0x0an;
const HONEST = 0xc0n;
const WRONG = 0xd0n;

const throwaway = (i) => keyPair((0x40 + i).toString(16).padStart(2, '0').repeat(32));
const slashBody = (evidence) => body(OP.Slash, (b) => b.storeRef(evidence));
const payoutBody = (v) => body(OP.Payout, (b) => b.storeRef(v));
const chargeBody = (v) => body(OP.Charge, (b) => b.storeRef(v));

/** What `wallet` holds, plus what it can take back from `contracts` it owns (their books). */
async function wealth(bc, wallet, owned = []) {
  let w = await balance(bc, wallet.address);
  for (const read of owned) w += await read();
  return w;
}

test('finding 1: a proxy cannot slash a worker with receipts the worker never signed', async () => {
  // Before: three receipts from throwaway keys, the proxy owner as payee,
  // a fresh request each time: the victim's whole stake moves to the proxy owner.
  {
    const net = await oldWorld({ proxyKey: PROXY.key });
    const victim = await oldWorker(net, await net.bc.treasury('victim'), toNano('5'));
    const thief = net.proxyOwner;
    const before = await wealth(net.bc, thief);
    for (let i = 0; i < 3; i++) {
      const receipt = (k, content) => signedReceipt({ request: REQUEST + BigInt(i), content, model: MODEL }, throwaway(k));
      const e = signedEvidenceBeforeAudit({
        worker: victim, client: thief.address, amount: toNano('5'), expiresAt: net.bc.now + HOUR,
        accused: receipt(0, WRONG), first: receipt(1, HONEST), second: receipt(2, HONEST),
      }, PROXY);
      await send(net, thief, victim, slashBody(e));
    }
    const took = (await wealth(net.bc, thief)) - before;
    assert.ok(took > toNano('4.9'), `before the audit the proxy took ${took} of the worker's 5 TON`);
  }
  // Now: the accused receipt must be signed by a key the worker contract's
  // owner registered, and the money goes only into a client contract.
  const net = await world(rust);
  const victimOwner = await net.bc.treasury('victim');
  const victim = await openWorker(net, victimOwner, { stake: toNano('5') });
  const teeKey = keyPair('a1'.repeat(32));
  assertSuccess(await send(net, victimOwner, victim, body(OP.AddReceiptKey, (b) => b.storeUint(teeKey.key, 256))), victim);
  const thief = net.proxyOwner;
  const before = await wealth(net.bc, thief);
  for (let i = 0; i < 3; i++) {
    const receipt = (k, content) => signedReceipt({ request: REQUEST + BigInt(i), content, model: MODEL, time: net.bc.now }, throwaway(k));
    const e = signedEvidence({
      worker: victim, clientOwner: thief.address, expiresAt: net.bc.now + HOUR,
      accused: receipt(0, WRONG), first: receipt(1, HONEST), second: receipt(2, HONEST),
    }, PROXY);
    assertRefused(await send(net, thief, victim, slashBody(e)), victim, EXIT.RECEIPT_KEY_UNKNOWN);
  }
  assert.ok((await wealth(net.bc, thief)) <= before, 'the proxy takes home nothing');
  assert.equal((await workerStake(net.bc, victim)).stake, toNano('5'));
});

test('finding 2: no small-order key enters the chain, so no one signs for one', async () => {
  // Before: the root registers the identity as a proxy key; a stranger
  // forges a worker voucher under it and drains the proxy's stake.
  {
    const net = await oldWorld({ proxyKey: IDENTITY_KEY });
    const stranger = await net.bc.treasury('stranger');
    const worker = await oldWorker(net, stranger, toNano('1'));
    const before = await wealth(net.bc, stranger);
    const forged = signedVoucher({
      kind: 'worker', contract: net.proxy, party: worker, total: toNano('10'), seqno: 1, expiresAt: net.bc.now + HOUR,
    }, 'identity');
    await send(net, stranger, worker, payoutBody(forged));
    const took = (await wealth(net.bc, stranger)) - before;
    assert.ok(took > toNano('9.9'), `before the audit a forged voucher paid ${took}`);
  }
  // Now: the root refuses every one of the fourteen encodings.
  const net = await network();
  const owner = await net.bc.treasury('proxy-owner');
  for (const key of SMALL_ORDER_KEYS) {
    const r = await send(net, net.rootOwner, net.root, body(OP.RegisterProxy, (b) =>
      b.storeAddress(owner.address).storeUint(key, 256).storeRef(text('tls://127.0.0.1:1'))), REGISTER_VALUE);
    assertRefused(r, net.root, EXIT.WEAK_KEY);
  }
  const proxies = await get(net.bc, net.root, 'get_proxies');
  assert.equal(proxies.readCellOpt(), null, 'no proxy was registered');
  // Nor as a worker's receipt key, nor as a key named in evidence.
  const w = await world(rust);
  const workerOwner = await w.bc.treasury('worker-owner');
  const worker = await openWorker(w, workerOwner, { stake: toNano('5') });
  for (const key of SMALL_ORDER_KEYS) {
    assertRefused(await send(w, workerOwner, worker, body(OP.AddReceiptKey, (b) => b.storeUint(key, 256))), worker, EXIT.WEAK_KEY);
  }
  const accusedKey = keyPair('a1'.repeat(32));
  assertSuccess(await send(w, workerOwner, worker, body(OP.AddReceiptKey, (b) => b.storeUint(accusedKey.key, 256))), worker);
  const time = w.bc.now;
  const e = signedEvidence({
    worker, clientOwner: w.proxyOwner.address, expiresAt: time + HOUR,
    accused: signedReceipt({ request: REQUEST, content: WRONG, model: MODEL, time }, accusedKey),
    first: signedReceipt({ request: REQUEST, content: HONEST, model: MODEL, time }, 'identity'),
    second: signedReceipt({ request: REQUEST, content: HONEST, model: MODEL, time }, throwaway(1)),
  }, PROXY);
  assertRefused(await send(w, w.proxyOwner, worker, slashBody(e)), worker, EXIT.WEAK_KEY);
  assert.equal((await workerStake(w.bc, worker)).stake, toNano('5'));
});

test('finding 3: a worker is never both paid and beyond the reach of a slash; a lapsed close pays no one', async () => {
  // Before: unlocked once, the stake stays unlocked; the worker is paid a
  // month later and could leave the moment evidence came.
  {
    const net = await oldWorld({ proxyKey: PROXY.key });
    const owner = await net.bc.treasury('worker-owner');
    const worker = await oldWorker(net, owner, toNano('1'));
    assertSuccess(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker);
    net.bc.now += 30 * 24 * HOUR;
    const v = signedVoucher({ kind: 'worker', contract: net.proxy, party: worker, total: toNano('1'), seqno: 1, expiresAt: net.bc.now + HOUR }, PROXY);
    const r = await send(net, owner, worker, payoutBody(v));
    assert.equal(txsOn(r, owner.address, OP.WorkerPaid).length, 1, 'before the audit an unlocked worker was paid');
    // And a proxy closing past its close_at still paid workers.
    const owner2 = await net.bc.treasury('worker-owner-2');
    const worker2 = await oldWorker(net, owner2, toNano('1'));
    assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.RequestProxyClose)), net.proxy);
    net.bc.now += net.terms.proxyCloseDelay + HOUR;
    const v2 = signedVoucher({ kind: 'worker', contract: net.proxy, party: worker2, total: toNano('1'), seqno: 1, expiresAt: net.bc.now + HOUR }, PROXY);
    const late = await send(net, owner2, worker2, payoutBody(v2));
    assert.equal(txsOn(late, owner2.address, OP.WorkerPaid).length, 1, 'before the audit a lapsed close still paid');
  }
  const net = await world(rust);
  const owner = await net.bc.treasury('worker-owner');
  const worker = await openWorker(net, owner, { stake: toNano('1') });
  assertSuccess(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker);
  const voucherAt = (total, seqno) => signedVoucher({ kind: 'worker', contract: net.proxy, party: worker, total, seqno, expiresAt: net.bc.now + HOUR }, PROXY);
  const before = await wealth(net.bc, owner);
  assertRefused(await send(net, owner, worker, payoutBody(voucherAt(toNano('1'), 1))), worker, EXIT.STAKE_WITHDRAWING);
  net.bc.now += slashableFor(net.terms);
  assertRefused(await send(net, owner, worker, payoutBody(voucherAt(toNano('1'), 1))), worker, EXIT.STAKE_WITHDRAWING);
  net.bc.now += WITHDRAW_WINDOW;
  assertRefused(await send(net, owner, worker, body(OP.WithdrawWorkerStake)), worker, EXIT.WINDOW_PASSED);
  assert.ok((await wealth(net.bc, owner)) <= before, 'unlocked, the worker is paid nothing');
  assert.equal((await workerStake(net.bc, worker)).stake, toNano('1'), 'and the lapsed stake is locked again');
  // A proxy past its close_at pays no one, however long the close waits.
  const owner2 = await net.bc.treasury('worker-owner-2');
  const worker2 = await openWorker(net, owner2, { stake: toNano('1') });
  assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.RequestProxyClose)), net.proxy);
  net.bc.now += net.terms.proxyCloseDelay + HOUR;
  const v2 = signedVoucher({ kind: 'worker', contract: net.proxy, party: worker2, total: toNano('1'), seqno: 1, expiresAt: net.bc.now + HOUR }, PROXY);
  const late = await send(net, owner2, worker2, payoutBody(v2));
  assertRefused(late, net.proxy, EXIT.CLOSE_DELAY_OVER);
  assert.equal(txsOn(late, owner2.address, OP.WorkerPaid).length, 0);
  assert.equal((await workerData(net.bc, worker2)).inFlight, 0n, 'the refused payout ends');
});

test('finding 4: payouts are partial, and the owner takes no commission while workers are owed', async () => {
  // Before: a worker owed 1.5 TON by a proxy contract holding 1 TON got
  // nothing, and the owner took the 1 TON while closing.
  {
    const net = await oldWorld({ proxyKey: PROXY.key, stake: 0n });
    const alice = await net.bc.treasury('alice');
    const client = await oldClient(net, alice, toNano('3'));
    const charged = await send(net, alice, client, chargeBody(signedVoucher({ kind: 'client', contract: net.proxy, party: client, total: toNano('1'), seqno: 1, expiresAt: net.bc.now + HOUR }, PROXY)));
    assertSuccess(charged, net.proxy);
    const workerOwner = await net.bc.treasury('worker-owner');
    const worker = await oldWorker(net, workerOwner, toNano('1'));
    const before = await wealth(net.bc, workerOwner);
    await send(net, workerOwner, worker, payoutBody(signedVoucher({ kind: 'worker', contract: net.proxy, party: worker, total: toNano('1.5'), seqno: 1, expiresAt: net.bc.now + HOUR }, PROXY)));
    assert.ok((await wealth(net.bc, workerOwner)) <= before, 'before the audit the worker recovered nothing');
    assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.RequestProxyClose)), net.proxy);
    const took = await send(net, net.proxyOwner, net.proxy, body(OP.WithdrawCommission, (b) => b.storeCoins(toNano('1'))));
    assertSuccess(took, net.proxy);
  }
  const terms = { ...DEFAULT_TERMS, minProxyStake: toNano('1') };
  const net = await world(rust, { terms, stake: toNano('1') });
  const alice = await net.bc.treasury('alice');
  const client = await openClient(net, alice, toNano('3'));
  const clientVoucher = (total, seqno) => signedVoucher({ kind: 'client', contract: net.proxy, party: client, total, seqno, expiresAt: net.bc.now + HOUR }, PROXY);
  assertSuccess(await send(net, alice, client, chargeBody(clientVoucher(toNano('1'), 1))), net.proxy);
  const workerOwner = await net.bc.treasury('worker-owner');
  const worker = await openWorker(net, workerOwner, { stake: toNano('1') });
  const owed = signedVoucher({ kind: 'worker', contract: net.proxy, party: worker, total: toNano('2.5'), seqno: 1, expiresAt: net.bc.now + HOUR }, PROXY);
  let r = await send(net, workerOwner, worker, payoutBody(owed));
  assert.equal(txsOn(r, workerOwner.address, OP.WorkerPaid)[0].inMessage.info.value.coins, toNano('2'), 'all the proxy contract held, at once');
  assert.equal((await proxyData(net.bc, net.proxy)).owed, toNano('0.5'));
  // The owner restakes and new commission arrives; the owner may not take
  // it while the worker is owed.
  assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.AddProxyStake, (b) => b.storeCoins(toNano('1'))), toNano('1') + GAS), net.proxy);
  assertSuccess(await send(net, alice, client, chargeBody(clientVoucher(toNano('1.3'), 2))), net.proxy);
  assertRefused(await send(net, net.proxyOwner, net.proxy, body(OP.WithdrawCommission, (b) => b.storeCoins(toNano('0.3')))), net.proxy, EXIT.WORKERS_UNPAID);
  // The same voucher takes the rest: commission first, then the stake.
  r = await send(net, workerOwner, worker, payoutBody(owed));
  assert.equal(txsOn(r, workerOwner.address, OP.WorkerPaid)[0].inMessage.info.value.coins, toNano('0.5'));
  const p = await proxyData(net.bc, net.proxy);
  assert.equal(p.owed, 0n);
  assert.equal(p.paid, toNano('2.5'));
  assert.equal(p.stake, toNano('0.8'));
  assert.equal((await workerData(net.bc, worker)).committed, toNano('2.5'));
  // Closing, the owner takes no commission at all.
  assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.RequestProxyClose)), net.proxy);
  assertRefused(await send(net, net.proxyOwner, net.proxy, body(OP.WithdrawCommission, (b) => b.storeCoins(1n))), net.proxy, EXIT.WRONG_STATE);
  // And a proxy contract below the root's minimum stake books no charge:
  // before the audit, one with no stake at all did.
  const bare = await world(rust, { stake: toNano('5') });
  const bob = await bare.bc.treasury('bob');
  const bobClient = await openClient(bare, bob, toNano('3'));
  const v = signedVoucher({ kind: 'client', contract: bare.proxy, party: bobClient, total: toNano('1'), seqno: 1, expiresAt: bare.bc.now + HOUR }, PROXY);
  assertRefused(await send(bare, bob, bobClient, chargeBody(v)), bare.proxy, EXIT.PROXY_STAKE_BELOW_MINIMUM);
  assert.equal((await clientData(bare.bc, bobClient)).balance, toNano('3'));
});

test('finding 5: terms and prices stay within bounds, so no delay locks money and no arithmetic overflows', async () => {
  // Before: a close delay of 0xffffffff was taken, and the client of a
  // proxy registered under it could never leave.
  {
    const net = await oldWorld({ proxyKey: PROXY.key });
    const set = body(OP.SetTerms, (b) => storeOldTerms(b, { ...net.terms, clientCloseDelay: 0xffffffff }));
    assertSuccess(await send(net, net.rootOwner, net.root, set), net.root);
    const late = await oldWorld({ proxyKey: PROXY.key, terms: { ...net.terms, clientCloseDelay: 0xffffffff } });
    const alice = await late.bc.treasury('alice');
    const client = await oldClient(late, alice, toNano('3'));
    const r = await send(late, alice, client, body(OP.RequestClientClose));
    assertRefused(r, client, 5);
    // A zero multiplier was taken too.
    const zero = body(OP.SetPrices, (b) => storePrices(b, { ...DEFAULT_PRICES, completionMultiplier: 0 }));
    assertSuccess(await send(net, net.rootOwner, net.root, zero), net.root);
  }
  const net = await network();
  const setTerms = (t) => body(OP.SetTerms, (b) => storeTerms(b, { ...DEFAULT_TERMS, ...t }));
  const setPrices = (p) => body(OP.SetPrices, (b) => storePrices(b, { ...DEFAULT_PRICES, ...p }));
  const badTerms = [
    { clientCloseDelay: 0xffffffff }, { clientCloseDelay: 0 }, { proxyCloseDelay: 599 }, { proxyCloseDelay: 90 * 24 * HOUR + 1 },
    { slashShare: 0 }, { slashShare: 10001 }, { minWorkerStake: 0n }, { minProxyStake: toNano('0.09') },
    { minClientStake: 10n ** 18n + 1n },
  ];
  for (const t of badTerms) {
    assertRefused(await send(net, net.rootOwner, net.root, setTerms(t)), net.root, EXIT.BAD_TERMS);
  }
  const badPrices = [
    { promptMultiplier: 0 }, { cachedMultiplier: 0 }, { completionMultiplier: 0 }, { reasoningMultiplier: 0 },
    { completionMultiplier: 1_000_001 }, { workerFeePerToken: DEFAULT_PRICES.pricePerToken + 1n },
    { pricePerToken: toNano('1') + 1n, workerFeePerToken: 1n },
  ];
  for (const p of badPrices) {
    assertRefused(await send(net, net.rootOwner, net.root, setPrices(p)), net.root, EXIT.BAD_PRICES);
  }
  // The bounds themselves are taken.
  assertSuccess(await send(net, net.rootOwner, net.root, setTerms({ clientCloseDelay: 90 * 24 * HOUR, proxyCloseDelay: 600, slashShare: 10000 })), net.root);
  assertSuccess(await send(net, net.rootOwner, net.root, setPrices({ completionMultiplier: 1_000_000, cachedMultiplier: 1 })), net.root);
  // Under the longest delay a client still leaves.
  const longest = await world(rust, { terms: { ...DEFAULT_TERMS, clientCloseDelay: 90 * 24 * HOUR } });
  const alice = await longest.bc.treasury('alice');
  const client = await openClient(longest, alice, toNano('3'));
  assertSuccess(await send(longest, alice, client, body(OP.RequestClientClose)), client);
  longest.bc.now += 90 * 24 * HOUR;
  const done = await send(longest, alice, client, body(OP.FinishClientClose));
  assert.ok(txsOn(done, alice.address, OP.Withdrawal)[0].inMessage.info.value.coins >= toNano('3'));
});

test('finding 6: reserves pay years of rent, slash history is bounded, and no slash is dust', async () => {
  // Before: a 1-nanoton slash pushed a worker at exactly the minimum below
  // it, and its payouts stopped.
  {
    const net = await oldWorld({ proxyKey: PROXY.key });
    const owner = await net.bc.treasury('worker-owner');
    const worker = await oldWorker(net, owner, toNano('1'));
    const receipt = (k, content) => signedReceipt({ request: REQUEST, content, model: MODEL }, throwaway(k));
    const e = signedEvidenceBeforeAudit({
      worker, client: owner.address, amount: 1n, expiresAt: net.bc.now + HOUR,
      accused: receipt(0, WRONG), first: receipt(1, HONEST), second: receipt(2, HONEST),
    }, PROXY);
    assertSuccess(await send(net, net.proxyOwner, worker, slashBody(e)), worker);
    const v = signedVoucher({ kind: 'worker', contract: net.proxy, party: worker, total: toNano('1'), seqno: 1, expiresAt: net.bc.now + HOUR }, PROXY);
    assertRefused(await send(net, owner, worker, payoutBody(v)), worker, EXIT.STAKE_BELOW_MINIMUM);
  }
  // Now: the reserve of each contract covers five years of its rent.
  const net = await world(rust);
  const alice = await net.bc.treasury('alice');
  const client = await openClient(net, alice, toNano('3'));
  const owner = await net.bc.treasury('worker-owner');
  const worker = await openWorker(net, owner, { stake: toNano('5') });
  const prices = storagePrices(net.bc);
  for (const [name, address] of [['root', net.root], ['proxy', net.proxy], ['client', client], ['worker', worker]]) {
    const used = (await net.bc.getContract(address)).account.account.storageStats.used;
    const perYear = ((used.bits * prices.bit + used.cells * prices.cell) * 365n * 24n * 3600n) / 65536n;
    assert.ok(RESERVE[name] >= 5n * perYear, `${name}: reserve ${RESERVE[name]} < five years of ${perYear}`);
  }
  // A slash takes the root's share, never a dust amount the proxy picks.
  const key = keyPair('a1'.repeat(32));
  assertSuccess(await send(net, owner, worker, body(OP.AddReceiptKey, (b) => b.storeUint(key.key, 256))), worker);
  const slashAt = (request, time) => signedEvidence({
    worker, clientOwner: alice.address, expiresAt: net.bc.now + HOUR,
    accused: signedReceipt({ request, content: WRONG, model: MODEL, time }, key),
    first: signedReceipt({ request, content: HONEST, model: MODEL, time }, throwaway(1)),
    second: signedReceipt({ request, content: HONEST, model: MODEL, time }, throwaway(2)),
  }, PROXY);
  const first = slashAt(REQUEST, net.bc.now);
  assertSuccess(await send(net, net.proxyOwner, worker, slashBody(first)), worker);
  assert.equal((await workerStake(net.bc, worker)).slashed, toNano('5') * BigInt(DEFAULT_TERMS.slashShare) / 10000n);
  // The history holds only receipts young enough to be evidence: after
  // the window the record is dropped by the next slash, and the old
  // receipt is refused by its age instead.
  net.bc.now += EVIDENCE_WINDOW;
  assertSuccess(await send(net, net.proxyOwner, worker, slashBody(slashAt(REQUEST + 1n, net.bc.now))), worker);
  const records = await slashRecords(net.bc, worker);
  assert.equal(records, 1, 'the expired record was dropped');
  assertRefused(await send(net, net.proxyOwner, worker, slashBody(first)), worker, EXIT.EVIDENCE_EXPIRED);
  const resigned = slashAt(REQUEST, net.bc.now - EVIDENCE_WINDOW);
  assertRefused(await send(net, net.proxyOwner, worker, slashBody(resigned)), worker, EXIT.RECEIPT_TOO_OLD);
});

/** Storage prices of the sandbox's configuration (param 18), per 2^16 seconds. */
function storagePrices(bc) {
  const params = Dictionary.loadDirect(Dictionary.Keys.Int(32), Dictionary.Values.Cell(), bc.config);
  const dict = Dictionary.loadDirect(Dictionary.Keys.Uint(32), {
    serialize: () => { throw new Error('read only'); },
    parse: (s) => {
      s.skip(8 + 32);
      return { bit: s.loadUintBig(64), cell: s.loadUintBig(64) };
    },
  }, params.get(18));
  return [...dict.values()].at(-1);
}

/** How many receipts a worker contract's slash history holds. */
async function slashRecords(bc, worker) {
  const data = (await bc.getContract(worker)).account.account.storage.state.state.data;
  const s = data.beginParse();
  s.loadAddress(); s.loadCoins(); s.loadUintBig(64); s.loadCoins(); s.loadCoins(); s.loadMaybeRef();
  const stake = s.loadRef().beginParse();
  stake.loadCoins(); stake.loadUint(32); stake.loadCoins();
  const dict = Dictionary.load(Dictionary.Keys.BigUint(288), Dictionary.Values.Bool(), stake);
  return dict.size;
}

test('review: a payout or a slash settles even after storage fees wore the proxy contract\'s reserve down', async () => {
  const net = await world(rust);
  const alice = await net.bc.treasury('alice');
  const client = await openClient(net, alice, toNano('3'));
  const owner = await net.bc.treasury('worker-owner');
  const worker = await openWorker(net, owner, { stake: toNano('2') });
  const key = keyPair('a1'.repeat(32));
  assertSuccess(await send(net, owner, worker, body(OP.AddReceiptKey, (b) => b.storeUint(key.key, 256))), worker);
  // Two idle years: rent takes most of the proxy contract's reserve.
  net.bc.now += 2 * 365 * 24 * HOUR;
  // The least value a payout may carry still settles it at the worker
  // contract: nothing refills the proxy's reserve from it.
  const v = signedVoucher({ kind: 'worker', contract: net.proxy, party: worker, total: toNano('1'), seqno: 1, expiresAt: net.bc.now + HOUR }, PROXY);
  for (const value of [toNano('0.05'), toNano('0.08'), toNano('0.1')]) {
    const r = await send(net, owner, worker, payoutBody(v), value + RESERVE.worker);
    const d = await workerData(net.bc, worker);
    assert.equal(d.inFlight, 0n, `a payout carrying ${value} is settled, not left in flight`);
    if (d.committed === toNano('1')) {
      assert.equal(txsOn(r, owner.address, OP.WorkerPaid).length, 1);
      break;
    }
  }
  assert.equal((await workerData(net.bc, worker)).committed, toNano('1'));
  assert.equal((await proxyData(net.bc, net.proxy)).paid, toNano('1'));
  // A slash's amount reaches the client contract whole.
  const time = net.bc.now;
  const e = signedEvidence({
    worker, clientOwner: alice.address, expiresAt: time + HOUR,
    accused: signedReceipt({ request: REQUEST, content: WRONG, model: MODEL, time }, key),
    first: signedReceipt({ request: REQUEST, content: HONEST, model: MODEL, time }, throwaway(1)),
    second: signedReceipt({ request: REQUEST, content: HONEST, model: MODEL, time }, throwaway(2)),
  }, PROXY);
  const before = (await clientData(net.bc, client)).balance;
  assertSuccess(await send(net, net.proxyOwner, worker, slashBody(e), toNano('0.05')), client);
  const slashed = (await workerStake(net.bc, worker)).slashed;
  assert.ok(slashed > 0n);
  assert.equal((await clientData(net.bc, client)).balance, before + slashed);
});

test('review: a worker that left with a partial payout owed is still paid what it is owed, so the commission is not frozen', async () => {
  const terms = { ...DEFAULT_TERMS, minProxyStake: toNano('1') };
  const net = await world(rust, { terms, stake: toNano('1') });
  const owner = await net.bc.treasury('worker-owner');
  const worker = await openWorker(net, owner, { stake: toNano('1') });
  const v = signedVoucher({ kind: 'worker', contract: net.proxy, party: worker, total: toNano('1.5'), seqno: 1, expiresAt: net.bc.now + 30 * 24 * HOUR }, PROXY);
  assertSuccess(await send(net, owner, worker, payoutBody(v)), worker);
  assert.equal((await workerData(net.bc, worker)).owed, toNano('0.5'));
  // The worker takes its stake and leaves.
  assertSuccess(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker);
  net.bc.now += slashableFor(net.terms);
  assertSuccess(await send(net, owner, worker, body(OP.WithdrawWorkerStake)), worker);
  // The proxy restakes and earns commission; the owed worker, unstaked,
  // is paid what it was owed (anyone may push its voucher), then the owner
  // takes the commission.
  assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.AddProxyStake, (b) => b.storeCoins(toNano('1'))), toNano('1') + GAS), net.proxy);
  const alice = await net.bc.treasury('alice');
  const client = await openClient(net, alice, toNano('3'));
  assertSuccess(await send(net, alice, client, chargeBody(signedVoucher({ kind: 'client', contract: net.proxy, party: client, total: toNano('1'), seqno: 1, expiresAt: net.bc.now + HOUR }, PROXY))), net.proxy);
  assertRefused(await send(net, net.proxyOwner, net.proxy, body(OP.WithdrawCommission, (b) => b.storeCoins(toNano('0.5')))), net.proxy, EXIT.WORKERS_UNPAID);
  const r = await send(net, net.proxyOwner, worker, payoutBody(v));
  assert.equal(txsOn(r, owner.address, OP.WorkerPaid)[0].inMessage.info.value.coins, toNano('0.5'));
  assert.equal((await proxyData(net.bc, net.proxy)).owed, 0n);
  assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.WithdrawCommission, (b) => b.storeCoins(toNano('0.5')))), net.proxy);
  // New work is still not paid below the minimum stake.
  const more = signedVoucher({ kind: 'worker', contract: net.proxy, party: worker, total: toNano('2'), seqno: 2, expiresAt: net.bc.now + HOUR }, PROXY);
  assertRefused(await send(net, owner, worker, payoutBody(more)), worker, EXIT.STAKE_BELOW_MINIMUM);
});

test('review: only a closed client contract\'s owner reopens it', async () => {
  const net = await world(rust);
  const alice = await net.bc.treasury('alice');
  const client = await openClient(net, alice, toNano('3'));
  assertSuccess(await send(net, alice, client, body(OP.RequestClientClose)), client);
  net.bc.now += net.terms.clientCloseDelay;
  assertSuccess(await send(net, alice, client, body(OP.FinishClientClose)), client);
  const stranger = await net.bc.treasury('stranger');
  assertRefused(await send(net, stranger, client, body(OP.TopUp, (b) => b.storeCoins(1n)), GAS), client, EXIT.NOT_OWNER);
  assert.equal((await clientData(net.bc, client)).state, 2);
  assertSuccess(await send(net, alice, client, body(OP.TopUp, (b) => b.storeCoins(toNano('1'))), toNano('1') + GAS), client);
  assert.equal((await clientData(net.bc, client)).state, 0);
});
