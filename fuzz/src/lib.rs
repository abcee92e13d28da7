//! Fuzz targets for every parser that reads what an app, a peer or a chain
//! sends: the OpenAI request validator, engine output, the wire protocol,
//! TEE evidence (TDX quotes, SEV-SNP reports, NVIDIA GPU reports, RA-TLS
//! certificates), vouchers, receipts and slash evidence, toncenter's JSON,
//! the devnet's message intake, Telegram initData and the bot's updates.
//!
//! Each target is a plain function over bytes, so the same code runs under
//! libFuzzer (`fuzz_targets/`, driven by `scripts/fuzz`) and in the test
//! suite over the seeds and every input that once crashed
//! (`fuzz/regressions/TARGET/`). A target returns whether the input went
//! all the way through (accepted); the tests check that the seeds do, so
//! the fuzzer starts deep, not at the first length check.

#![forbid(unsafe_code)]

mod api;
mod chain;
mod engine;
pub mod fixtures;
mod money;
pub mod seeds;
mod tee;
mod wire;

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name: the binary under `fuzz_targets/` and its corpus folder.
    pub name: &'static str,
    /// Reads one input; returns whether it was accepted all the way.
    pub run: fn(&[u8]) -> bool,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "openai_request",
        run: api::openai_request,
    },
    Target {
        name: "engine_stream",
        run: engine::engine_stream,
    },
    Target {
        name: "wire_protocol",
        run: wire::wire_protocol,
    },
    Target {
        name: "tdx_quote",
        run: tee::tdx_quote,
    },
    Target {
        name: "snp_report",
        run: tee::snp_report,
    },
    Target {
        name: "nvidia_report",
        run: tee::nvidia_report,
    },
    Target {
        name: "ratls_cert",
        run: tee::ratls_cert,
    },
    Target {
        name: "voucher",
        run: money::voucher,
    },
    Target {
        name: "receipt",
        run: money::receipt,
    },
    Target {
        name: "toncenter_json",
        run: chain::toncenter_json,
    },
    Target {
        name: "devnet_intake",
        run: chain::devnet_intake,
    },
    Target {
        name: "telegram_init_data",
        run: api::telegram_init_data,
    },
    Target {
        name: "bot_update",
        run: api::bot_update,
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Runs target `name` on `data` (for the libFuzzer binaries).
pub fn run(name: &str, data: &[u8]) {
    if let Some(t) = target(name) {
        (t.run)(data);
    }
}

/// Splits the first byte (which selects a variant of the input) from the
/// rest.
fn selector(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(s, rest)| (*s, rest))
}
