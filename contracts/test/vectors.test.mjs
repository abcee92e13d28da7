// Scenario vectors: a whole settlement life recorded in @ton/sandbox, to be
// replayed by the Rust devnet (crates/devnet/tests/vectors.rs), which must
// reproduce every transaction's gas, fees, exit code and every balance.
//
// The file vectors/settlement.json is committed. This test re-records the
// scenario and fails if the sandbox no longer produces exactly the committed
// file; `UPDATE_VECTORS=1 npm test` rewrites it after a deliberate change
// (a contract's code, the sandbox's version).
//
// What a vector holds:
//   accounts   the starting accounts (the sandbox's treasuries, already
//              funded), as ShardAccount bags of cells;
//   steps      each one external message (hex BoC) sent at `now`, and the
//              transactions it caused, in the sandbox's order, with the
//              balances of every account they touched afterwards.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Blockchain } from '@ton/sandbox';
import { beginCell, storeMessage, storeShardAccount } from '@ton/core';
import {
  RustVoucherSigner, CONTRACTS_DIR, CODES, OP, GAS, REGISTER_VALUE, START_TIME, DEFAULT_TERMS, PROXY_SEED,
  rootData, body, text, contractAddress, toNano, clientInit, workerInit, getAddress,
  chargeBody, payoutBody, computeOf,
} from './helpers.mjs';

const VECTORS = join(CONTRACTS_DIR, 'vectors');
const signer = new RustVoucherSigner();
after(() => signer.close());

const hex = (cell) => cell.toBoc({ idx: false, crc32: false }).toString('hex');

function opOf(message) {
  const s = message.body.beginParse();
  return s.remainingBits >= 32 ? s.preloadUint(32) : null;
}

/** Records every external message sent and what it caused. */
class Recorder {
  constructor(bc) {
    this.bc = bc;
    this.steps = [];
  }

  async record(result) {
    const [first] = result.transactions;
    assert.equal(first.inMessage.info.type, 'external-in', 'a step starts with an external message');
    const touched = new Map();
    const txs = result.transactions.map((tx) => {
      const compute = computeOf(tx);
      const account = tx.inMessage.info.dest.toRawString();
      touched.set(account, tx.inMessage.info.dest);
      return {
        account,
        op: opOf(tx.inMessage),
        bounced: tx.inMessage.info.type === 'internal' && tx.inMessage.info.bounced,
        gas: compute ? Number(compute.gasUsed) : null,
        exit: compute ? compute.exitCode : null,
        aborted: tx.description.aborted,
        fees: tx.totalFees.coins.toString(),
        out: tx.outMessagesCount,
        end_status: tx.endStatus,
      };
    });
    const balances = {};
    for (const a of [...touched.keys()].sort()) {
      balances[a] = (await this.bc.getContract(touched.get(a))).balance.toString();
    }
    this.steps.push({
      now: this.bc.now,
      message: hex(beginCell().store(storeMessage(first.inMessage)).endCell()),
      transactions: txs,
      balances,
    });
    return result;
  }
}

async function settlementLife() {
  const bc = await Blockchain.create();
  bc.now = START_TIME;
  const names = ['root-owner', 'proxy-owner', 'alice', 'worker-1'];
  const [rootOwner, proxyOwner, alice, w1] = await Promise.all(names.map((n) => bc.treasury(n)));
  const accounts = [];
  for (const t of [rootOwner, proxyOwner, alice, w1]) {
    const c = await bc.getContract(t.address);
    accounts.push(hex(beginCell().store(storeShardAccount(c.account)).endCell()));
  }

  const rec = new Recorder(bc);
  const send = async (from, to, msgBody, value = GAS, extra = {}) =>
    rec.record(await from.send({ to, value, body: msgBody, bounce: true, ...extra }));

  // The root, a registered and staked proxy.
  const init = { code: CODES.root, data: rootData(rootOwner.address) };
  const root = contractAddress(0, init);
  await rec.record(await rootOwner.send({ to: root, value: toNano('1'), init, bounce: false }));
  const proxyKey = await signer.key(PROXY_SEED);
  await send(rootOwner, root, body(OP.RegisterProxy, (b) =>
    b.storeAddress(proxyOwner.address).storeUint(proxyKey, 256).storeRef(text('tls://127.0.0.1:10010'))), REGISTER_VALUE);
  const proxy = await getAddress(bc, root, 'get_proxy_address', [
    { type: 'slice', cell: beginCell().storeAddress(proxyOwner.address).endCell() },
    { type: 'int', value: proxyKey },
  ]);
  await send(proxyOwner, proxy, body(OP.AddProxyStake, (b) => b.storeCoins(toNano('10'))), toNano('10') + GAS);
  await send(rootOwner, root, body(OP.SetModel, (b) => b.storeUint(9n, 256).storeMaybeRef(text('SmolLM2-135M-Instruct'))));

  // A client and a worker join.
  const net = { proxy, proxyKey, terms: DEFAULT_TERMS };
  const ci = clientInit(net, alice.address);
  const client = contractAddress(0, ci);
  await send(alice, client, body(OP.TopUp, (b) => b.storeCoins(toNano('5'))), toNano('5') + GAS, { init: ci });
  const wi = workerInit(net, w1.address);
  const worker = contractAddress(0, wi);
  await rec.record(await w1.send({
    to: worker, value: toNano('2.2'), init: wi, bounce: false,
    body: body(OP.AddWorkerStake, (b) => b.storeCoins(toNano('2'))),
  }));
  const receiptKey = await signer.key('a1'.repeat(32));
  await send(w1, worker, body(OP.AddReceiptKey, (b) => b.storeUint(receiptKey, 256)));

  const sign = (kind, party, total, seqno) => signer.sign({
    kind, contract: proxy, party, total, seqno, expiresAt: bc.now + 3600, seed: PROXY_SEED,
  });

  // Charges, one replayed (refused, bounced), payouts, a withdrawal, a close.
  await send(proxyOwner, client, chargeBody(await sign('client', client, toNano('2'), 1)));
  const replay = chargeBody(await sign('client', client, toNano('2'), 1));
  await send(proxyOwner, client, replay);
  await send(proxyOwner, client, chargeBody(await sign('client', client, toNano('3'), 2)));
  await send(w1, worker, payoutBody(await sign('worker', worker, toNano('2'), 1)));
  await send(w1, worker, payoutBody(await sign('worker', worker, toNano('2.5'), 2)));
  await send(proxyOwner, proxy, body(OP.WithdrawCommission, (b) => b.storeCoins(toNano('0.2'))));
  // The worker outvoted on a deterministic request: a slash through the
  // proxy contract into alice's client contract.
  const receipt = (seed, content) => ({ seed, request: '01'.repeat(32), content, model: '0a'.repeat(32), time: bc.now });
  const evidence = await signer.evidence({
    worker,
    clientOwner: alice.address,
    expiresAt: bc.now + 3600,
    accused: receipt('a1'.repeat(32), 'd0'.repeat(32)),
    first: receipt('a2'.repeat(32), 'c0'.repeat(32)),
    second: receipt('a3'.repeat(32), 'c0'.repeat(32)),
  });
  await send(proxyOwner, worker, body(OP.Slash, (b) => b.storeRef(evidence)));
  await send(alice, client, body(OP.WithdrawBalance, (b) => b.storeCoins(toNano('0.5'))));
  await send(alice, client, body(OP.RequestClientClose));
  bc.now += DEFAULT_TERMS.clientCloseDelay;
  await send(alice, client, body(OP.FinishClientClose));
  await send(proxyOwner, proxy, body(OP.RequestProxyClose));
  bc.now += DEFAULT_TERMS.proxyCloseDelay;
  await send(proxyOwner, proxy, body(OP.FinishProxyClose));

  return {
    scenario: 'settlement life: root, proxy, a client and a worker from deployment to close',
    recorded_with: '@ton/sandbox 0.41.0, its default config',
    accounts,
    steps: rec.steps,
  };
}

test('the settlement vectors are what the sandbox produces', async () => {
  const vector = await settlementLife();
  const text = JSON.stringify(vector, null, 1) + '\n';
  const path = join(VECTORS, 'settlement.json');
  if (process.env.UPDATE_VECTORS === '1') {
    mkdirSync(VECTORS, { recursive: true });
    writeFileSync(path, text);
    return;
  }
  assert.ok(existsSync(path), `${path} is missing: run \`UPDATE_VECTORS=1 npm test\` in contracts/`);
  const committed = readFileSync(path, 'utf-8');
  assert.equal(text, committed,
    'the sandbox no longer produces the committed vectors: if the change is deliberate, ' +
    'run `UPDATE_VECTORS=1 npm test` in contracts/ and commit vectors/');
  // Every step did something, and the refused replay is among them.
  assert.ok(vector.steps.every((s) => s.transactions.length > 0));
  assert.ok(vector.steps.some((s) => s.transactions.some((t) => t.exit === 114 && t.aborted)),
    'the replayed voucher is refused (its total is not above what was committed)');
});
