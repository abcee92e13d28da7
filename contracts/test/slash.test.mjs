// Worker stakes and slashing: the stake a worker locks (the root's minimum
// for payouts), its withdrawal delay, and slash evidence built and signed
// by crates/receipt exactly as a proxy does: valid evidence pays part of
// the stake to the affected client once; forged, mismatched or replayed
// evidence is refused and moves nothing. Also the proxy's published
// reputation digest.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  RustVoucherSigner, world, openWorker, workerStake, voucher, payoutBody, send, body, get,
  assertSuccess, assertRefused, txsOn, balance, beginCell,
  OP, EXIT, OTHER_SEED, GAS, toNano,
} from './helpers.mjs';

const signer = new RustVoucherSigner();
after(() => signer.close());

const REQUEST = '01'.repeat(32);
const MODEL = '0a'.repeat(32);
const HONEST = 'c0'.repeat(32);
const WRONG = 'd0'.repeat(32);
// Worker keys: the accused and two witnesses.
const ACCUSED_SEED = 'a1'.repeat(32);
const FIRST_SEED = 'a2'.repeat(32);
const SECOND_SEED = 'a3'.repeat(32);

async function setup({ stake } = {}) {
  const net = await world(signer);
  const owner = await net.bc.treasury('worker-owner');
  const worker = await openWorker(net, owner, { stake: stake ?? toNano('5') });
  const client = await net.bc.treasury('client-owner');
  return { net, owner, worker, client };
}

/** Evidence that `worker` answered WRONG where two others answered HONEST. */
function evidence(net, worker, client, overrides = {}) {
  return signer.evidence({
    worker,
    client: client.address,
    amount: toNano('2'),
    expiresAt: net.bc.now + 3600,
    accused: { seed: ACCUSED_SEED, request: REQUEST, content: WRONG, model: MODEL },
    first: { seed: FIRST_SEED, request: REQUEST, content: HONEST, model: MODEL },
    second: { seed: SECOND_SEED, request: REQUEST, content: HONEST, model: MODEL },
    ...overrides,
  });
}

function slashBody(signedEvidence) {
  return body(OP.Slash, (b) => b.storeRef(signedEvidence));
}

function slashedTo(result, client) {
  const txs = txsOn(result, client.address, OP.WorkerSlashed);
  assert.equal(txs.length, 1, 'one WorkerSlashed to the client');
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
  assert.equal(s.stakeDelay, net.terms.proxyCloseDelay);
  assert.equal(s.unlockAt, 0);
  assert.equal(s.slashed, 0n);
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

test('only the owner takes the stake back, and only after the delay', async () => {
  const { net, owner, worker } = await setup();
  const thief = await net.bc.treasury('thief');
  assertRefused(await send(net, owner, worker, body(OP.WithdrawWorkerStake)), worker, EXIT.WRONG_STATE);
  assertRefused(await send(net, thief, worker, body(OP.RequestStakeWithdrawal)), worker, EXIT.NOT_OWNER);
  assertSuccess(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker);
  assert.equal((await workerStake(net.bc, worker)).unlockAt, net.bc.now + net.terms.proxyCloseDelay);
  assertRefused(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker, EXIT.WRONG_STATE);
  assertRefused(await send(net, owner, worker, body(OP.WithdrawWorkerStake)), worker, EXIT.TOO_EARLY);
  net.bc.now += net.terms.proxyCloseDelay;
  assertRefused(await send(net, thief, worker, body(OP.WithdrawWorkerStake)), worker, EXIT.NOT_OWNER);
  const r = await send(net, owner, worker, body(OP.WithdrawWorkerStake));
  assertSuccess(r, worker);
  assert.ok(txsOn(r, owner.address, OP.Withdrawal)[0].inMessage.info.value.coins >= toNano('5'));
  assert.equal((await workerStake(net.bc, worker)).stake, 0n);
  assertRefused(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker, EXIT.NO_STAKE);
});

test('valid evidence slashes once: the client gets the amount, the stake falls, the submitter gets its gas back', async () => {
  const { net, worker, client } = await setup();
  const relayer = await net.bc.treasury('relayer');
  const e = await evidence(net, worker, client);
  const before = await balance(net.bc, worker);
  const r = await send(net, relayer, worker, slashBody(e));
  assertSuccess(r, worker);
  const paid = slashedTo(r, client);
  assert.equal(paid.amount, toNano('2'));
  assert.equal(paid.value, toNano('2'), 'the payment carries exactly the amount');
  assert.equal(paid.request, BigInt('0x' + REQUEST));
  assert.equal(txsOn(r, relayer.address, OP.Excesses).length, 1, 'the gas comes back to the submitter');
  const s = await workerStake(net.bc, worker);
  assert.equal(s.stake, toNano('3'));
  assert.equal(s.slashed, toNano('2'));
  assert.ok(before - (await balance(net.bc, worker)) >= toNano('2'), 'the amount left the worker contract');
  const w = await get(net.bc, worker, 'was_slashed_for', [{ type: 'int', value: BigInt('0x' + REQUEST) }]);
  assert.equal(w.readBoolean(), true);

  // The same evidence, or new evidence for the same request, slashes no more.
  assertRefused(await send(net, relayer, worker, slashBody(e)), worker, EXIT.EVIDENCE_REPLAYED);
  const again = await evidence(net, worker, client, { amount: toNano('1') });
  assertRefused(await send(net, relayer, worker, slashBody(again)), worker, EXIT.EVIDENCE_REPLAYED);
  assert.equal((await workerStake(net.bc, worker)).stake, toNano('3'));

  // Below the minimum after slashing? Still above it here: payouts go on.
  const v = await voucher(net, 'worker', worker, toNano('1'), 1);
  assertSuccess(await send(net, relayer, worker, payoutBody(v)), worker);
});

test('receipts signed in a batch are evidence too: the contract climbs their paths', async () => {
  const { net, worker, client } = await setup();
  const e = await evidence(net, worker, client, {
    accused: { seed: ACCUSED_SEED, request: REQUEST, content: WRONG, model: MODEL, batch: 'batch' },
    first: { seed: FIRST_SEED, request: REQUEST, content: HONEST, model: MODEL, batch: 'batch' },
  });
  const r = await send(net, client, worker, slashBody(e));
  assertSuccess(r, worker);
  assert.equal(slashedTo(r, client).amount, toNano('2'));
});

test('a slash takes at most what is staked, and still works during the withdrawal delay', async () => {
  const { net, owner, worker, client } = await setup({ stake: toNano('1') });
  assertSuccess(await send(net, owner, worker, body(OP.RequestStakeWithdrawal)), worker);
  const r = await send(net, client, worker, slashBody(await evidence(net, worker, client, { amount: toNano('50') })));
  assertSuccess(r, worker);
  assert.equal(slashedTo(r, client).amount, toNano('1'));
  const s = await workerStake(net.bc, worker);
  assert.equal(s.stake, 0n);
  // Nothing left to slash: further evidence is refused rather than paid for.
  const other = '02'.repeat(32);
  const e = await evidence(net, worker, client, {
    accused: { seed: ACCUSED_SEED, request: other, content: WRONG, model: MODEL },
    first: { seed: FIRST_SEED, request: other, content: HONEST, model: MODEL },
    second: { seed: SECOND_SEED, request: other, content: HONEST, model: MODEL },
  });
  assertRefused(await send(net, client, worker, slashBody(e)), worker, EXIT.NO_STAKE);
  // And a worker below the minimum is not paid.
  const v = await voucher(net, 'worker', worker, toNano('1'), 1);
  assertRefused(await send(net, owner, worker, payoutBody(v)), worker, EXIT.STAKE_BELOW_MINIMUM);
});

test('forged or mismatched evidence is refused with the check that failed, and moves nothing', async () => {
  const { net, worker, client } = await setup();
  const otherOwner = await net.bc.treasury('other-worker-owner');
  const otherWorker = await openWorker(net, otherOwner);
  const r = (seed, fields = {}) => ({ seed, request: REQUEST, content: HONEST, model: MODEL, ...fields });
  const cases = [
    ['signed by another key than the proxy contract\'s', { proxySeed: OTHER_SEED }, EXIT.EVIDENCE_SIGNATURE],
    ['naming another worker contract', { worker: otherWorker }, EXIT.EVIDENCE_WORKER],
    ['expired', { expiresAt: net.bc.now - 1 }, EXIT.EVIDENCE_EXPIRED],
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
    ['of a zero amount', { amount: 0n }, EXIT.ZERO_AMOUNT],
  ];
  for (const [what, overrides, exit] of cases) {
    const e = await evidence(net, worker, client, overrides);
    const result = await send(net, client, worker, slashBody(e));
    assert.doesNotThrow(() => assertRefused(result, worker, exit), `evidence ${what}: expected exit ${exit}`);
    assert.equal(txsOn(result, client.address, OP.WorkerSlashed).length, 0, `evidence ${what}: nothing paid`);
  }
  const s = await workerStake(net.bc, worker);
  assert.equal(s.stake, toNano('5'));
  assert.equal(s.slashed, 0n);
  // A slash must carry its gas.
  assertRefused(await send(net, client, worker, slashBody(await evidence(net, worker, client)), toNano('0.01')), worker, EXIT.NOT_ENOUGH_VALUE);
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
