//! The chain's side: toncenter's JSON answers as nodes read them, and
//! external messages as the devnet takes them in.

use std::sync::{Mutex, OnceLock};

use cocoon_chain::toncenter::wire::{
    Envelope, FullAccountState, MasterchainInfo, QueryFees, RawTransaction, RunResult,
};
use cocoon_chain::toncenter::{account_from_wire, get_method_from_wire, transaction_from_wire};
use cocoon_chain::trace::Landed;
use cocoon_devnet::{Devnet, DevnetOptions};
use tycho_types::boc::Boc;
use tycho_types::models::StdAddr;

/// The account a transaction says it is of (a node asks for one
/// account's transactions and reads them as that account's).
fn account_of(cell: &tycho_types::cell::Cell) -> StdAddr {
    let account = cell
        .parse::<tycho_types::models::Transaction>()
        .map(|t| t.account)
        .unwrap_or_default();
    StdAddr::new(0, account)
}

/// One answer of a toncenter v2 method (the selector picks which), read
/// as the adapter reads it.
pub(crate) fn toncenter_json(data: &[u8]) -> bool {
    let Some((select, rest)) = crate::selector(data) else {
        return false;
    };
    fn result<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
        serde_json::from_slice::<Envelope<T>>(body)
            .ok()
            .and_then(|e| e.result)
    }
    match select % 5 {
        0 => result::<FullAccountState>(rest).is_some_and(|r| account_from_wire(&r).is_ok()),
        1 => result::<RunResult>(rest).is_some_and(|r| get_method_from_wire(&r).is_ok()),
        2 => result::<Vec<RawTransaction>>(rest).is_some_and(|txs| {
            txs.iter().all(|t| match transaction_from_wire(t) {
                Ok(record) => Landed::read(&account_of(&record.cell), &record).is_ok(),
                Err(_) => false,
            })
        }),
        3 => result::<MasterchainInfo>(rest).is_some(),
        _ => result::<QueryFees>(rest).is_some(),
    }
}

/// A devnet with development tools on and a frozen clock, in a folder of
/// its own for this process.
fn devnet() -> &'static Mutex<(Devnet, u32)> {
    static DEVNET: OnceLock<Mutex<(Devnet, u32)>> = OnceLock::new();
    DEVNET.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cocoon-fuzz-devnet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = DevnetOptions {
            dev: true,
            frozen_clock: Some(crate::seeds::DEVNET_CLOCK),
            ..DevnetOptions::default()
        };
        let devnet = Devnet::open(&dir, options).expect("a devnet opens in a fresh folder");
        crate::seeds::fund_wallet(&devnet);
        Mutex::new((devnet, 0))
    })
}

/// An external message, as `sendBoc` hands it to the devnet: checked
/// against the last block's state and queued; every 32 accepted, a block
/// runs them.
pub(crate) fn devnet_intake(data: &[u8]) -> bool {
    let Ok(cell) = Boc::decode(data) else {
        return false;
    };
    let mut guard = devnet().lock().unwrap_or_else(|p| p.into_inner());
    let (devnet, accepted) = &mut *guard;
    let ok = devnet.accept_external(cell).is_ok();
    if ok {
        *accepted += 1;
        if *accepted % 32 == 0 {
            let _ = devnet.produce_block();
        }
    }
    ok
}
