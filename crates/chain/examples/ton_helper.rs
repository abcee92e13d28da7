//! Cocoon's own Rust code behind the contract tests in `contracts/test`:
//! vouchers signed by `cocoon-pay`, wallets built by `cocoon-chain`. The
//! sandbox then proves the contracts against the exact bytes a node sends,
//! not against a second implementation.
//!
//! Reads one request per line on stdin and answers one line on stdout:
//!
//! ```text
//! sign KIND CONTRACT PARTY TOTAL SEQNO EXPIRES_AT SEED_HEX
//!   -> ok BOC_HEX           (the SignedVoucher bag of cells)
//! key SEED_HEX
//!   -> ok PUBLIC_KEY_HEX
//! wallet SEED_HEX GLOBAL_ID
//!   -> ok PUBLIC_KEY_HEX ADDRESS      (the W5R1 wallet of that key)
//! mnemonic GLOBAL_ID WORD x24
//!   -> ok PUBLIC_KEY_HEX ADDRESS
//! transfer SEED_HEX GLOBAL_ID SEQNO VALID_UNTIL DEPLOY TO VALUE BOUNCE BODY_HEX|-
//!   -> ok BOC_HEX           (the signed external message)
//! root OWNER TERMS PRICES
//!   -> ok ADDRESS STATE_INIT_BOC_HEX
//! derive ROOT PROXY_OWNER PROXY_KEY_HEX OWNER TERMS
//!   -> ok PROXY CLIENT WORKER   (OWNER's client and worker contracts)
//! body register_proxy OWNER KEY_HEX ENDPOINTS | body top_up AMOUNT | body add_proxy_stake AMOUNT
//!   -> ok BOC_HEX
//! body add_receipt_key KEY_HEX | body set_terms TERMS
//!   -> ok BOC_HEX
//! evidence PROXY_SEED WORKER CLIENT_OWNER EXPIRES_AT ACCUSED FIRST SECOND
//!   -> ok BOC_HEX           (a SignedEvidence cell, as a proxy signs it)
//! ```
//!
//! Each receipt of `evidence` is `SEED:REQUEST:CONTENT:MODEL:TIME`
//! (32-byte hex values, then the receipt's UNIX time), version 4 facts
//! signed by the receipt key of SEED as `cocoon-receipt` signs them; a
//! sixth part `:forged` spoils the signature. The evidence is signed as
//! given, without the checks a proxy makes first, so the tests can show the
//! contract refusing bad evidence.
//!
//! TERMS is `MIN_PROXY_STAKE MIN_CLIENT_STAKE MIN_WORKER_STAKE
//! PROXY_CLOSE_DELAY CLIENT_CLOSE_DELAY SLASH_SHARE`; PRICES is
//! `PRICE_PER_TOKEN WORKER_FEE PROMPT CACHED COMPLETION REASONING`.
//!
//! KIND is `client` or `worker`; addresses are raw (`0:<64 hex>`); DEPLOY
//! and BOUNCE are 0 or 1; a request it cannot serve is answered
//! `error MESSAGE`.

use std::io::{BufRead, Write};
use std::str::FromStr;

use cocoon_chain::contracts::{self, Codes, Prices, ProxyConfig, Terms};
use cocoon_chain::wallet::{Transfer, WalletKey, WalletV5};
use cocoon_core::Nanoton;
use cocoon_pay::voucher::{Voucher, VoucherKind, VoucherSigner};
use cocoon_receipt::batch::{self, BatchProof};
use cocoon_receipt::evidence::{SignedEvidence, SlashEvidence};
use cocoon_receipt::{ReceiptFacts, SignedReceiptFacts};
use tycho_types::boc::Boc;
use tycho_types::cell::{CellBuilder, HashBytes};
use tycho_types::models::StdAddr;

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let answer = match serve(&line) {
            Ok(hex) => format!("ok {hex}"),
            Err(e) => format!("error {e}"),
        };
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
}

fn serve(line: &str) -> Result<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["key", seed] => Ok(hex(&signer(seed)?.public_key())),
        ["sign", kind, contract, party, total, seqno, expires_at, seed] => {
            let kind = match *kind {
                "client" => VoucherKind::Client,
                "worker" => VoucherKind::Worker,
                other => return Err(format!("kind must be client or worker, not {other}")),
            };
            let voucher = Voucher {
                kind,
                contract: address(contract)?,
                party: address(party)?,
                total: Nanoton::new(total.parse().map_err(|e| format!("total {total}: {e}"))?),
                seqno: seqno.parse().map_err(|e| format!("seqno {seqno}: {e}"))?,
                expires_at: expires_at
                    .parse()
                    .map_err(|e| format!("expires_at {expires_at}: {e}"))?,
            };
            let signed = signer(seed)?.sign(voucher).map_err(|e| e.to_string())?;
            Ok(hex(&signed.to_boc().map_err(|e| e.to_string())?))
        }
        ["wallet", seed, global_id] => {
            let w =
                WalletV5::new(wallet_key(seed)?, number(global_id)?).map_err(|e| e.to_string())?;
            Ok(format!("{} {}", hex(&w.key().public_key()), w.address()))
        }
        ["mnemonic", global_id, words @ ..] => {
            let key = WalletKey::from_mnemonic(&words.join(" ")).map_err(|e| e.to_string())?;
            let w = WalletV5::new(key, number(global_id)?).map_err(|e| e.to_string())?;
            Ok(format!("{} {}", hex(&w.key().public_key()), w.address()))
        }
        ["transfer", seed, global_id, seqno, valid_until, deploy, to, value, bounce, body] => {
            let w =
                WalletV5::new(wallet_key(seed)?, number(global_id)?).map_err(|e| e.to_string())?;
            let body = match *body {
                "-" => None,
                h => Some(Boc::decode(unhex(h)?).map_err(|e| format!("body: {e}"))?),
            };
            let t = Transfer {
                to: address(to)?,
                value: Nanoton::new(number(value)?),
                bounce: *bounce == "1",
                body,
                init: None,
            };
            let msg = w
                .transfer(number(seqno)?, number(valid_until)?, &[t], *deploy == "1")
                .map_err(|e| e.to_string())?;
            Ok(hex(&Boc::encode(&msg)))
        }
        ["root", owner, rest @ ..] if rest.len() == 12 => {
            let (terms, prices) = (terms(&rest[..6])?, prices(&rest[6..])?);
            let codes = Codes::committed().map_err(|e| e.to_string())?;
            let init = contracts::root_state_init(&address(owner)?, &prices, &terms, &codes)
                .map_err(|e| e.to_string())?;
            let cell = CellBuilder::build_from(&init).map_err(|e| e.to_string())?;
            Ok(format!(
                "{} {}",
                contracts::address_of(&init),
                hex(&Boc::encode(&cell))
            ))
        }
        ["derive", root, proxy_owner, key, owner, rest @ ..] if rest.len() == 6 => {
            let codes = Codes::committed().map_err(|e| e.to_string())?;
            let config = ProxyConfig::under(&address(root)?, &terms(rest)?, &codes);
            let key = HashBytes(unhex(key)?.try_into().map_err(|_| "a key is 32 bytes")?);
            let proxy = contracts::address_of(
                &contracts::proxy_state_init(&address(proxy_owner)?, &key, &config, &codes.proxy)
                    .map_err(|e| e.to_string())?,
            );
            let owner = address(owner)?;
            let client = contracts::client_state_init(&proxy, &key, &config, &owner)
                .map_err(|e| e.to_string())?;
            let worker = contracts::worker_state_init(&proxy, &key, &config, &owner)
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "{proxy} {} {}",
                contracts::address_of(&client),
                contracts::address_of(&worker)
            ))
        }
        ["body", "register_proxy", owner, key, endpoints] => {
            let key = HashBytes(unhex(key)?.try_into().map_err(|_| "a key is 32 bytes")?);
            let b = contracts::register_proxy(7, &address(owner)?, &key, endpoints)
                .map_err(|e| e.to_string())?;
            Ok(hex(&Boc::encode(&b)))
        }
        ["body", "top_up", amount] => {
            let b =
                contracts::top_up(7, Nanoton::new(number(amount)?)).map_err(|e| e.to_string())?;
            Ok(hex(&Boc::encode(&b)))
        }
        ["body", "add_proxy_stake", amount] => {
            let b = contracts::add_proxy_stake(7, Nanoton::new(number(amount)?))
                .map_err(|e| e.to_string())?;
            Ok(hex(&Boc::encode(&b)))
        }
        ["body", "add_receipt_key", key] => {
            let key: [u8; 32] = unhex(key)?.try_into().map_err(|_| "a key is 32 bytes")?;
            let b = contracts::add_receipt_key(7, &key).map_err(|e| e.to_string())?;
            Ok(hex(&Boc::encode(&b)))
        }
        ["body", "set_terms", rest @ ..] if rest.len() == 6 => {
            let b = contracts::set_terms(7, &terms(rest)?).map_err(|e| e.to_string())?;
            Ok(hex(&Boc::encode(&b)))
        }
        ["evidence", proxy_seed, worker, client_owner, expires_at, accused, first, second] => {
            let evidence = SlashEvidence {
                worker: address(worker)?,
                client_owner: address(client_owner)?,
                expires_at: number(expires_at)?,
                accused: receipt_facts(accused)?,
                first: receipt_facts(first)?,
                second: receipt_facts(second)?,
            };
            let hash = evidence.hash().map_err(|e| e.to_string())?;
            let signed = SignedEvidence {
                signature: signer(proxy_seed)?.sign_cell_hash(&hash),
                evidence,
            };
            Ok(hex(&signed.to_boc().map_err(|e| e.to_string())?))
        }
        _ => Err(format!("unknown request: {line}")),
    }
}

/// `SEED:REQUEST:CONTENT:MODEL:TIME[:MODIFIER]`: facts signed by SEED's key.
/// Modifiers: `forged` (the signature altered), `batch` (signed as leaf 3
/// of a batch of 5), `batchforged` (that, with a sibling altered after
/// signing), `batchdeep` (a validly signed path of nine levels, one more
/// than a batch may have).
fn receipt_facts(spec: &str) -> Result<SignedReceiptFacts, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let h = |s: &str| -> Result<[u8; 32], String> {
        unhex(s)?
            .try_into()
            .map_err(|_| format!("{s}: not 32 bytes"))
    };
    let (seed, request, content, model, time, modifier) = match parts.as_slice() {
        [seed, r, c, m, t] => (*seed, h(r)?, h(c)?, h(m)?, number(t)?, ""),
        [seed, r, c, m, t, modifier] => (*seed, h(r)?, h(c)?, h(m)?, number(t)?, *modifier),
        _ => {
            return Err(format!(
                "receipt {spec}: SEED:REQUEST:CONTENT:MODEL:TIME[:MODIFIER]"
            ))
        }
    };
    let key = signer(seed)?;
    let facts = ReceiptFacts {
        request,
        content,
        model,
        time: Some(time),
        body: h(&"ab".repeat(32))?,
    };
    let leaf = facts.hash().map_err(|e| e.to_string())?;
    let (root, mut batch) = match modifier {
        "" | "forged" => (leaf, None),
        "batch" | "batchforged" => {
            let mut leaves: Vec<[u8; 32]> = (0u8..5).map(|i| [i + 1; 32]).collect();
            leaves[3] = leaf;
            let (root, mut proofs) = batch::tree(&leaves);
            (root, proofs.swap_remove(3))
        }
        "batchdeep" => {
            let proof = BatchProof {
                index: 0,
                path: vec![[9; 32]; batch::MAX_BATCH_DEPTH + 1],
            };
            let root = proof.path.iter().fold(leaf, |h, s| batch::node(&h, s));
            (root, Some(proof))
        }
        other => return Err(format!("receipt {spec}: unknown modifier {other}")),
    };
    let mut signature = key.sign_cell_hash(&root);
    if modifier == "forged" {
        signature[0] ^= 1;
    }
    if let (Some(b), "batchforged") = (batch.as_mut(), modifier) {
        b.path[1][0] ^= 1;
    }
    Ok(SignedReceiptFacts {
        key: key.public_key(),
        signature,
        facts,
        batch,
    })
}

fn terms(w: &[&str]) -> Result<Terms, String> {
    Ok(Terms {
        min_proxy_stake: Nanoton::new(number(w[0])?),
        min_client_stake: Nanoton::new(number(w[1])?),
        min_worker_stake: Nanoton::new(number(w[2])?),
        proxy_close_delay: number(w[3])?,
        client_close_delay: number(w[4])?,
        slash_share: number(w[5])?,
    })
}

fn prices(w: &[&str]) -> Result<Prices, String> {
    Ok(Prices {
        price_per_token: Nanoton::new(number(w[0])?),
        worker_fee_per_token: Nanoton::new(number(w[1])?),
        prompt_multiplier: number(w[2])?,
        cached_multiplier: number(w[3])?,
        completion_multiplier: number(w[4])?,
        reasoning_multiplier: number(w[5])?,
    })
}

fn number<T: FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| format!("{s}: {e}"))
}

fn wallet_key(seed_hex: &str) -> Result<WalletKey, String> {
    let seed: [u8; 32] = unhex(seed_hex)?
        .try_into()
        .map_err(|_| format!("seed must be 32 bytes, got {}", seed_hex.len() / 2))?;
    WalletKey::from_seed(&seed).map_err(|e| e.to_string())
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| format!("not hex: {s}"))
        })
        .collect()
}

fn address(s: &str) -> Result<StdAddr, String> {
    StdAddr::from_str(s).map_err(|e| format!("address {s}: {e}"))
}

fn signer(seed_hex: &str) -> Result<VoucherSigner, String> {
    let bytes = (0..seed_hex.len())
        .step_by(2)
        .map(|i| {
            seed_hex
                .get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| format!("seed is not hex: {seed_hex}"))
        })
        .collect::<Result<Vec<u8>, String>>()?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("seed must be 32 bytes, got {}", seed_hex.len() / 2))?;
    VoucherSigner::from_seed(&seed).map_err(|e| e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
