//! The devnet behind the same [`Chain`] interface the nodes use with
//! toncenter, answered in process: a tool or a test drives the nodes'
//! chain code (wallets, traces, contract views) against it directly. As
//! over HTTP, a message sent is only accepted: blocks are made by
//! whoever drives the devnet ([`Devnet::produce_block`], or the API's
//! block producer).

use std::future::{ready, Future};

use cocoon_chain::chain::{
    AccountState, Chain, ChainError, ChainHead, FeeEstimate, GetMethodOutput, TransactionId,
    TransactionRecord,
};
use cocoon_chain::stack::StackEntry;
use cocoon_core::Nanoton;
use tycho_types::cell::{Cell, CellBuilder, HashBytes};
use tycho_types::models::{ExtInMsgInfo, IntAddr, Message, MsgInfo, StateInit, StdAddr};
use tycho_types::num::Tokens;

use crate::{Devnet, DevnetError};

/// A devnet failure as a chain error: the devnet refused the call.
fn refused(method: &'static str) -> impl Fn(DevnetError) -> ChainError {
    move |e| ChainError::Refused {
        endpoint: "devnet (in process)".into(),
        method,
        code: 500,
        message: e.to_string(),
    }
}

fn nanoton(t: Tokens) -> Nanoton {
    Nanoton::new(u64::try_from(t.into_inner()).unwrap_or(u64::MAX))
}

impl Devnet {
    fn chain_account(&self, address: &StdAddr) -> Result<AccountState, DevnetError> {
        let a = self.account(address)?;
        let (lt, hash) = a.last_transaction;
        Ok(AccountState {
            balance: nanoton(a.balance),
            status: a.status,
            code: a.code,
            data: a.data,
            last_transaction: (lt != 0).then_some(TransactionId { lt, hash }),
            sync_utime: self.now(),
        })
    }

    fn chain_transactions(
        &self,
        address: &StdAddr,
        from: Option<TransactionId>,
        limit: usize,
    ) -> Result<Vec<TransactionRecord>, DevnetError> {
        let cells = self.transactions(address, from.map(|f| f.lt), limit.max(1))?;
        let mut out = Vec::with_capacity(cells.len());
        for cell in cells {
            let tx: tycho_types::models::Transaction = cell
                .parse()
                .map_err(|e| DevnetError::Malformed(format!("a stored transaction: {e}")))?;
            out.push(TransactionRecord {
                id: TransactionId {
                    lt: tx.lt,
                    hash: *cell.repr_hash(),
                },
                utime: tx.now,
                fee: nanoton(tx.total_fees.tokens),
                cell,
            });
        }
        Ok(out)
    }

    fn chain_estimate(
        &self,
        address: &StdAddr,
        body: &Cell,
        init: Option<&StateInit>,
    ) -> Result<FeeEstimate, DevnetError> {
        let msg = CellBuilder::build_from(Message {
            info: MsgInfo::ExtIn(ExtInMsgInfo {
                src: None,
                dst: IntAddr::Std(address.clone()),
                import_fee: Tokens::ZERO,
            }),
            init: init.cloned(),
            body: body.as_slice_allow_exotic(),
            layout: None,
        })
        .map_err(|e| DevnetError::Malformed(format!("building the message: {e}")))?;
        // As toncenter's estimateFee is asked: before the message is signed.
        self.estimate_external(msg, true)
    }
}

impl Chain for Devnet {
    fn send_message(
        &self,
        message: &Cell,
    ) -> impl Future<Output = Result<HashBytes, ChainError>> + Send {
        ready(
            self.accept_external(message.clone())
                .map_err(refused("sendBoc")),
        )
    }

    fn run_get_method(
        &self,
        address: &StdAddr,
        method: &str,
        args: &[StackEntry],
    ) -> impl Future<Output = Result<GetMethodOutput, ChainError>> + Send {
        let out = Devnet::run_get_method(self, address, method, args)
            .map(|r| GetMethodOutput {
                exit_code: r.exit_code,
                gas_used: r.gas_used,
                stack: r.stack,
            })
            .map_err(refused("runGetMethod"));
        ready(out)
    }

    fn account(
        &self,
        address: &StdAddr,
    ) -> impl Future<Output = Result<AccountState, ChainError>> + Send {
        ready(
            self.chain_account(address)
                .map_err(refused("getAddressInformation")),
        )
    }

    fn transactions(
        &self,
        address: &StdAddr,
        from: Option<TransactionId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TransactionRecord>, ChainError>> + Send {
        ready(
            self.chain_transactions(address, from, limit)
                .map_err(refused("getTransactions")),
        )
    }

    fn head(&self) -> impl Future<Output = Result<ChainHead, ChainError>> + Send {
        let seqno = u32::try_from(self.counters().blocks).unwrap_or(u32::MAX);
        ready(Ok(ChainHead { seqno }))
    }

    fn estimate_fee(
        &self,
        address: &StdAddr,
        body: &Cell,
        init: Option<&StateInit>,
    ) -> impl Future<Output = Result<FeeEstimate, ChainError>> + Send {
        ready(
            self.chain_estimate(address, body, init)
                .map_err(refused("estimateFee")),
        )
    }
}
