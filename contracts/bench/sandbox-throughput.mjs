#!/usr/bin/env node
// The reference for the devnet's throughput bench (crates/devnet/benches):
// replays the settlement scenario vector in @ton/sandbox ROUNDS times, each
// on a fresh chain seeded with the vector's accounts, and prints one JSON
// line: {"transactions": N, "seconds": S}. Only the sending is timed.
//
//   node bench/sandbox-throughput.mjs [ROUNDS]

import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Blockchain } from '@ton/sandbox';
import { Cell, loadMessage, loadShardAccount } from '@ton/core';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const vector = JSON.parse(readFileSync(join(ROOT, 'vectors', 'settlement.json'), 'utf-8'));
const rounds = Number(process.argv[2] ?? 10);
const cell = (hex) => Cell.fromBoc(Buffer.from(hex, 'hex'))[0];

let transactions = 0;
let seconds = 0;
for (let r = 0; r < rounds; r++) {
  const bc = await Blockchain.create();
  for (const hex of vector.accounts) {
    const sa = loadShardAccount(cell(hex).beginParse());
    await bc.setShardAccount(sa.account.addr, sa);
  }
  const messages = vector.steps.map((s) => ({ now: s.now, msg: loadMessage(cell(s.message).beginParse()) }));
  for (const { now, msg } of messages) {
    bc.now = now;
    const start = process.hrtime.bigint();
    const result = await bc.sendMessage(msg);
    seconds += Number(process.hrtime.bigint() - start) / 1e9;
    transactions += result.transactions.length;
  }
}
console.log(JSON.stringify({ transactions, seconds }));
