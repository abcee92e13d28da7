// The root registry: what the owner governs, the params version, two-step
// ownership, and that no one else can change a thing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  network, registerProxy, send, body, get, getAddress, assertSuccess, assertRefused, txsOn, balance,
  storePrices, storeTerms, codesCell, text, proxyData, regionKey,
  OP, EXIT, ROLE, CODES, DEFAULT_PRICES, DEFAULT_TERMS, RESERVE, toNano, beginCell, Dictionary,
} from './helpers.mjs';

async function version(net) {
  return (await get(net.bc, net.root, 'get_params_version')).readNumber();
}

async function imageAllowed(net, role, hash) {
  return (await get(net.bc, net.root, 'is_image_allowed', [
    { type: 'int', value: BigInt(role) },
    { type: 'int', value: hash },
  ])).readBoolean();
}

const HASH = 0x1234n << 200n;

test('the owner allows and removes images per role; each change raises the version', async () => {
  const net = await network();
  assert.equal(await version(net), 0);
  const set = (role, allowed) => body(OP.SetImage, (b) => b.storeUint(role, 8).storeUint(HASH, 256).storeBit(allowed));
  assertSuccess(await send(net, net.rootOwner, net.root, set(ROLE.WORKER, true)), net.root);
  assert.equal(await imageAllowed(net, ROLE.WORKER, HASH), true);
  assert.equal(await imageAllowed(net, ROLE.PROXY, HASH), false, 'a worker image is not a proxy image');
  assert.equal(await version(net), 1);

  const images = (await get(net.bc, net.root, 'get_images', [{ type: 'int', value: BigInt(ROLE.WORKER) }])).readCellOpt();
  const dict = Dictionary.loadDirect(Dictionary.Keys.BigUint(256), Dictionary.Values.Bool(), images);
  assert.deepEqual(dict.keys(), [HASH]);

  assertSuccess(await send(net, net.rootOwner, net.root, set(ROLE.WORKER, false)), net.root);
  assert.equal(await imageAllowed(net, ROLE.WORKER, HASH), false);
  assert.equal(await version(net), 2);

  assertRefused(await send(net, net.rootOwner, net.root, set(3, true)), net.root, EXIT.UNKNOWN_ROLE);
  assert.equal(await version(net), 2);
});

test('the owner names and removes models', async () => {
  const net = await network();
  const setModel = (name) => body(OP.SetModel, (b) => b.storeUint(HASH, 256).storeMaybeRef(name === null ? null : text(name)));
  assertSuccess(await send(net, net.rootOwner, net.root, setModel('SmolLM2-135M-Instruct')), net.root);
  const name = (await get(net.bc, net.root, 'get_model', [{ type: 'int', value: HASH }])).readCellOpt();
  assert.equal(name.beginParse().loadStringTail(), 'SmolLM2-135M-Instruct');
  assertSuccess(await send(net, net.rootOwner, net.root, setModel(null)), net.root);
  assert.equal((await get(net.bc, net.root, 'get_model', [{ type: 'int', value: HASH }])).readCellOpt(), null);
  assert.equal(await version(net), 2);
});

test('the owner sets prices and terms; get-methods return them', async () => {
  const net = await network();
  const prices = { ...DEFAULT_PRICES, pricePerToken: 2500n, reasoningMultiplier: 30000 };
  assertSuccess(await send(net, net.rootOwner, net.root, body(OP.SetPrices, (b) => storePrices(b, prices))), net.root);
  const p = await get(net.bc, net.root, 'get_prices');
  assert.deepEqual(
    [p.readBigNumber(), p.readBigNumber(), p.readNumber(), p.readNumber(), p.readNumber(), p.readNumber()],
    [2500n, prices.workerFeePerToken, prices.promptMultiplier, prices.cachedMultiplier, prices.completionMultiplier, 30000],
  );
  const terms = { ...DEFAULT_TERMS, clientCloseDelay: 7200 };
  assertSuccess(await send(net, net.rootOwner, net.root, body(OP.SetTerms, (b) => storeTerms(b, terms))), net.root);
  const t = await get(net.bc, net.root, 'get_terms');
  assert.deepEqual(
    [t.readBigNumber(), t.readBigNumber(), t.readBigNumber(), t.readNumber(), t.readNumber()],
    [terms.minProxyStake, terms.minClientStake, terms.minWorkerStake, terms.proxyCloseDelay, 7200],
  );
  assert.equal(await version(net), 2);
});

test('codes: the owner replaces them; new proxies derive from the new code', async () => {
  const net = await network();
  const c = await get(net.bc, net.root, 'get_codes');
  assert.ok(c.readCell().equals(CODES.proxy));
  assert.ok(c.readCell().equals(CODES.client));
  assert.ok(c.readCell().equals(CODES.worker));
  const owner = await net.bc.treasury('proxy-owner');
  const before = await getAddress(net.bc, net.root, 'get_proxy_address', [
    { type: 'slice', cell: beginCell().storeAddress(owner.address).endCell() }, { type: 'int', value: 1n }]);
  const swapped = codesCell({ proxy: CODES.proxy, client: CODES.worker, worker: CODES.client });
  assertSuccess(await send(net, net.rootOwner, net.root, body(OP.SetCodes, (b) => b.storeRef(swapped))), net.root);
  const after = await getAddress(net.bc, net.root, 'get_proxy_address', [
    { type: 'slice', cell: beginCell().storeAddress(owner.address).endCell() }, { type: 'int', value: 1n }]);
  assert.ok(!before.equals(after), 'the proxy address commits to the client and worker code');
});

test('registering a proxy deploys its contract and lists it; unregistering delists it', async () => {
  const net = await network();
  const owner = await net.bc.treasury('proxy-owner');
  const proxy = await registerProxy(net, owner, 42n, 'tls://10.0.0.1:10010');
  const p = await proxyData(net.bc, proxy);
  assert.ok(p.root.equals(net.root));
  assert.equal(p.key, 42n);
  assert.ok((await balance(net.bc, proxy)) > 0n);

  const list = (await get(net.bc, net.root, 'get_proxies')).readCellOpt();
  const dict = Dictionary.loadDirect(Dictionary.Keys.Address(), {
    serialize: () => { throw new Error('read only'); },
    parse: (s) => ({ owner: s.loadAddress(), key: s.loadUintBig(256), endpoints: s.loadRef().beginParse().loadStringTail() }),
  }, list);
  const entry = dict.get(proxy);
  assert.ok(entry.owner.equals(owner.address));
  assert.equal(entry.key, 42n);
  assert.equal(entry.endpoints, 'tls://10.0.0.1:10010');
  assert.equal(await version(net), 1);

  assertSuccess(await send(net, net.rootOwner, net.root, body(OP.UnregisterProxy, (b) => b.storeAddress(proxy))), net.root);
  assert.equal((await get(net.bc, net.root, 'get_proxies')).readCellOpt(), null);
  assertRefused(await send(net, net.rootOwner, net.root, body(OP.UnregisterProxy, (b) => b.storeAddress(proxy))), net.root, EXIT.NO_SUCH_PROXY);
  assert.equal(await version(net), 2);
});

test('registration must carry the deployment value', async () => {
  const net = await network();
  const owner = await net.bc.treasury('proxy-owner');
  const r = await send(net, net.rootOwner, net.root, body(OP.RegisterProxy, (b) =>
    b.storeAddress(owner.address).storeUint(1n, 256).storeRef(text('x'))), toNano('0.03'));
  assertRefused(r, net.root, EXIT.NOT_ENOUGH_VALUE);
});

test('no one but the owner changes anything', async () => {
  const net = await network();
  const stranger = await net.bc.treasury('stranger');
  const bodies = [
    body(OP.RegisterProxy, (b) => b.storeAddress(stranger.address).storeUint(1n, 256).storeRef(text('x'))),
    body(OP.UnregisterProxy, (b) => b.storeAddress(stranger.address)),
    body(OP.SetImage, (b) => b.storeUint(ROLE.PROXY, 8).storeUint(HASH, 256).storeBit(true)),
    body(OP.SetModel, (b) => b.storeUint(HASH, 256).storeMaybeRef(text('m'))),
    body(OP.SetPrices, (b) => storePrices(b, DEFAULT_PRICES)),
    body(OP.SetTerms, (b) => storeTerms(b, DEFAULT_TERMS)),
    body(OP.SetCodes, (b) => b.storeRef(codesCell())),
    body(OP.ProposeOwner, (b) => b.storeAddress(stranger.address)),
    body(OP.WithdrawFromRoot),
    body(OP.SetTierMultipliers, (b) => b.storeUint(1, 32).storeUint(1, 32).storeUint(1, 32).storeUint(1, 32).storeUint(1, 32).storeBit(true)),
    body(OP.SetRegionPrice, (b) => b.storeUint(1n, 256).storeUint(1, 32)),
    body(OP.SetModelPrice, (b) => b.storeUint(1n, 256).storeUint(1, 32)),
    body(OP.SetOperator, (b) => b.storeAddress(stranger.address).storeBit(true).storeBit(true).storeDict(null)),
  ];
  for (const msg of bodies) {
    assertRefused(await send(net, stranger, net.root, msg), net.root, EXIT.NOT_OWNER);
  }
  assertRefused(await send(net, stranger, net.root, body(OP.AcceptOwnership)), net.root, EXIT.NOT_PENDING_OWNER);
  assertRefused(await send(net, stranger, net.root, body(0x7777)), net.root, EXIT.UNKNOWN_OP);
  assert.equal(await version(net), 0);
});

test('ownership moves in two steps, and only to the named address', async () => {
  const net = await network();
  const next = await net.bc.treasury('next-owner');
  const stranger = await net.bc.treasury('stranger');
  assertSuccess(await send(net, net.rootOwner, net.root, body(OP.ProposeOwner, (b) => b.storeAddress(next.address))), net.root);
  assert.ok((await getAddress(net.bc, net.root, 'get_owner')).equals(net.rootOwner.address), 'proposing does not move ownership');
  assert.ok((await get(net.bc, net.root, 'get_pending_owner')).readAddressOpt().equals(next.address));
  assertRefused(await send(net, stranger, net.root, body(OP.AcceptOwnership)), net.root, EXIT.NOT_PENDING_OWNER);

  assertSuccess(await send(net, next, net.root, body(OP.AcceptOwnership)), net.root);
  assert.ok((await getAddress(net.bc, net.root, 'get_owner')).equals(next.address));
  assert.equal((await get(net.bc, net.root, 'get_pending_owner')).readAddressOpt(), null);
  assertRefused(await send(net, net.rootOwner, net.root, body(OP.SetImage, (b) =>
    b.storeUint(ROLE.PROXY, 8).storeUint(HASH, 256).storeBit(true))), net.root, EXIT.NOT_OWNER);
  assertRefused(await send(net, next, net.root, body(OP.AcceptOwnership)), net.root, EXIT.NOT_PENDING_OWNER);

  // A proposal can be withdrawn by proposing no one.
  assertSuccess(await send(net, next, net.root, body(OP.ProposeOwner, (b) => b.storeAddress(stranger.address))), net.root);
  assertSuccess(await send(net, next, net.root, body(OP.ProposeOwner, (b) => b.storeAddress(null))), net.root);
  assertRefused(await send(net, stranger, net.root, body(OP.AcceptOwnership)), net.root, EXIT.NOT_PENDING_OWNER);
});

test('the owner withdraws what the root holds beyond its reserve', async () => {
  const net = await network();
  const r = await send(net, net.rootOwner, net.root, body(OP.WithdrawFromRoot));
  assertSuccess(r, net.root);
  assert.ok(txsOn(r, net.rootOwner.address, OP.Withdrawal)[0].inMessage.info.value.coins > toNano('1') - RESERVE.root - toNano('0.01'));
  assert.ok((await balance(net.bc, net.root)) <= RESERVE.root);
});

test('the owner sets tier prices and lists operators, within bounds; each change raises the version', async () => {
  const net = await network();
  const tiers = async () => {
    const r = await get(net.bc, net.root, 'get_tier_multipliers');
    return [r.readNumber(), r.readNumber(), r.readNumber(), r.readNumber(), r.readNumber(), r.readBoolean()];
  };
  assert.deepEqual(await tiers(), [10000, 10000, 10000, 10000, 10000, false]);
  const multipliers = (m, require) => body(OP.SetTierMultipliers, (b) => {
    for (const v of m) b.storeUint(v, 32);
    b.storeBit(require);
  });
  assertSuccess(await send(net, net.rootOwner, net.root, multipliers([12000, 11000, 5000, 15000, 9000], true)), net.root);
  assert.deepEqual(await tiers(), [12000, 11000, 5000, 15000, 9000, true]);
  for (const bad of [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1000001]]) {
    assertRefused(await send(net, net.rootOwner, net.root, multipliers(bad, false)), net.root, EXIT.BAD_PRICES);
  }
  assert.deepEqual(await tiers(), [12000, 11000, 5000, 15000, 9000, true], 'a refused change changes nothing');

  const eu = regionKey('eu');
  const region = (key, m) => body(OP.SetRegionPrice, (b) => b.storeUint(key, 256).storeUint(m, 32));
  assertSuccess(await send(net, net.rootOwner, net.root, region(eu, 12000)), net.root);
  assertRefused(await send(net, net.rootOwner, net.root, region(eu, 1000001)), net.root, EXIT.BAD_PRICES);
  const regions = () => get(net.bc, net.root, 'get_region_prices').then((r) =>
    Dictionary.loadDirect(Dictionary.Keys.BigUint(256), Dictionary.Values.Uint(32), r.readCellOpt()));
  assert.equal((await regions()).get(eu), 12000);
  assertSuccess(await send(net, net.rootOwner, net.root, region(eu, 0)), net.root);
  assert.equal((await regions()).size, 0, '0 removes a region');

  const model = body(OP.SetModelPrice, (b) => b.storeUint(HASH, 256).storeUint(20000, 32));
  assertSuccess(await send(net, net.rootOwner, net.root, model), net.root);
  const models = Dictionary.loadDirect(Dictionary.Keys.BigUint(256), Dictionary.Values.Uint(32),
    (await get(net.bc, net.root, 'get_model_prices')).readCellOpt());
  assert.equal(models.get(HASH), 20000);

  const op = await net.bc.treasury('operator');
  const regionSet = Dictionary.empty(Dictionary.Keys.BigUint(256), Dictionary.Values.Bool());
  regionSet.set(eu, true);
  const operator = (listed) => body(OP.SetOperator, (b) =>
    b.storeAddress(op.address).storeBit(listed).storeBit(true).storeDict(regionSet));
  assertSuccess(await send(net, net.rootOwner, net.root, operator(true)), net.root);
  const ops = (await get(net.bc, net.root, 'get_operators')).readCellOpt();
  assert.ok(ops !== null, 'the operator is listed');
  const before = await version(net);
  assertSuccess(await send(net, net.rootOwner, net.root, operator(false)), net.root);
  assert.equal((await get(net.bc, net.root, 'get_operators')).readCellOpt(), null, 'and removed');
  assert.equal(await version(net), before + 1);
});
