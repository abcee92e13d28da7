// Node wallets: crates/chain builds standard W5R1 wallets. Proven here
// against @ton/ton (same key from the same mnemonic, same address) and
// against the real W5R1 code in the sandbox (deploy on first transfer,
// seqno, replay refused).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Blockchain } from '@ton/sandbox';
import { loadMessage } from '@ton/core';
import { WalletContractV5R1 } from '@ton/ton';
import { mnemonicNew, mnemonicToPrivateKey, mnemonicValidate } from '@ton/crypto';
import { RustVoucherSigner, START_TIME, toNano, get } from './helpers.mjs';

const rust = new RustVoucherSigner();
after(() => rust.close());

test('a TON mnemonic gives the key and W5R1 address @ton/ton gives', async () => {
  for (let i = 0; i < 3; i++) {
    const words = await mnemonicNew(24);
    const keys = await mnemonicToPrivateKey(words);
    for (const networkGlobalId of [-239, -3]) {
      const js = WalletContractV5R1.create({ workchain: 0, publicKey: keys.publicKey, walletId: { networkGlobalId } });
      const ours = await rust.mnemonic(words, networkGlobalId);
      assert.ok(ours.publicKey.equals(keys.publicKey), 'same public key');
      assert.ok(ours.address.equals(js.address), `same address on network ${networkGlobalId}`);
    }
  }
});

test('a mistyped mnemonic is refused', async () => {
  const words = await mnemonicNew(24);
  // Swap two words until the phrase is no longer a valid TON mnemonic.
  let bad = [...words];
  for (let i = 1; i < 24 && (await mnemonicValidate(bad)); i++) {
    bad = [...words];
    [bad[0], bad[i]] = [bad[i], bad[0]];
  }
  assert.equal(await mnemonicValidate(bad), false);
  await assert.rejects(rust.mnemonic(bad), /TON mnemonic/);
  await assert.rejects(rust.mnemonic(words.slice(0, 12)), /24/);
});

test('the Rust wallet deploys itself on its first transfer, counts seqno, and refuses a replay', async () => {
  const bc = await Blockchain.create();
  bc.now = START_TIME;
  const seed = '33'.repeat(32);
  const wallet = await rust.wallet(seed);
  const js = WalletContractV5R1.create({ workchain: 0, publicKey: wallet.publicKey });
  assert.ok(wallet.address.equals(js.address));

  const funder = await bc.treasury('funder');
  const payee = await bc.treasury('payee');
  await funder.send({ to: wallet.address, value: toNano('5'), bounce: false });

  const send = async (seqno, deploy, value) => {
    const msg = await rust.transfer({ seed, seqno, validUntil: bc.now + 60, deploy, to: payee.address, value });
    return bc.sendMessage(loadMessage(msg.beginParse()));
  };
  const first = await send(0, true, toNano('1'));
  const paid = first.transactions.find((tx) => tx.inMessage.info.dest?.equals?.(payee.address));
  assert.ok(paid, 'the payee received a message');
  assert.equal(paid.inMessage.info.value.coins, toNano('1'));
  assert.equal((await get(bc, wallet.address, 'seqno')).readNumber(), 1);

  await send(1, false, toNano('0.5'));
  assert.equal((await get(bc, wallet.address, 'seqno')).readNumber(), 2);

  // The same signed request again: the wallet does not accept it.
  const replay = await rust.transfer({ seed, seqno: 1, validUntil: bc.now + 60, deploy: false, to: payee.address, value: toNano('0.5') });
  await assert.rejects(bc.sendMessage(loadMessage(replay.beginParse())));
  // Nor one past its deadline.
  const stale = await rust.transfer({ seed, seqno: 2, validUntil: bc.now - 1, deploy: false, to: payee.address, value: 1n });
  await assert.rejects(bc.sendMessage(loadMessage(stale.beginParse())));
  assert.equal((await get(bc, wallet.address, 'seqno')).readNumber(), 2);
});
