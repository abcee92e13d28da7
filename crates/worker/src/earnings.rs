//! What the worker has earned, as the proxy's signed vouchers state it.
//! Every voucher is checked; a proxy whose voucher fails a check, or whose
//! ledger knows less than the worker's latest voucher (it lost state), is
//! refused: the session ends and the reason is logged and shown in stats.

use std::sync::Mutex;

use cocoon_pay::{SignedVoucher, VoucherBook, VoucherKind};
use tycho_types::models::StdAddr;

/// The worker's vouchers from its proxy.
#[derive(Debug, Default)]
pub(crate) struct Earnings {
    book: Mutex<Option<VoucherBook>>,
    refused: Mutex<Option<String>>,
}

impl Earnings {
    fn refuse(&self, why: String) -> String {
        tracing::error!(reason = %why, "refusing the proxy");
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
        why
    }

    /// Checks the proxy's welcome: its voucher key and contract, and that its
    /// ledger is not behind the latest voucher this worker holds.
    pub(crate) fn on_welcome(
        &self,
        address: &StdAddr,
        w: &cocoon_proto::ProxyWelcome,
    ) -> Result<(), String> {
        if !w.payments {
            return Ok(());
        }
        let (Ok(key), Ok(contract)) = (
            <[u8; 32]>::try_from(w.voucher_key.as_ref()),
            w.contract_address.parse::<StdAddr>(),
        ) else {
            return Err(self.refuse(format!(
                "the proxy charges but announced an unusable voucher key or contract {:?}",
                w.contract_address
            )));
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
                .map_err(|e| self.refuse(format!("the proxy's voucher is malformed: {e}")))?;
            v.verify_signature(&key)
                .map_err(|e| self.refuse(format!("the proxy's voucher: {e}")))?;
            Some(v)
        };
        if let Some(held) = held {
            let their_total = theirs.as_ref().map(|v| v.voucher.total);
            if their_total.is_none_or(|t| t < held.voucher.total) {
                return Err(self.refuse(format!(
                    "the proxy's ledger has lost state: this worker holds a voucher for {} (seqno {}), the proxy's ledger says {}",
                    held.voucher.total,
                    held.voucher.seqno,
                    their_total.map_or("nothing".to_string(), |t| t.to_string())
                )));
            }
        }
        // The proxy's latest voucher is this worker's too (after a restart,
        // the only copy it has).
        if let (Some(v), Some(b)) = (theirs, book.as_mut()) {
            match b.accept(v, cocoon_core::unix_now()) {
                Ok(()) | Err(cocoon_pay::VoucherError::Replayed { .. }) => {}
                Err(e) => return Err(self.refuse(format!("the proxy's voucher: {e}"))),
            }
        }
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    /// Checks and keeps a voucher sent after a settled request.
    pub(crate) fn on_voucher(&self, boc: &[u8]) -> Result<(), String> {
        let v = SignedVoucher::from_boc(boc)
            .map_err(|e| self.refuse(format!("the proxy sent a malformed voucher: {e}")))?;
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = book.as_mut() else {
            return Err(self.refuse("the proxy sent a voucher without announcing its key".into()));
        };
        match b.accept(v, cocoon_core::unix_now()) {
            // Settlements finish out of order; an older, consistent voucher
            // is simply not the latest.
            Ok(()) | Err(cocoon_pay::VoucherError::Replayed { .. }) => Ok(()),
            Err(e) => Err(self.refuse(format!("the proxy sent a bad voucher: {e}"))),
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
