// Worker stakes and slashing: the stake a worker locks (the root's minimum
// for payouts), its withdrawal delay (never shorter than a receipt is
// evidence) and window, its receipt keys, and
// slash evidence built and signed by crates/receipt exactly as a proxy
// does: valid evidence pays the root's share of the stake into the
// affected client's contract once; forged, mismatched, stale or replayed
// evidence is refused and moves nothing. Also the proxy's published
// reputation digest.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  RustVoucherSigner, world, openWorker, workerStake, workerData, clientData, clientAddress, receiptKey,
  voucher, payoutBody, send, body, get, assertSuccess, assertRefused, txsOn, balance,
  OP, EXIT, OTHER_SEED, GAS, RESERVE, DEFAULT_TERMS, WITHDRAW_WINDOW, EVIDENCE_WINDOW, slashableFor, toNano,
} from './helpers.mjs';

const signer = new RustVoucherSigner();
after(() => signer.close());

const REQUEST = '01'.repeat(32);
const MODEL = '0a'.repeat(32);
const HONEST = 'c0'.repeat(32);
const WRONG = 'd0'.repeat(32);
// Receipt keys: the accused's and two witnesses'.
const ACCUSED_SEED = 'a1'.repeat(32);
const FIRST_SEED = 'a2'.repeat(32);
const SECOND_SEED = 'a3'.repeat(32);

async function setup({ stake, terms } = {}) {
  const net = await world(signer, { terms });
  const owner = await net.bc.treasury('worker-owner');
  const worker = await openWorker(net, owner, { stake: stake ?? toNano('5') });
  const accusedKey = await signer.key(ACCUSED_SEED);
  // Enough to fund the reserve too, for a worker contract deployed bare.
  assertSuccess(await send(net, owner, worker, body(OP.AddReceiptKey, (b) => b.storeUint(accusedKey, 256)), GAS + RESERVE.worker), worker);
  const client = await net.bc.treasury('client-owner');
  const clientContract = await clientAddress(net.bc, net.proxy, client.address);
  return { net, owner, worker, client, clientContract, accusedKey };
}

/** Evidence that `worker` answered WRONG where two others answered HONEST. */
function evidence(net, worker, client, overrides = {}) {
  const time = overrides.time ?? net.bc.now - 60;
  return signer.evidence({
    worker,
    clientOwner: client.address,
    expiresAt: net.bc.now + 3600,
    accused: { seed: ACCUSED_SEED, request: REQUEST, content: WRONG, model: MODEL, time },
    first: { seed: FIRST_SEED, request: REQUEST, content: HONEST, model: MODEL, time },
    second: { seed: SECOND_SEED, request: REQUEST, content: HONEST, model: MODEL, time },
    ...overrides,
  });
}

function slashBody(signedEvidence) {
  return body(OP.Slash, (b) => b.storeRef(signedEvidence));
}

/** What the slash in `result` paid into `clientContract`: one SlashRefund. */
function refundedTo(result, clientContract) {
  const txs = txsOn(result, clientContract, OP.SlashRefund);
  assert.equal(txs.length, 1, 'one SlashRefund to the client contract');
  const s = txs[0].inMessage.body.beginParse();
  s.skip(32 + 64);
  return { value: txs[0].inMessage.info.value.coins, amount: s.loadCoins(), request: s.loadUintBig(256) };
}

test('anyone adds to a stake; the stake and its terms are readable', async () => {
  const { net, worker } = await setup({ stake: toNano('1') });
  const friend = await net.bc.treasury('friend');
  assertSuccess(await send(net, friend, worker, body(OP.AddWorkerStake, (b) => b.storeCoins(toNano('2'))), toNano('2') + GAS), worker);
  const s = await workerStake(net.bc, worker);
  assert.equal(s.stake, toNano('3'));
  assert.equal(s.minStake, net.terms.minWorkerStake, 'the minimum comes from the root through the proxy contract');
  assert.equal(s.stakeDelay, slashableFor(net.terms));
  assert.equal(s.unlockAt, 0);
  assert.equal(s.slashed, 0n);
  assert.equal(s.slashShare, net.terms.slashShare);
  assertRefused(await send(net, friend, worker, body(OP.AddWorkerStake, (b) => b.storeCoins(0))), worker, EXIT.ZERO_AMOUNT);
  assertRefused(await send(net, friend, worker, body(OP.AddWorkerStake, (b) => b.storeCoins(toNano('5'))), toNano('1')), worker, EXIT.NOT_ENOUGH_VALUE);
  assert.equal((await workerStake(net.bc, worker)).stake, toNano('3'), 'refused stakes change nothing');
});

test('a worker below the minimum stake is not paid until it stakes; the voucher stays claimable', async () => {
  const { net, owner, worker } = await setup({ stake: 0n });
  const v = await voucher(net, 'worker', worker, toNano('1'), 1);
  assertRefused(await send(net, owner, worker, payoutBody(v)), worker, EXIT.STAKE_BELOW_MINIMUM);
  assertSuccess(await send(net, owner, worker, body(OP.AddWorkerStake, (b) => b.storeCoins(net.terms.minWorkerStake)), net.terms.minWorkerStake + GAS), worker);
  const r = await send(net, owner, worker, payoutBody(v));
  assertSuccess(r, worker);
  assert.equal(txsOn(r, owner.address, OP.WorkerPaid).length, 1);
});

test('only the owner takes the stake back, only after the delay and within the window', async () => {
  const { net, owner, worker } = await setup();
  const thief = await net.bc.treasury('thief');
  assertRefused(await send(net, owner, worker, body(OP.WithdrawWorkerStake)), worker, EXIT.WRONG_STATE);
  assertRefused(await send(net, thief, worker, body(OP.RequestStakeWithdrawal)), worker, EXIT.NOT_OWNER);
  assertSuccess(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker);
  const s = await workerStake(net.bc, worker);
  assert.equal(s.unlockAt, net.bc.now + slashableFor(net.terms), 'as long as a receipt is evidence, at least');
  assert.equal(s.stakeDelay, slashableFor(net.terms));
  assert.equal(s.withdrawWindow, WITHDRAW_WINDOW);
  assertRefused(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker, EXIT.WRONG_STATE);
  net.bc.now += slashableFor(net.terms) - 1;
  assertRefused(await send(net, owner, worker, body(OP.WithdrawWorkerStake)), worker, EXIT.TOO_EARLY);
  net.bc.now += 1;
  assertRefused(await send(net, thief, worker, body(OP.WithdrawWorkerStake)), worker, EXIT.NOT_OWNER);
  const r = await send(net, owner, worker, body(OP.WithdrawWorkerStake));
  assertSuccess(r, worker);
  assert.ok(txsOn(r, owner.address, OP.Withdrawal)[0].inMessage.info.value.coins >= toNano('5'));
  assert.equal((await workerStake(net.bc, worker)).stake, 0n);
  assertRefused(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker, EXIT.NO_STAKE);
});

test('from a withdrawal request until the stake leaves no payout goes through; a lapsed request locks and pays again', async () => {
  const { net, owner, worker } = await setup();
  assertSuccess(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker);
  // Asked for: still slashable, and paid nothing, before the delay ends
  // and while the stake may be taken.
  assertRefused(await send(net, owner, worker, payoutBody(await voucher(net, 'worker', worker, toNano('1'), 1))), worker, EXIT.STAKE_WITHDRAWING);
  net.bc.now += slashableFor(net.terms);
  assertRefused(await send(net, owner, worker, payoutBody(await voucher(net, 'worker', worker, toNano('1'), 2))), worker, EXIT.STAKE_WITHDRAWING);
  net.bc.now += WITHDRAW_WINDOW;
  assertRefused(await send(net, owner, worker, body(OP.WithdrawWorkerStake)), worker, EXIT.WINDOW_PASSED);
  assertSuccess(await send(net, owner, worker, payoutBody(await voucher(net, 'worker', worker, toNano('2'), 3))), worker);
  assert.equal((await workerData(net.bc, worker)).committed, toNano('2'));
  // Asking again starts a new delay; cancelling ends it, and payouts resume.
  assertSuccess(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker);
  assertSuccess(await send(net, owner, worker, body(OP.CancelStakeWithdrawal)), worker);
  assert.equal((await workerStake(net.bc, worker)).unlockAt, 0);
  assertRefused(await send(net, owner, worker, body(OP.CancelStakeWithdrawal)), worker, EXIT.WRONG_STATE);
  assertSuccess(await send(net, owner, worker, payoutBody(await voucher(net, 'worker', worker, toNano('3'), 4))), worker);
});

test('valid evidence slashes once: the root\'s share goes into the client\'s contract, the submitter gets its gas back', async () => {
  const { net, worker, client, clientContract } = await setup();
  const relayer = await net.bc.treasury('relayer');
  const e = await evidence(net, worker, client);
  const before = await balance(net.bc, worker);
  const r = await send(net, relayer, worker, slashBody(e));
  assertSuccess(r, worker);
  assertSuccess(r, net.proxy);
  assertSuccess(r, clientContract);
  const share = (toNano('5') * BigInt(DEFAULT_TERMS.slashShare)) / 10000n;
  const paid = refundedTo(r, clientContract);
  assert.equal(paid.amount, share);
  assert.ok(paid.value >= share, 'the payment carries the amount');
  assert.equal(paid.request, BigInt('0x' + REQUEST));
  assert.equal((await clientData(net.bc, clientContract)).balance, share, 'the slash deployed the client contract and credited it');
  assert.equal(txsOn(r, relayer.address, OP.Excesses).length, 1, 'the gas comes back to the submitter');
  const s = await workerStake(net.bc, worker);
  assert.equal(s.stake, toNano('5') - share);
  assert.equal(s.slashed, share);
  assert.ok(before - (await balance(net.bc, worker)) >= share, 'the amount left the worker contract');
  const time = net.bc.now - 60;
  const w = await get(net.bc, worker, 'was_slashed_for', [{ type: 'int', value: BigInt(time) }, { type: 'int', value: BigInt('0x' + REQUEST) }]);
  assert.equal(w.readBoolean(), true);

  // The same evidence, or the same receipt in evidence signed anew, slashes no more.
  assertRefused(await send(net, relayer, worker, slashBody(e)), worker, EXIT.EVIDENCE_REPLAYED);
  net.bc.now += 10;
  const again = await evidence(net, worker, client, { time });
  assertRefused(await send(net, relayer, worker, slashBody(again)), worker, EXIT.EVIDENCE_REPLAYED);
  assert.equal((await workerStake(net.bc, worker)).stake, toNano('5') - share);

  // Still above the minimum after this slash: payouts go on.
  const v = await voucher(net, 'worker', worker, toNano('1'), 1);
  assertSuccess(await send(net, relayer, worker, payoutBody(v)), worker);
});

test('receipts signed in a batch are evidence too: the contract climbs their paths', async () => {
  const { net, worker, client, clientContract } = await setup();
  const time = net.bc.now;
  const e = await evidence(net, worker, client, {
    accused: { seed: ACCUSED_SEED, request: REQUEST, content: WRONG, model: MODEL, time, batch: 'batch' },
    first: { seed: FIRST_SEED, request: REQUEST, content: HONEST, model: MODEL, time, batch: 'batch' },
  });
  const r = await send(net, client, worker, slashBody(e));
  assertSuccess(r, worker);
  assert.equal(refundedTo(r, clientContract).amount, toNano('0.5'));
});

test('a slash takes the root\'s share of what is staked, and still works during the withdrawal delay', async () => {
  const { net, owner, worker, client, clientContract } = await setup({
    stake: toNano('1'),
    terms: { ...DEFAULT_TERMS, slashShare: 10000 },
  });
  assertSuccess(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker);
  const r = await send(net, client, worker, slashBody(await evidence(net, worker, client)));
  assertSuccess(r, worker);
  assert.equal(refundedTo(r, clientContract).amount, toNano('1'));
  assert.equal((await workerStake(net.bc, worker)).stake, 0n);
  // Nothing left to slash: further evidence is refused rather than paid for.
  const other = '02'.repeat(32);
  const time = net.bc.now;
  const e = await evidence(net, worker, client, {
    accused: { seed: ACCUSED_SEED, request: other, content: WRONG, model: MODEL, time },
    first: { seed: FIRST_SEED, request: other, content: HONEST, model: MODEL, time },
    second: { seed: SECOND_SEED, request: other, content: HONEST, model: MODEL, time },
  });
  assertRefused(await send(net, client, worker, slashBody(e)), worker, EXIT.NO_STAKE);
  // A worker leaving is not paid; one below the minimum is not paid either.
  const v = await voucher(net, 'worker', worker, toNano('1'), 1);
  assertRefused(await send(net, owner, worker, payoutBody(v)), worker, EXIT.STAKE_WITHDRAWING);
  assertSuccess(await send(net, owner, worker, body(OP.CancelStakeWithdrawal)), worker);
  assertRefused(await send(net, owner, worker, payoutBody(v)), worker, EXIT.STAKE_BELOW_MINIMUM);
});

test('forged, mismatched or stale evidence is refused with the check that failed, and moves nothing', async () => {
  const { net, worker, client, clientContract } = await setup();
  const otherOwner = await net.bc.treasury('other-worker-owner');
  const otherWorker = await openWorker(net, otherOwner);
  const now = net.bc.now;
  const r = (seed, fields = {}) => ({ seed, request: REQUEST, content: HONEST, model: MODEL, time: now, ...fields });
  const cases = [
    ['signed by another key than the proxy contract\'s', { proxySeed: OTHER_SEED }, EXIT.EVIDENCE_SIGNATURE],
    ['naming another worker contract', { worker: otherWorker }, EXIT.EVIDENCE_WORKER],
    ['expired', { expiresAt: now - 1 }, EXIT.EVIDENCE_EXPIRED],
    ['accusing with a key the worker never registered', { accused: r(SECOND_SEED, { content: WRONG }), second: r(ACCUSED_SEED) }, EXIT.RECEIPT_KEY_UNKNOWN],
    ['with a receipt its key did not sign', { accused: r(ACCUSED_SEED, { content: WRONG, forged: true }) }, EXIT.RECEIPT_SIGNATURE],
    ['with a witness receipt its key did not sign', { second: r(SECOND_SEED, { forged: true }) }, EXIT.RECEIPT_SIGNATURE],
    ['with a batch path altered after signing', { accused: r(ACCUSED_SEED, { content: WRONG, batch: 'batchforged' }) }, EXIT.RECEIPT_SIGNATURE],
    ['with a signed batch path deeper than a batch may be', { first: r(FIRST_SEED, { batch: 'batchdeep' }) }, EXIT.RECEIPT_BATCH],
    ['about two different requests', { first: r(FIRST_SEED, { request: '03'.repeat(32) }) }, EXIT.EVIDENCE_MISMATCH],
    ['about two different models', { second: r(SECOND_SEED, { model: '0b'.repeat(32) }) }, EXIT.EVIDENCE_MISMATCH],
    ['where the witnesses disagree', { second: r(SECOND_SEED, { content: 'e0'.repeat(32) }) }, EXIT.NOT_A_DISSENT],
    ['where the accused agrees', { accused: r(ACCUSED_SEED) }, EXIT.NOT_A_DISSENT],
    ['without content digests', { accused: r(ACCUSED_SEED, { content: '00'.repeat(32) }) }, EXIT.NOT_A_DISSENT],
    ['where one worker witnesses against itself', { first: r(ACCUSED_SEED) }, EXIT.NOT_A_DISSENT],
    ['with a receipt as old as evidence may not be', { accused: r(ACCUSED_SEED, { content: WRONG, time: now - EVIDENCE_WINDOW }) }, EXIT.RECEIPT_TOO_OLD],
    ['with a receipt dated more than an hour ahead', { accused: r(ACCUSED_SEED, { content: WRONG, time: now + 3601 }) }, EXIT.RECEIPT_TOO_OLD],
  ];
  for (const [what, overrides, exit] of cases) {
    const e = await evidence(net, worker, client, overrides);
    const result = await send(net, client, worker, slashBody(e));
    assert.doesNotThrow(() => assertRefused(result, worker, exit), `evidence ${what}: expected exit ${exit}`);
    assert.equal(txsOn(result, clientContract, OP.SlashRefund).length, 0, `evidence ${what}: nothing paid`);
  }
  const s = await workerStake(net.bc, worker);
  assert.equal(s.stake, toNano('5'));
  assert.equal(s.slashed, 0n);
  // A slash must carry its gas.
  assertRefused(await send(net, client, worker, slashBody(await evidence(net, worker, client)), toNano('0.04')), worker, EXIT.NOT_ENOUGH_VALUE);
});

test('receipt keys: the owner adds and removes them; a removed key stays evidence for the stake\'s delay', async () => {
  const { net, owner, worker, client, clientContract, accusedKey } = await setup();
  const stranger = await net.bc.treasury('stranger');
  const add = (k) => body(OP.AddReceiptKey, (b) => b.storeUint(k, 256));
  const remove = (k) => body(OP.RemoveReceiptKey, (b) => b.storeUint(k, 256));
  assertRefused(await send(net, stranger, worker, add(5n)), worker, EXIT.NOT_OWNER);
  assertRefused(await send(net, stranger, worker, remove(accusedKey)), worker, EXIT.NOT_OWNER);
  assert.equal(await receiptKey(net.bc, worker, accusedKey), 0);
  assertRefused(await send(net, owner, worker, remove(5n)), worker, EXIT.NO_SUCH_KEY);

  assertSuccess(await send(net, owner, worker, remove(accusedKey)), worker);
  const until = net.bc.now + slashableFor(net.terms);
  assert.equal(await receiptKey(net.bc, worker, accusedKey), until);
  assertRefused(await send(net, owner, worker, remove(accusedKey)), worker, EXIT.NO_SUCH_KEY);
  // Removing the key does not escape what it signed: a receipt signed just
  // before is evidence for as long as any receipt is.
  const signedAt = net.bc.now;
  net.bc.now = signedAt + EVIDENCE_WINDOW - 1;
  const r = await send(net, client, worker, slashBody(await evidence(net, worker, client, { time: signedAt })));
  assertSuccess(r, worker);
  assert.equal(refundedTo(r, clientContract).amount, toNano('0.5'));
  net.bc.now = until;
  assert.equal(await receiptKey(net.bc, worker, accusedKey), -1);
  const later = await evidence(net, worker, client, { time: net.bc.now });
  assertRefused(await send(net, client, worker, slashBody(later)), worker, EXIT.RECEIPT_KEY_UNKNOWN);

  // At most 16 keys, removed ones counted until they expire.
  for (let k = 1n; k <= 16n; k++) {
    assertSuccess(await send(net, owner, worker, add(k * 1000n + 7n)), worker);
  }
  assertRefused(await send(net, owner, worker, add(99n)), worker, EXIT.TOO_MANY_KEYS);
  // Adding a key held already changes nothing but its state.
  assertSuccess(await send(net, owner, worker, add(1007n)), worker);
});

test('the proxy owner publishes a reputation digest; no one else can', async () => {
  const net = await world(signer);
  const digest = BigInt('0x' + 'fe'.repeat(32));
  const publish = (d, workers) => body(OP.PublishReputation, (b) => b.storeUint(d, 256).storeUint(workers, 32));
  const stranger = await net.bc.treasury('stranger');
  assertRefused(await send(net, stranger, net.proxy, publish(digest, 3)), net.proxy, EXIT.NOT_OWNER);
  let g = await get(net.bc, net.proxy, 'get_reputation');
  assert.deepEqual([g.readBigNumber(), g.readNumber(), g.readNumber(), g.readNumber()], [0n, 0, 0, 0]);
  assertSuccess(await send(net, net.proxyOwner, net.proxy, publish(digest, 3)), net.proxy);
  net.bc.now += 600;
  assertSuccess(await send(net, net.proxyOwner, net.proxy, publish(digest - 1n, 4)), net.proxy);
  g = await get(net.bc, net.proxy, 'get_reputation');
  assert.deepEqual([g.readBigNumber(), g.readNumber(), g.readNumber(), g.readNumber()], [digest - 1n, 4, 2, net.bc.now]);
});
