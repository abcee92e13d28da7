// Shared by the contract tests: the compiled artifacts, message builders
// that follow contracts/README.md, a local network on @ton/sandbox, and
// vouchers signed by crates/pay's own Rust code.

import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Blockchain } from '@ton/sandbox';
import { Address, beginCell, Cell, contractAddress, Dictionary, loadStateInit, toNano } from '@ton/core';
import { filterTransactions, findTransaction, flattenTransaction } from '@ton/test-utils';

const HERE = dirname(fileURLToPath(import.meta.url));
export const CONTRACTS_DIR = resolve(HERE, '..');
const REPO = resolve(CONTRACTS_DIR, '..');

// ---- artifacts ----

/** The committed compiled code of a contract (build/<name>.json). */
export function code(name) {
  const artifact = JSON.parse(readFileSync(join(CONTRACTS_DIR, 'build', `${name}.json`), 'utf-8'));
  const cell = Cell.fromBoc(Buffer.from(artifact.codeBoc, 'hex'))[0];
  assert.equal(cell.hash().toString('hex'), artifact.codeHash, `${name}: code hash does not match its BoC`);
  return cell;
}

export const CODES = {
  root: code('RootContract'),
  proxy: code('ProxyContract'),
  client: code('ClientContract'),
  worker: code('WorkerContract'),
};

// ---- op codes and exit codes (contracts/src/common) ----

export const OP = {
  Excesses: 0xd53276db,
  Withdrawal: 0x0ec4d0a1,
  RegisterProxy: 0x52c00001,
  UnregisterProxy: 0x52c00002,
  SetImage: 0x52c00003,
  SetModel: 0x52c00004,
  SetPrices: 0x52c00005,
  SetTerms: 0x52c00006,
  SetCodes: 0x52c00007,
  ProposeOwner: 0x52c00008,
  AcceptOwnership: 0x52c00009,
  WithdrawFromRoot: 0x52c0000a,
  SetTierMultipliers: 0x52c0000b,
  SetRegionPrice: 0x52c0000c,
  SetModelPrice: 0x52c0000d,
  SetOperator: 0x52c0000e,
  DeployProxy: 0x50c00000,
  AddProxyStake: 0x50c00001,
  WithdrawCommission: 0x50c00002,
  RequestProxyClose: 0x50c00003,
  FinishProxyClose: 0x50c00004,
  ClientCharged: 0x50c00005,
  PayWorker: 0x50c00006,
  WorkerPaid: 0x50c00007,
  TopUp: 0x43c00001,
  WithdrawBalance: 0x43c00002,
  Charge: 0x43c00003,
  RequestClientClose: 0x43c00004,
  FinishClientClose: 0x43c00005,
  Payout: 0x57c00001,
  ReclaimWorker: 0x57c00002,
  AddWorkerStake: 0x57c00003,
  RequestStakeWithdrawal: 0x57c00004,
  WithdrawWorkerStake: 0x57c00005,
  Slash: 0x57c00006,
  PublishReputation: 0x50c00008,
  ForwardSlash: 0x50c00009,
  SlashRefund: 0x43c00006,
  PayoutSettled: 0x57c00008,
  AddReceiptKey: 0x57c00009,
  RemoveReceiptKey: 0x57c0000a,
  CancelStakeWithdrawal: 0x57c0000b,
};

export const EXIT = {
  CELL_UNDERFLOW: 9,
  NOT_OWNER: 100,
  NOT_PENDING_OWNER: 101,
  NOT_ENOUGH_VALUE: 102,
  UNKNOWN_OP: 103,
  NOT_ROOT: 104,
  UNKNOWN_ROLE: 105,
  BAD_PRICES: 106,
  NO_SUCH_PROXY: 107,
  BAD_TERMS: 108,
  WEAK_KEY: 109,
  VOUCHER_SIGNATURE: 110,
  VOUCHER_KIND: 111,
  VOUCHER_CONTRACT: 112,
  VOUCHER_PARTY: 113,
  VOUCHER_TOTAL: 114,
  VOUCHER_SEQNO: 115,
  VOUCHER_EXPIRED: 116,
  INSUFFICIENT_FUNDS: 120,
  STAKE_LOCKED: 121,
  WRONG_STATE: 122,
  TOO_EARLY: 123,
  NOT_CLIENT_CONTRACT: 124,
  NOT_WORKER_CONTRACT: 125,
  CLOSE_DELAY_OVER: 126,
  ZERO_AMOUNT: 127,
  WORKERS_UNPAID: 128,
  PROXY_STAKE_BELOW_MINIMUM: 129,
  EVIDENCE_SIGNATURE: 130,
  EVIDENCE_WORKER: 131,
  EVIDENCE_EXPIRED: 132,
  RECEIPT_SIGNATURE: 133,
  EVIDENCE_MISMATCH: 134,
  NOT_A_DISSENT: 135,
  EVIDENCE_REPLAYED: 136,
  NO_STAKE: 137,
  STAKE_BELOW_MINIMUM: 138,
  RECEIPT_BATCH: 139,
  RECEIPT_KEY_UNKNOWN: 140,
  RECEIPT_TOO_OLD: 141,
  STAKE_WITHDRAWING: 142,
  WINDOW_PASSED: 143,
  PAYOUT_IN_FLIGHT: 144,
  TOO_MANY_KEYS: 145,
  NO_SUCH_KEY: 146,
  NOT_PROXY_CONTRACT: 147,
};

export const STATE = { OPEN: 0, CLOSING: 1, CLOSED: 2 };
export const ROLE = { PROXY: 0, WORKER: 1, CLIENT: 2 };
/** Each contract's storage reserve (contracts/src/common/value.tolk). */
export const RESERVE = {
  root: toNano('0.5'),
  proxy: toNano('0.3'),
  client: toNano('0.06'),
  worker: toNano('0.15'),
};
/** How long an unlocked worker stake may be taken (WorkerContract.tolk). */
export const WITHDRAW_WINDOW = 7 * 24 * 3600;
/** How long a receipt is slash evidence (common/evidence.tolk). */
export const EVIDENCE_WINDOW = 7 * 24 * 3600;
/**
 * How long a stake stays slashable after its owner asks for it, and a
 * removed receipt key counts: the proxy's close delay, never less than a
 * receipt stays evidence (with an hour of clock skew).
 */
export function slashableFor(terms) {
  return Math.max(terms.proxyCloseDelay, EVIDENCE_WINDOW + 3600);
}
export const GAS = toNano('0.1');
/** What a registration carries: the proxy contract's reserve and gas. */
export const REGISTER_VALUE = toNano('0.4');

// ---- message bodies ----

let nextQueryId = 1n;

/** A message body: op, a fresh query id, then whatever `fill` stores. */
export function body(op, fill = () => {}) {
  const b = beginCell().storeUint(op, 32).storeUint(nextQueryId++, 64);
  fill(b);
  return b.endCell();
}

export const DEFAULT_PRICES = {
  pricePerToken: 1000n,
  workerFeePerToken: 800n,
  promptMultiplier: 10000,
  cachedMultiplier: 1000,
  completionMultiplier: 20000,
  reasoningMultiplier: 20000,
};

export const DEFAULT_TERMS = {
  minProxyStake: toNano('10'),
  minClientStake: toNano('1'),
  minWorkerStake: toNano('1'),
  proxyCloseDelay: 86400,
  clientCloseDelay: 3600,
  slashShare: 1000,
};

export function storePrices(b, p) {
  b.storeCoins(p.pricePerToken).storeCoins(p.workerFeePerToken);
  b.storeUint(p.promptMultiplier, 32).storeUint(p.cachedMultiplier, 32);
  b.storeUint(p.completionMultiplier, 32).storeUint(p.reasoningMultiplier, 32);
}

export function termsArgs(t) {
  return `${t.minProxyStake} ${t.minClientStake} ${t.minWorkerStake} ${t.proxyCloseDelay} ${t.clientCloseDelay} ${t.slashShare}`;
}

function pricesArgs(p) {
  return `${p.pricePerToken} ${p.workerFeePerToken} ${p.promptMultiplier} ${p.cachedMultiplier} ${p.completionMultiplier} ${p.reasoningMultiplier}`;
}

export function storeTerms(b, t) {
  b.storeCoins(t.minProxyStake).storeCoins(t.minClientStake).storeCoins(t.minWorkerStake);
  b.storeUint(t.proxyCloseDelay, 32).storeUint(t.clientCloseDelay, 32).storeUint(t.slashShare, 16);
}

export function codesCell(codes = CODES) {
  return beginCell().storeRef(codes.proxy).storeRef(codes.client).storeRef(codes.worker).endCell();
}

/** A string as a cell's bytes (short strings only: endpoints, model names). */
export function text(s) {
  return beginCell().storeStringTail(s).endCell();
}

/** Trust tiers as the root starts with them: every multiplier 1x, regions
 *  not required, no region, model or operator listed. */
export function defaultTiers() {
  return beginCell()
    .storeUint(10000, 32).storeUint(10000, 32).storeUint(10000, 32).storeUint(10000, 32).storeUint(10000, 32)
    .storeBit(false)
    .storeDict(null).storeDict(null).storeDict(null)
    .endCell();
}

/** A region name as the root keys it: its bytes left-aligned in 256 bits. */
export function regionKey(name) {
  const bytes = Buffer.from(name, 'utf-8');
  return BigInt('0x' + Buffer.concat([bytes, Buffer.alloc(32 - bytes.length)]).toString('hex'));
}

/** The root's initial data: no images, models or proxies yet. */
export function rootData(owner, prices = DEFAULT_PRICES, terms = DEFAULT_TERMS) {
  const params = beginCell();
  storePrices(params, prices);
  storeTerms(params, terms);
  params.storeRef(defaultTiers());
  const lists = beginCell().storeDict(null).storeDict(null).storeDict(null).storeDict(null);
  return beginCell()
    .storeAddress(owner)
    .storeAddress(null)
    .storeUint(0, 32)
    .storeRef(params.endCell())
    .storeRef(codesCell())
    .storeRef(lists.endCell())
    .storeDict(null)
    .endCell();
}

// ---- the network ----

export const START_TIME = 1_800_000_000;

/**
 * A sandbox chain with a deployed root registry owned by `rootOwner`.
 * The clock is fixed at START_TIME until a test moves it.
 */
export async function network({ prices, terms } = {}) {
  const bc = await Blockchain.create();
  bc.now = START_TIME;
  const rootOwner = await bc.treasury('root-owner');
  const init = { code: CODES.root, data: rootData(rootOwner.address, prices, terms) };
  const root = contractAddress(0, init);
  const deployed = await rootOwner.send({ to: root, value: toNano('1'), init, bounce: false });
  assertSuccess(deployed, root);
  return { bc, rootOwner, root, results: [deployed] };
}

/** Registers a proxy with the root and returns its contract's address. */
export async function registerProxy(net, owner, key, endpoints = 'tls://127.0.0.1:10010') {
  const r = await send(net, net.rootOwner, net.root, body(OP.RegisterProxy, (b) =>
    b.storeAddress(owner.address).storeUint(key, 256).storeRef(text(endpoints))), REGISTER_VALUE);
  assertSuccess(r, net.root);
  const proxy = await getAddress(net.bc, net.root, 'get_proxy_address', [
    { type: 'slice', cell: beginCell().storeAddress(owner.address).endCell() },
    { type: 'int', value: key },
  ]);
  assertSuccess(r, proxy);
  return proxy;
}

/** Sends `body` from a treasury with `value` (default GAS) and keeps the result. */
export async function send(net, from, to, msgBody, value = GAS, extra = {}) {
  const r = await from.send({ to, value, body: msgBody, bounce: true, ...extra });
  net.results?.push(r);
  return r;
}

// ---- get-methods ----

export async function get(bc, address, method, args = []) {
  const r = await bc.runGetMethod(address, method, args);
  assert.equal(r.exitCode, 0, `${method} failed with exit code ${r.exitCode}`);
  return r.stackReader;
}

export async function getAddress(bc, address, method, args = []) {
  return (await get(bc, address, method, args)).readAddress();
}

function addressArg(a) {
  return { type: 'slice', cell: beginCell().storeAddress(a).endCell() };
}

export async function clientAddress(bc, proxy, owner) {
  return getAddress(bc, proxy, 'get_client_address', [addressArg(owner)]);
}

export async function workerAddress(bc, proxy, owner) {
  return getAddress(bc, proxy, 'get_worker_address', [addressArg(owner)]);
}

export async function clientData(bc, client) {
  const s = await get(bc, client, 'get_client_data');
  return {
    proxy: s.readAddress(),
    owner: s.readAddress(),
    proxyKey: s.readBigNumber(),
    state: s.readNumber(),
    closeAt: s.readNumber(),
    balance: s.readBigNumber(),
    stake: s.readBigNumber(),
    committed: s.readBigNumber(),
    lastSeqno: s.readBigNumber(),
    closeDelay: s.readNumber(),
  };
}

export async function workerData(bc, worker) {
  const s = await get(bc, worker, 'get_worker_data');
  return {
    proxy: s.readAddress(),
    owner: s.readAddress(),
    proxyKey: s.readBigNumber(),
    committed: s.readBigNumber(),
    lastSeqno: s.readBigNumber(),
    inFlight: s.readBigNumber(),
    owed: s.readBigNumber(),
  };
}

export async function workerStake(bc, worker) {
  const s = await get(bc, worker, 'get_worker_stake');
  return {
    stake: s.readBigNumber(),
    minStake: s.readBigNumber(),
    unlockAt: s.readNumber(),
    slashed: s.readBigNumber(),
    stakeDelay: s.readNumber(),
    slashShare: s.readNumber(),
    withdrawWindow: s.readNumber(),
  };
}

/** -1 when evidence may not name `key`, 0 when active, else when a removed key stops counting. */
export async function receiptKey(bc, worker, key) {
  return (await get(bc, worker, 'get_receipt_key', [{ type: 'int', value: key }])).readNumber();
}

export async function proxyData(bc, proxy) {
  const s = await get(bc, proxy, 'get_proxy_data');
  return {
    root: s.readAddress(),
    owner: s.readAddress(),
    key: s.readBigNumber(),
    state: s.readNumber(),
    closeAt: s.readNumber(),
    stake: s.readBigNumber(),
    commission: s.readBigNumber(),
    charged: s.readBigNumber(),
    paid: s.readBigNumber(),
    owed: s.readBigNumber(),
  };
}

export async function balance(bc, address) {
  return (await bc.getContract(address)).balance;
}

// ---- transactions (with @ton/test-utils' flattened view) ----

/** The transactions of `result` on `address`, optionally with in-message op `op`. */
export function txsOn(result, address, op) {
  const match = op === undefined ? { to: address } : { to: address, op };
  return filterTransactions(result.transactions, match);
}

export function computeOf(tx) {
  const c = tx.description.computePhase;
  return c.type === 'vm' ? c : null;
}

/** Every transaction on `address` in `result` ran to exit code 0 and its actions succeeded. */
export function assertSuccess(result, address) {
  const txs = txsOn(result, address);
  assert.ok(txs.length > 0, `no transaction on ${address}`);
  for (const tx of txs) {
    const flat = flattenTransaction(tx);
    if (flat.exitCode === undefined) continue; // a bounce or a plain credit with no code run
    assert.equal(flat.exitCode, 0, `transaction on ${address} (op ${flat.op?.toString(16)}) exited with ${flat.exitCode}`);
    assert.equal(flat.aborted, false, `transaction on ${address} (op ${flat.op?.toString(16)}) aborted`);
  }
}

/** The op sent to `address` in `result` was refused with `exitCode`, and its value bounced. */
export function assertRefused(result, address, exitCode) {
  const txs = txsOn(result, address);
  assert.ok(txs.length > 0, `no transaction on ${address}`);
  const flat = flattenTransaction(txs[0]);
  assert.equal(flat.exitCode, exitCode, `expected exit code ${exitCode}, got ${flat.exitCode}`);
  assert.equal(flat.aborted, true);
  if (flat.inMessageBounceable) {
    assert.ok(findTransaction(result.transactions, { from: address, to: flat.from, inMessageBounced: true }),
      'the refused value bounced back to its sender');
  }
  return txs[0];
}

/** Gas used and fees of the first transaction on `address` with in-message op `op`. */
export function gasOf(result, address, op) {
  const tx = txsOn(result, address, op)[0];
  assert.ok(tx, `no transaction with op ${op.toString(16)} on ${address}`);
  return { gas: computeOf(tx).gasUsed, fees: tx.totalFees.coins };
}

// ---- vouchers, signed by crates/pay ----

/**
 * The Rust helper (crates/chain/examples/ton_helper.rs): vouchers signed by
 * crates/pay and wallets built by crates/chain, built
 * with cargo on first use, one process per test file.
 */
export class RustVoucherSigner {
  constructor() {
    const bin = signerBinary();
    this.proc = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.waiting = [];
    createInterface({ input: this.proc.stdout }).on('line', (line) => this.waiting.shift()?.(line));
  }

  request(line) {
    return new Promise((resolveLine, reject) => {
      this.waiting.push((answer) => {
        if (answer.startsWith('ok ')) resolveLine(answer.slice(3));
        else reject(new Error(`voucher signer: ${answer}`));
      });
      this.proc.stdin.write(line + '\n');
    });
  }

  /** The Ed25519 public key of `seed` (32 bytes, hex), as a bigint. */
  async key(seed) {
    return BigInt('0x' + (await this.request(`key ${seed}`)));
  }

  /** A SignedVoucher cell, exactly as the proxy would send it. */
  async sign({ kind, contract, party, total, seqno, expiresAt, seed }) {
    const hex = await this.request(
      `sign ${kind} ${contract.toRawString()} ${party.toRawString()} ${total} ${seqno} ${expiresAt} ${seed}`,
    );
    return Cell.fromBoc(Buffer.from(hex, 'hex'))[0];
  }

  /** The W5R1 wallet of `seed` built by crates/chain: { publicKey, address }. */
  async wallet(seed, globalId = -239) {
    const [key, address] = (await this.request(`wallet ${seed} ${globalId}`)).split(' ');
    return { publicKey: Buffer.from(key, 'hex'), address: Address.parse(address) };
  }

  /** The W5R1 wallet of a TON mnemonic, as crates/chain derives it. */
  async mnemonic(words, globalId = -239) {
    const [key, address] = (await this.request(`mnemonic ${globalId} ${words.join(' ')}`)).split(' ');
    return { publicKey: Buffer.from(key, 'hex'), address: Address.parse(address) };
  }

  /** A signed external message of the W5R1 wallet of `seed` sending one transfer. */
  async transfer({ seed, globalId = -239, seqno, validUntil, deploy, to, value, bounce = false, body = null }) {
    const bodyHex = body ? body.toBoc({ idx: false, crc32: false }).toString('hex') : '-';
    const hex = await this.request(
      `transfer ${seed} ${globalId} ${seqno} ${validUntil} ${deploy ? 1 : 0} ${to.toRawString()} ${value} ${bounce ? 1 : 0} ${bodyHex}`,
    );
    return Cell.fromBoc(Buffer.from(hex, 'hex'))[0];
  }

  /** The root's state init as crates/chain builds it: { address, init }. */
  async rootInit(owner, terms = DEFAULT_TERMS, prices = DEFAULT_PRICES) {
    const [address, hex] = (await this.request(`root ${owner.toRawString()} ${termsArgs(terms)} ${pricesArgs(prices)}`)).split(' ');
    const s = Cell.fromBoc(Buffer.from(hex, 'hex'))[0].beginParse();
    return { address: Address.parse(address), init: loadStateInit(s) };
  }

  /** The proxy, client and worker contract addresses crates/chain derives. */
  async derive(root, proxyOwner, proxyKey, owner, terms = DEFAULT_TERMS) {
    const key = proxyKey.toString(16).padStart(64, '0');
    const [proxy, client, worker] = (await this.request(
      `derive ${root.toRawString()} ${proxyOwner.toRawString()} ${key} ${owner.toRawString()} ${termsArgs(terms)}`,
    )).split(' ').map((a) => Address.parse(a));
    return { proxy, client, worker };
  }

  /**
   * A SignedEvidence cell signed by the proxy key of `proxySeed`, built by
   * crates/receipt. Each receipt is { seed, request, content, model, time,
   * forged, batch } (32-byte hex values and a UNIX time; batch is a
   * ton_helper receipt modifier: batch, batchforged, batchdeep).
   */
  async evidence({ proxySeed = PROXY_SEED, worker, clientOwner, expiresAt, accused, first, second }) {
    const spec = (r) => [r.seed, r.request, r.content, r.model, r.time].join(':') + (r.forged ? ':forged' : r.batch ? `:${r.batch}` : '');
    const hex = await this.request(
      `evidence ${proxySeed} ${worker.toRawString()} ${clientOwner.toRawString()} ${expiresAt} ${spec(accused)} ${spec(first)} ${spec(second)}`,
    );
    return Cell.fromBoc(Buffer.from(hex, 'hex'))[0];
  }

  /** A message body as crates/chain builds it (`body KIND ARGS...`). */
  async body(...args) {
    return Cell.fromBoc(Buffer.from(await this.request(`body ${args.join(' ')}`), 'hex'))[0];
  }

  close() {
    this.proc.stdin.end();
  }
}

function signerBinary() {
  if (process.env.COCOON_TON_HELPER) return process.env.COCOON_TON_HELPER;
  const target = process.env.CARGO_TARGET_DIR ?? join(REPO, 'target');
  execFileSync('cargo', ['build', '--quiet', '-p', 'cocoon-chain', '--example', 'ton_helper'], {
    cwd: REPO,
    stdio: 'inherit',
  });
  const bin = join(target, 'debug', 'examples', 'ton_helper');
  assert.ok(existsSync(bin), `voucher signer not found at ${bin}`);
  return bin;
}

/** Proxy signing seeds for the tests (never used outside them). */
export const PROXY_SEED = '11'.repeat(32);
export const OTHER_SEED = '22'.repeat(32);

export { Address, beginCell, Cell, contractAddress, Dictionary, toNano };

// ---- a registered proxy with its clients and workers ----

/**
 * A network with one registered, staked proxy whose voucher key comes
 * from PROXY_SEED. `signer` is shared by the caller (one per test file).
 */
export async function world(signer, { prices, terms, stake = toNano('10') } = {}) {
  const net = await network({ prices, terms });
  net.terms = terms ?? DEFAULT_TERMS;
  net.signer = signer;
  net.proxyKey = await signer.key(PROXY_SEED);
  net.proxyOwner = await net.bc.treasury('proxy-owner');
  net.proxy = await registerProxy(net, net.proxyOwner, net.proxyKey);
  if (stake > 0n) {
    const r = await send(net, net.proxyOwner, net.proxy, body(OP.AddProxyStake, (b) => b.storeCoins(stake)), stake + GAS);
    assertSuccess(r, net.proxy);
  }
  return net;
}

/** The state init of `owner`'s client contract, exactly as the proxy contract derives it. */
export function clientInit(net, owner, { proxy = net.proxy, proxyKey = net.proxyKey, code = CODES.client } = {}) {
  const terms = beginCell()
    .storeAddress(proxy)
    .storeUint(proxyKey, 256)
    .storeCoins(net.terms.minClientStake)
    .storeUint(net.terms.clientCloseDelay, 32)
    .endCell();
  const data = beginCell()
    .storeAddress(owner)
    .storeUint(0, 2)
    .storeUint(0, 32)
    .storeCoins(0)
    .storeCoins(0)
    .storeUint(0, 64)
    .storeRef(terms)
    .endCell();
  return { code, data };
}

/** The state init of `owner`'s worker contract. */
export function workerInit(net, owner, { proxy = net.proxy, proxyKey = net.proxyKey, terms: t = net.terms } = {}) {
  const terms = beginCell()
    .storeAddress(proxy)
    .storeUint(proxyKey, 256)
    .storeCoins(t.minWorkerStake)
    .storeUint(t.proxyCloseDelay, 32)
    .storeUint(t.slashShare, 16)
    .endCell();
  const stake = beginCell().storeCoins(0).storeUint(0, 32).storeCoins(0).storeDict(null).endCell();
  const data = beginCell()
    .storeAddress(owner)
    .storeCoins(0) // committed
    .storeUint(0, 64) // lastSeqno
    .storeCoins(0) // inFlight
    .storeCoins(0) // owed
    .storeDict(null) // receipt keys
    .storeRef(stake)
    .storeRef(terms)
    .endCell();
  return { code: CODES.worker, data };
}

/** Deploys `owner`'s client contract with a first top-up of `amount`. */
export async function openClient(net, owner, amount, opts = {}) {
  const init = clientInit(net, owner.address, opts);
  const address = contractAddress(0, init);
  const r = await send(net, owner, address, body(OP.TopUp, (b) => b.storeCoins(amount)), amount + GAS, { init });
  assertSuccess(r, address);
  return address;
}

/**
 * Deploys `owner`'s worker contract staking `stake` (by default the
 * minimum, so payouts go through); with a zero stake, a plain message
 * with its state init.
 */
export async function openWorker(net, owner, opts = {}) {
  const init = workerInit(net, owner.address, opts);
  const address = contractAddress(0, init);
  const stake = opts.stake ?? net.terms.minWorkerStake;
  // The first message also funds the contract's storage reserve.
  const r = stake > 0n
    ? await owner.send({ to: address, value: stake + GAS + RESERVE.worker, init, bounce: false, body: body(OP.AddWorkerStake, (b) => b.storeCoins(stake)) })
    : await owner.send({ to: address, value: toNano('0.05'), init, bounce: false });
  net.results?.push(r);
  assertSuccess(r, address);
  return address;
}

/** A proxy-signed voucher for `party`; defaults: this proxy, valid one hour. */
export async function voucher(net, kind, party, total, seqno, opts = {}) {
  return net.signer.sign({
    kind,
    contract: opts.contract ?? net.proxy,
    party,
    total,
    seqno,
    expiresAt: opts.expiresAt ?? net.bc.now + 3600,
    seed: opts.seed ?? PROXY_SEED,
  });
}

export function chargeBody(signedVoucher) {
  return body(OP.Charge, (b) => b.storeRef(signedVoucher));
}

export function payoutBody(signedVoucher) {
  return body(OP.Payout, (b) => b.storeRef(signedVoucher));
}
