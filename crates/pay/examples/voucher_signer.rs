//! Signs vouchers with this crate's own code for the contract tests in
//! `contracts/test`, so the contracts are proven against the exact bytes a
//! proxy signs, not against a second implementation.
//!
//! Reads one request per line on stdin and answers one line on stdout:
//!
//! ```text
//! sign KIND CONTRACT PARTY TOTAL SEQNO EXPIRES_AT SEED_HEX
//!   -> ok BOC_HEX           (the SignedVoucher bag of cells)
//! key SEED_HEX
//!   -> ok PUBLIC_KEY_HEX
//! ```
//!
//! KIND is `client` or `worker`; addresses are raw (`0:<64 hex>`); a
//! request it cannot serve is answered `error MESSAGE`.

use std::io::{BufRead, Write};
use std::str::FromStr;

use cocoon_core::Nanoton;
use cocoon_pay::voucher::{Voucher, VoucherKind, VoucherSigner};
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
        _ => Err(format!("unknown request: {line}")),
    }
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
