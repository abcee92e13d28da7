// A TON developer's own tools against a `cocoon devnet`: @ton/ton's
// TonClient, over toncenter's /jsonRPC, reads a wallet's balance, runs a
// get-method, estimates a fee and sends a transfer that lands, then reads
// the payee's transaction and the network's global id (config param 19).
//
//   node scripts/tonclient-check.mjs http://127.0.0.1:PORT/api/v2
//   node scripts/tonclient-check.mjs http://127.0.0.1:PORT/api/v2 --pay 'ton://transfer/...'
//
// With --pay, it instead pays a ton://transfer link (amount, bin payload,
// init) from a fresh wallet, as a wallet app would, and waits until the
// destination's transaction has run.
//
// The devnet must run with --dev (the wallet is funded by its faucet).
// Prints one JSON line of what it saw; exits non-zero on any mismatch.
import assert from 'node:assert/strict';
import { TonClient, WalletContractV5R1, internal } from '@ton/ton';
import { Address, Cell, SendMode, loadStateInit, toNano } from '@ton/core';
import { mnemonicNew, mnemonicToPrivateKey } from '@ton/crypto';

const api = process.argv[2];
assert.ok(api, 'usage: tonclient-check.mjs API_BASE (…/api/v2)');

async function rpc(method, params) {
  let r;
  for (let i = 0; i < 100; i++) {
    r = await fetch(`${api}/jsonRPC`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 1, jsonrpc: '2.0', method, params }),
    });
    if (r.status !== 429) break;
    await new Promise((done) => setTimeout(done, 200));
  }
  const body = await r.json();
  assert.equal(body.ok, true, `${method}: ${JSON.stringify(body)}`);
  return body.result;
}

/** Calls again while the endpoint answers 429 (a rate-limited devnet). */
async function paced(call) {
  for (let i = 0; ; i++) {
    try {
      return await call();
    } catch (e) {
      if (i > 100 || !String(e).includes('429')) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function until(what, check, ms = 30_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    assert.ok(Date.now() < end, `${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The network's global id, which wallet ids are bound to.
const param = await rpc('getConfigParam', { config_id: 19 });
const globalId = Cell.fromBase64(param.config.bytes).beginParse().loadInt(32);

const client = new TonClient({ endpoint: `${api}/jsonRPC` });
const key = await mnemonicToPrivateKey(await mnemonicNew());
const wallet = WalletContractV5R1.create({
  publicKey: key.publicKey,
  walletId: { networkGlobalId: globalId },
});
const opened = client.open(wallet);

// Funded by the devnet's faucet (a development tool, not toncenter's).
const funded = await fetch(`${api}/devnet/faucet`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ address: wallet.address.toRawString(), amount: '3000000000' }),
});
assert.equal(funded.status, 200, await funded.text());

if (process.argv[3] === '--pay') {
  const link = new URL(process.argv[4]);
  const target = process.argv[4].match(/^ton:\/\/transfer\/([^?]+)/);
  assert.ok(target, `not a ton://transfer link: ${process.argv[4]}`);
  const to = Address.parse(target[1]);
  const b64 = (s) => Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  const body = Cell.fromBoc(b64(link.searchParams.get('bin')))[0];
  const initParam = link.searchParams.get('init');
  const init = initParam ? loadStateInit(Cell.fromBoc(b64(initParam))[0].beginParse()) : undefined;
  const before = (await paced(() => client.getTransactions(to, { limit: 1 })))[0]?.lt ?? 0n;
  // Signed once; the same message is sent again until it lands, as a wallet
  // app does when the chain drops an external (its seqno makes a second
  // copy harmless).
  const transfer = wallet.createTransfer({
    seqno: 0,
    secretKey: key.secretKey,
    sendMode: SendMode.PAY_GAS_SEPARATELY + SendMode.IGNORE_ERRORS,
    messages: [internal({ to, value: BigInt(link.searchParams.get('amount')), bounce: true, body, init })],
  });
  let sentAt = 0;
  const tx = await until('the link paid', async () => {
    if (Date.now() - sentAt > 2000) {
      await opened.send(transfer).catch(() => {}); // refused once the first copy landed
      sentAt = Date.now();
    }
    const [t] = await paced(() => client.getTransactions(to, { limit: 1 }));
    return t && t.lt > before && t.inMessage?.info.src?.equals(wallet.address) ? t : null;
  }, 90_000);
  assert.equal(tx.description.computePhase.type, 'vm');
  assert.equal(tx.description.computePhase.exitCode, 0);
  console.log(JSON.stringify({ paid: link.searchParams.get('amount'), to: to.toRawString() }));
  process.exit(0);
}
assert.equal(await client.getBalance(wallet.address), toNano('3'));
assert.equal(await client.isContractDeployed(wallet.address), false);

// A transfer, signed and sent by @ton/ton; it deploys the wallet.
const payee = Address.parse(`0:${'5a'.repeat(32)}`);
const seqno = await opened.getSeqno();
assert.equal(seqno, 0);
const transfer = wallet.createTransfer({
  seqno,
  secretKey: key.secretKey,
  // Fees from the wallet, so the payee gets exactly the value.
  sendMode: SendMode.PAY_GAS_SEPARATELY + SendMode.IGNORE_ERRORS,
  messages: [internal({ to: payee, value: toNano('1'), bounce: false, body: 'hello' })],
});
const fee = await client.estimateExternalMessageFee(wallet.address, {
  body: transfer,
  initCode: wallet.init.code,
  initData: wallet.init.data,
  ignoreSignature: true,
});
assert.ok(fee.source_fees.gas_fee > 0, JSON.stringify(fee));
await opened.send(transfer);
const landed = await until('the payee credited', async () => {
  const b = await client.getBalance(payee);
  return b === toNano('1') ? b : null;
});

// A get-method, on the wallet the transfer deployed.
const after = await client.runMethod(wallet.address, 'seqno');
assert.equal(after.stack.readNumber(), 1);
const state = await client.getContractState(wallet.address);
assert.equal(state.state, 'active');

// The payee's transaction, with the comment the wallet sent.
const txs = await client.getTransactions(payee, { limit: 5 });
assert.equal(txs.length, 1);
const inMsg = txs[0].inMessage;
assert.equal(inMsg.info.src.toString(), wallet.address.toString());
assert.equal(inMsg.body.beginParse().skip(32).loadStringTail(), 'hello');
const head = await client.getMasterchainInfo();
assert.ok(head.latestSeqno > 0);

console.log(
  JSON.stringify({
    global_id: globalId,
    wallet: wallet.address.toRawString(),
    payee_balance: landed.toString(),
    fee_gas: fee.source_fees.gas_fee,
    transactions: txs.length,
    head: head.latestSeqno,
  }),
);
