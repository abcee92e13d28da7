//! What the worker has earned, as the proxy's signed vouchers state it.
//! Every voucher is checked; a proxy whose voucher fails a check, or whose
//! ledger knows less than the worker's latest voucher (it lost state), is
//! refused: the session ends and the reason is logged and shown in stats.

use std::sync::Mutex;

use cocoon_pay::{SignedVoucher, VoucherBook, VoucherKind};
use tycho_types::models::StdAddr;

/// Why the worker refuses its proxy.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ProxyRefused {
    /// The welcome names no usable voucher key or contract.
    #[error("the proxy charges but announced an unusable voucher key or contract {contract:?}")]
    Unusable {
        /// The contract it named.
        contract: String,
    },
    /// A voucher does not decode.
    #[error("the proxy's voucher is malformed: {0}")]
    Malformed(cocoon_pay::VoucherError),
    /// A voucher fails a check.
    #[error("the proxy's voucher: {0}")]
    Voucher(cocoon_pay::VoucherError),
    /// Its ledger is behind this worker's latest voucher.
    #[error("the proxy's ledger has lost state: this worker holds a voucher for {held} (seqno {seqno}), the proxy's ledger says {}", .theirs.map_or("nothing".to_string(), |t| t.to_string()))]
    LostState {
        /// The total this worker holds a voucher for.
        held: cocoon_core::Nanoton,
        /// Its seqno.
        seqno: u64,
        /// What the proxy's ledger says.
        theirs: Option<cocoon_core::Nanoton>,
    },
    /// A voucher came before any key to check it with.
    #[error("the proxy sent a voucher without announcing its key")]
    NoKey,
}

/// The worker's vouchers from its proxy.
#[derive(Debug, Default)]
pub(crate) struct Earnings {
    book: Mutex<Option<VoucherBook>>,
    refused: Mutex<Option<String>>,
}

impl Earnings {
    fn refuse(&self, why: ProxyRefused) -> ProxyRefused {
        tracing::error!(reason = %why, "refusing the proxy");
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
        why
    }

    /// Checks the proxy's welcome: its voucher key and contract, and that its
    /// ledger is not behind the latest voucher this worker holds.
    pub(crate) fn on_welcome(
        &self,
        address: &StdAddr,
        w: &cocoon_proto::ProxyWelcome,
    ) -> Result<(), ProxyRefused> {
        if !w.payments {
            return Ok(());
        }
        let (Ok(key), Ok(contract)) = (
            <[u8; 32]>::try_from(w.voucher_key.as_ref()),
            w.contract_address.parse::<StdAddr>(),
        ) else {
            return Err(self.refuse(ProxyRefused::Unusable {
                contract: w.contract_address.clone(),
            }));
        };
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let keep = book
            .as_ref()
            .is_some_and(|b| b.proxy_key() == &key && b.contract() == &contract);
        if !keep {
            *book = Some(VoucherBook::new(
                VoucherKind::Worker,
                contract,
                address.clone(),
                key,
            ));
        }
        let held = book.as_ref().and_then(|b| b.latest().cloned());
        let theirs = if w.worker_voucher.is_empty() {
            None
        } else {
            let v = SignedVoucher::from_boc(&w.worker_voucher)
                .map_err(|e| self.refuse(ProxyRefused::Malformed(e)))?;
            v.verify_signature(&key)
                .map_err(|e| self.refuse(ProxyRefused::Voucher(e)))?;
            Some(v)
        };
        if let Some(held) = held {
            let their_total = theirs.as_ref().map(|v| v.voucher.total);
            if their_total.is_none_or(|t| t < held.voucher.total) {
                return Err(self.refuse(ProxyRefused::LostState {
                    held: held.voucher.total,
                    seqno: held.voucher.seqno,
                    theirs: their_total,
                }));
            }
        }
        // The proxy's latest voucher is this worker's too (after a restart,
        // the only copy it has).
        if let (Some(v), Some(b)) = (theirs, book.as_mut()) {
            match b.accept(v, cocoon_core::unix_now()) {
                Ok(()) | Err(cocoon_pay::VoucherError::Replayed { .. }) => {}
                Err(e) => return Err(self.refuse(ProxyRefused::Voucher(e))),
            }
        }
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    /// Checks and keeps a voucher sent after a settled request.
    pub(crate) fn on_voucher(&self, boc: &[u8]) -> Result<(), ProxyRefused> {
        let v =
            SignedVoucher::from_boc(boc).map_err(|e| self.refuse(ProxyRefused::Malformed(e)))?;
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = book.as_mut() else {
            return Err(self.refuse(ProxyRefused::NoKey));
        };
        match b.accept(v, cocoon_core::unix_now()) {
            // Settlements finish out of order; an older, consistent voucher
            // is simply not the latest.
            Ok(()) | Err(cocoon_pay::VoucherError::Replayed { .. }) => Ok(()),
            Err(e) => Err(self.refuse(ProxyRefused::Voucher(e))),
        }
    }

    /// The latest voucher, for a payout.
    pub(crate) fn latest_voucher(&self) -> Option<SignedVoucher> {
        self.book
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|b| b.latest().cloned())
    }

    /// Earned in total (the latest voucher's total) and its seqno.
    pub(crate) fn latest(&self) -> Option<(u64, u64)> {
        self.book
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|b| b.latest())
            .map(|v| (v.voucher.total.get(), v.voucher.seqno))
    }

    /// Why the proxy was refused, if it was.
    pub(crate) fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
