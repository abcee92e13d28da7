// Addresses are derived, never claimed: crates/chain derives the root's,
// a proxy's, and each client's and worker's contract address on its own.
// Here the contracts are deployed from crates/chain's state init and
// message bodies, and every address it derives must equal what the
// contracts' get-methods say.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Blockchain } from '@ton/sandbox';
import {
  RustVoucherSigner, START_TIME, PROXY_SEED, toNano, beginCell, assertSuccess, getAddress,
  clientAddress, workerAddress, GAS, REGISTER_VALUE,
} from './helpers.mjs';

const rust = new RustVoucherSigner();
after(() => rust.close());

test('the root, proxy, client and worker contracts are where crates/chain says', async () => {
  const bc = await Blockchain.create();
  bc.now = START_TIME;
  const rootOwner = await bc.treasury('root-owner');
  const proxyOwner = await bc.treasury('proxy-owner');
  const alice = await bc.treasury('alice');

  const root = await rust.rootInit(rootOwner.address);
  const deployed = await rootOwner.send({ to: root.address, value: toNano('1'), init: root.init, bounce: false });
  assertSuccess(deployed, root.address);

  const key = await rust.key(PROXY_SEED);
  const keyHex = key.toString(16).padStart(64, '0');
  const register = await rust.body('register_proxy', proxyOwner.address.toRawString(), keyHex, 'tls://127.0.0.1:10010');
  assertSuccess(await rootOwner.send({ to: root.address, value: REGISTER_VALUE, body: register, bounce: true }), root.address);

  const ours = await rust.derive(root.address, proxyOwner.address, key, alice.address);
  const proxy = await getAddress(bc, root.address, 'get_proxy_address', [
    { type: 'slice', cell: beginCell().storeAddress(proxyOwner.address).endCell() },
    { type: 'int', value: key },
  ]);
  assert.ok(ours.proxy.equals(proxy), 'the proxy contract');
  assert.equal((await bc.getContract(proxy)).accountState?.type, 'active', 'the root deployed it there');
  assert.ok(ours.client.equals(await clientAddress(bc, proxy, alice.address)), 'the client contract');
  assert.ok(ours.worker.equals(await workerAddress(bc, proxy, alice.address)), 'the worker contract');

  // A stake and a first deposit with crates/chain's bodies land.
  const stake = await rust.body('add_proxy_stake', toNano('10').toString());
  assertSuccess(await proxyOwner.send({ to: proxy, value: toNano('10') + GAS, body: stake, bounce: true }), proxy);
});
