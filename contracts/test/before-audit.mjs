// The contracts as they were deployed before the audit that
// findings.test.mjs answers: their compiled code, frozen in
// fixtures/before-audit/ (never rebuilt), and the layouts they took. The
// findings tests run each attack against this build too, and assert that
// it worked there: a test of a fix means nothing unless it fails on what
// the fix replaced.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Blockchain } from '@ton/sandbox';
import { beginCell, Cell, contractAddress, toNano } from '@ton/core';
import {
  CONTRACTS_DIR, START_TIME, DEFAULT_PRICES, OP, GAS, body, text, storePrices, getAddress, send, assertSuccess, clientInit,
} from './helpers.mjs';

function frozen(name) {
  const artifact = JSON.parse(readFileSync(join(CONTRACTS_DIR, 'test', 'fixtures', 'before-audit', `${name}.json`), 'utf-8'));
  return Cell.fromBoc(Buffer.from(artifact.codeBoc, 'hex'))[0];
}

export const OLD_CODES = {
  root: frozen('RootContract'),
  proxy: frozen('ProxyContract'),
  client: frozen('ClientContract'),
  worker: frozen('WorkerContract'),
};

/** Terms as the old root stored them: no slash share. */
export const OLD_TERMS = {
  minProxyStake: toNano('10'),
  minClientStake: toNano('1'),
  minWorkerStake: toNano('1'),
  proxyCloseDelay: 86400,
  clientCloseDelay: 3600,
};

export function storeOldTerms(b, t) {
  b.storeCoins(t.minProxyStake).storeCoins(t.minClientStake).storeCoins(t.minWorkerStake);
  b.storeUint(t.proxyCloseDelay, 32).storeUint(t.clientCloseDelay, 32);
}

/**
 * A sandbox with the old root deployed, and a proxy registered with voucher
 * key `proxyKey` (a bigint) and staked with `stake`.
 */
export async function oldWorld({ proxyKey, stake = toNano('10'), terms = OLD_TERMS } = {}) {
  const bc = await Blockchain.create();
  bc.now = START_TIME;
  const rootOwner = await bc.treasury('root-owner');
  const params = beginCell();
  storePrices(params, DEFAULT_PRICES);
  storeOldTerms(params, terms);
  const codes = beginCell().storeRef(OLD_CODES.proxy).storeRef(OLD_CODES.client).storeRef(OLD_CODES.worker).endCell();
  const lists = beginCell().storeDict(null).storeDict(null).storeDict(null).storeDict(null).endCell();
  const data = beginCell()
    .storeAddress(rootOwner.address)
    .storeAddress(null)
    .storeUint(0, 32)
    .storeRef(params.endCell())
    .storeRef(codes)
    .storeRef(lists)
    .storeDict(null)
    .endCell();
  const init = { code: OLD_CODES.root, data };
  const root = contractAddress(0, init);
  assertSuccess(await rootOwner.send({ to: root, value: toNano('1'), init, bounce: false }), root);
  const net = { bc, rootOwner, root, terms, proxyKey };
  net.proxyOwner = await bc.treasury('proxy-owner');
  const r = await send(net, rootOwner, root, body(OP.RegisterProxy, (b) =>
    b.storeAddress(net.proxyOwner.address).storeUint(proxyKey, 256).storeRef(text('tls://127.0.0.1:10010'))));
  assertSuccess(r, root);
  net.proxy = await getAddress(bc, root, 'get_proxy_address', [
    { type: 'slice', cell: beginCell().storeAddress(net.proxyOwner.address).endCell() },
    { type: 'int', value: proxyKey },
  ]);
  assert.equal((await bc.getContract(net.proxy)).accountState?.type, 'active', 'the old root deployed the proxy contract');
  if (stake > 0n) {
    assertSuccess(await send(net, net.proxyOwner, net.proxy, body(OP.AddProxyStake, (b) => b.storeCoins(stake)), stake + GAS), net.proxy);
  }
  return net;
}

/** The old client contract of `owner`: the same layout as today's. */
export function oldClientInit(net, owner) {
  return clientInit(net, owner, { code: OLD_CODES.client });
}

/** The old worker contract of `owner`: no receipt keys, no payout in flight. */
export function oldWorkerInit(net, owner, { proxyKey = net.proxyKey } = {}) {
  const terms = beginCell()
    .storeAddress(net.proxy)
    .storeUint(proxyKey, 256)
    .storeCoins(net.terms.minWorkerStake)
    .storeUint(net.terms.proxyCloseDelay, 32)
    .endCell();
  const stake = beginCell().storeCoins(0).storeUint(0, 32).storeCoins(0).storeDict(null).endCell();
  const data = beginCell().storeAddress(owner).storeCoins(0).storeUint(0, 64).storeRef(stake).storeRef(terms).endCell();
  return { code: OLD_CODES.worker, data };
}

/** Deploys an old worker contract of `owner` staking `stake`. */
export async function oldWorker(net, owner, stake) {
  const init = oldWorkerInit(net, owner.address);
  const address = contractAddress(0, init);
  const r = await owner.send({
    to: address, value: stake + GAS, init, bounce: false,
    body: body(OP.AddWorkerStake, (b) => b.storeCoins(stake)),
  });
  assertSuccess(r, address);
  return address;
}

/** Deploys an old client contract of `owner` with `amount`. */
export async function oldClient(net, owner, amount) {
  const init = oldClientInit(net, owner.address);
  const address = contractAddress(0, init);
  const r = await owner.send({
    to: address, value: amount + GAS, init, bounce: true,
    body: body(OP.TopUp, (b) => b.storeCoins(amount)),
  });
  assertSuccess(r, address);
  return address;
}
