#!/usr/bin/env node
// Compiles every contract in src/ with @ton/tolk-js and writes
// build/<Name>.json: the code as a hex bag of cells and its hash, which
// nodes embed so that they need no Node.js at run time.
//
//   node scripts/build.mjs          compile and write build/
//   node scripts/build.mjs --check  compile and fail if build/ differs
//
// The check is what keeps the committed code honest: CI runs it, so the
// artifacts are always exactly what these sources compile to.

import { readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { runTolkCompiler } from '@ton/tolk-js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'src');
const BUILD = join(ROOT, 'build');

/** The contracts, in the order a deployment needs them. */
export const CONTRACTS = ['RootContract', 'ProxyContract', 'ClientContract', 'WorkerContract'];

/** Compiles one contract; throws with the compiler's message on error. */
export async function compile(name) {
  const result = await runTolkCompiler({
    entrypointFileName: `${name}.tolk`,
    fsReadCallback: (path) => readFileSync(join(SRC, path), 'utf-8'),
  });
  if (result.status !== 'ok') {
    throw new Error(`${name}.tolk does not compile:\n${result.message}`);
  }
  if (result.stderr.trim() !== '') {
    console.error(`${name}.tolk:\n${result.stderr}`);
  }
  return {
    name,
    compiler: `tolk ${result.tolkVersion}`,
    codeHash: result.codeHashHex.toLowerCase(),
    codeBoc: Buffer.from(result.codeBoc64, 'base64').toString('hex'),
  };
}

/**
 * The blockchain configuration @ton/sandbox runs with (fees, gas and size
 * limits). The devnet (crates/devnet) embeds this exact file, so the two
 * charge the same fees; the scenario vectors prove it.
 */
export function sandboxConfig() {
  const require = createRequire(import.meta.url);
  const { defaultConfig } = require('@ton/sandbox/dist/config/defaultConfig.js');
  return Buffer.from(defaultConfig, 'base64');
}

/**
 * The standard wallet v5 (W5R1) code, byte for byte as the pinned
 * `@ton/ton` ships it: nodes drive their wallets with it, and an operator
 * can open the same wallet in a consumer TON wallet app.
 */
export function walletV5R1() {
  const require = createRequire(import.meta.url);
  const { WalletContractV5R1 } = require('@ton/ton');
  const version = require('@ton/ton/package.json').version;
  const { code } = WalletContractV5R1.create({ workchain: 0, publicKey: Buffer.alloc(32) }).init;
  return {
    name: 'WalletV5R1',
    compiler: `@ton/ton ${version} (WalletContractV5R1)`,
    codeHash: code.hash().toString('hex'),
    codeBoc: code.toBoc({ idx: false, crc32: false }).toString('hex'),
  };
}

export function artifactPath(name) {
  return join(BUILD, `${name}.json`);
}

async function main() {
  const check = process.argv.includes('--check');
  let stale = [];
  for (const name of [...CONTRACTS, 'WalletV5R1']) {
    const artifact = name === 'WalletV5R1' ? walletV5R1() : await compile(name);
    const text = JSON.stringify(artifact, null, 2) + '\n';
    const path = artifactPath(name);
    const committed = existsSync(path) ? readFileSync(path, 'utf-8') : null;
    if (check) {
      if (committed !== text) stale.push(name);
      console.log(`${committed === text ? 'ok   ' : 'STALE'} ${name} ${artifact.codeHash}`);
    } else {
      mkdirSync(BUILD, { recursive: true });
      writeFileSync(path, text);
      console.log(`wrote build/${name}.json ${artifact.codeHash}`);
    }
  }
  const config = sandboxConfig();
  const configPath = join(BUILD, 'ton_config.boc');
  const committedConfig = existsSync(configPath) ? readFileSync(configPath) : null;
  if (check) {
    const same = committedConfig !== null && committedConfig.equals(config);
    if (!same) stale.push('ton_config.boc');
    console.log(`${same ? 'ok   ' : 'STALE'} ton_config.boc (@ton/sandbox's default config)`);
  } else {
    writeFileSync(configPath, config);
    console.log(`wrote build/ton_config.boc (${config.length} bytes)`);
  }
  if (stale.length > 0) {
    console.error(
      `contracts/build/ does not match the sources for ${stale.join(', ')}: ` +
        `run \`npm run build\` in contracts/ and commit the result`,
    );
    process.exit(1);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e.message ?? e);
    process.exit(1);
  });
}
