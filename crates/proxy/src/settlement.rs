//! Where a request's money is held and moved, and the reservation one
//! request holds while its answer streams.
//!
//! [`Settlement`] is the seam: today the proxy's durable redb ledger
//! implements it; settlement on chain plugs in beside it, and replication
//! becomes several dispatches under one [`Reservation`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cocoon_core::{Charge, Coefficient, Nanoton, Usage};
use cocoon_pay::{AccountError, Ledger, LedgerError, Op, Outcome};
use tokio::time::Instant;
use tycho_types::models::StdAddr;

use crate::Payments;

/// What a [`Settlement`] operation returns.
pub type SettleFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SettleError>> + Send + 'a>>;

/// The money operations of one request's life.
pub trait Settlement: Send + Sync + std::fmt::Debug {
    /// Holds `amount` of `client`'s balance for `request`, served by `worker`.
    fn reserve<'a>(
        &'a self,
        request: &'a str,
        client: &'a StdAddr,
        worker: &'a StdAddr,
        amount: Nanoton,
    ) -> SettleFuture<'a, ()>;
    /// Makes durable that `request` has cost at least `charge` so far (what
    /// a crash charges).
    fn progress<'a>(&'a self, request: &'a str, charge: Charge) -> SettleFuture<'a, ()>;
    /// Charges `request` `charge` and pays its worker; at most the
    /// reservation moves.
    fn settle<'a>(
        &'a self,
        request: &'a str,
        charge: Charge,
    ) -> SettleFuture<'a, cocoon_pay::Settlement>;
    /// Gives `request`'s reservation back.
    fn release<'a>(&'a self, request: &'a str) -> SettleFuture<'a, ()>;
}

/// Why money could not be held or moved.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The payer's available balance does not cover the amount.
    #[error("{0}")]
    InsufficientFunds(AccountError),
    /// The payer's charges not yet committed on chain have reached what its
    /// contract guarantees: served again once a commit lands.
    #[error("{0}")]
    AwaitingCommit(AccountError),
    /// The payer's account takes no new requests.
    #[error("{0}")]
    NotActive(AccountError),
    /// The books could not be read or written; nothing moved.
    #[error("{0}")]
    Books(String),
}

impl From<LedgerError> for SettleError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Account(
                a @ (AccountError::InsufficientFunds { .. } | AccountError::AboveGuarantee { .. }),
            ) => SettleError::InsufficientFunds(a),
            LedgerError::Account(a @ AccountError::BeyondGuarantee { .. }) => {
                SettleError::AwaitingCommit(a)
            }
            LedgerError::Account(a @ AccountError::NotActive(_)) => SettleError::NotActive(a),
            other => SettleError::Books(other.to_string()),
        }
    }
}

/// The proxy's own durable ledger.
impl Settlement for Ledger {
    fn reserve<'a>(
        &'a self,
        request: &'a str,
        client: &'a StdAddr,
        worker: &'a StdAddr,
        amount: Nanoton,
    ) -> SettleFuture<'a, ()> {
        Box::pin(async move {
            let op = Op::Reserve {
                request: request.to_owned(),
                client: client.clone(),
                worker: worker.clone(),
                amount,
            };
            self.submit(op).await?;
            Ok(())
        })
    }

    fn progress<'a>(&'a self, request: &'a str, charge: Charge) -> SettleFuture<'a, ()> {
        Box::pin(async move {
            let op = Op::Progress {
                request: request.to_owned(),
                charge,
            };
            self.submit(op).await?;
            Ok(())
        })
    }

    fn settle<'a>(
        &'a self,
        request: &'a str,
        charge: Charge,
    ) -> SettleFuture<'a, cocoon_pay::Settlement> {
        Box::pin(async move {
            let op = Op::Settle {
                request: request.to_owned(),
                charge,
            };
            match self.submit(op).await? {
                Outcome::Settled(s) => Ok(*s),
                other => Err(SettleError::Books(format!(
                    "settling {request} answered {other:?}"
                ))),
            }
        })
    }

    fn release<'a>(&'a self, request: &'a str) -> SettleFuture<'a, ()> {
        Box::pin(async move {
            let op = Op::Release {
                request: request.to_owned(),
            };
            self.submit(op).await?;
            Ok(())
        })
    }
}

/// A request's maximum cost, held at one worker's coefficient.
///
/// A state type: while the answer streams, [`checkpoint`](Self::checkpoint)
/// makes the cost of what is about to be forwarded durable; then exactly one
/// of [`settle`](Self::settle) or [`release`](Self::release) consumes it.
/// Dropped unconsumed (a panic, a task cancelled at shutdown) it is settled
/// at its durable progress, or released if there is none, in the
/// background: what recovery after a crash would do.
#[derive(Debug)]
pub(crate) struct Reservation {
    payments: Arc<Payments>,
    request: String,
    coefficient: Coefficient,
    /// The most the request may cost the client.
    reserved: Nanoton,
    /// The prices the request was reserved at.
    prices: cocoon_core::PriceList,
    /// The cost last made durable, and when.
    durable: Charge,
    durable_at: Option<Instant>,
    /// False once settled or released.
    open: bool,
}

impl Reservation {
    /// Holds the most `request` can cost (its body's bytes bound its prompt
    /// tokens; `max_tokens` or the proxy's default its completion) at
    /// `coefficient`, from `client`'s balance, for `worker`.
    pub(crate) async fn hold(
        payments: &Arc<Payments>,
        request: &str,
        client: &StdAddr,
        worker: &StdAddr,
        coefficient: Coefficient,
        (body_len, max_tokens): (usize, u64),
    ) -> Result<Reservation, ReserveError> {
        let (max, prices) = payments
            .max_cost(body_len, max_tokens, coefficient)
            .map_err(ReserveError::Price)?;
        payments
            .settlement
            .reserve(request, client, worker, max.client)
            .await
            .map_err(ReserveError::Refused)?;
        Ok(Reservation {
            payments: payments.clone(),
            request: request.to_owned(),
            coefficient,
            prices,
            reserved: max.client,
            durable: Charge::default(),
            durable_at: None,
            open: true,
        })
    }

    /// The prices the request is charged at.
    pub(crate) fn prices(&self) -> &cocoon_core::PriceList {
        &self.prices
    }

    /// The worker coefficient it is charged at.
    pub(crate) fn coefficient(&self) -> Coefficient {
        self.coefficient
    }

    /// What `usage` costs at this worker's coefficient, capped at the
    /// reservation: whatever a worker reports, a request never costs the
    /// client more than it agreed to hold.
    pub(crate) fn cost(&self, usage: &Usage) -> Charge {
        capped(self.prices.cost(usage, self.coefficient), self.reserved)
    }

    /// Makes durable the cost of everything through `through`, before it is
    /// forwarded, so that a crash cannot lose it. A no-op when no more than
    /// that is durable already.
    pub(crate) async fn checkpoint(&mut self, through: &Usage) -> Result<(), SettleError> {
        let charge = self.cost(through);
        if charge.client <= self.durable.client {
            return Ok(());
        }
        self.payments
            .settlement
            .progress(&self.request, charge)
            .await?;
        self.durable = charge;
        self.durable_at = Some(Instant::now());
        Ok(())
    }

    /// Until when chunks may be held to share the next durable step: the
    /// proxy's checkpoint window after the last one. `None` without a window
    /// or before the first step, so the first chunk is never held.
    pub(crate) fn hold_until(&self) -> Option<Instant> {
        let window: Duration = self.payments.checkpoint_window;
        if window.is_zero() {
            return None;
        }
        self.durable_at.map(|t| t + window)
    }

    /// Charges the request what `usage` costs (capped at the reservation)
    /// and pays its worker. If the books fail the reservation stays, with
    /// its durable progress, for recovery to settle.
    pub(crate) async fn settle(
        mut self,
        usage: &Usage,
    ) -> Result<cocoon_pay::Settlement, SettleError> {
        self.open = false;
        let charge = self.cost(usage);
        self.payments.settlement.settle(&self.request, charge).await
    }

    /// Gives the reservation back: nothing billable reached the client.
    pub(crate) async fn release(mut self) {
        self.open = false;
        if let Err(e) = self.payments.settlement.release(&self.request).await {
            tracing::error!(request = %self.request, error = %e, "releasing a reservation failed");
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let settlement = self.payments.settlement.clone();
        let request = std::mem::take(&mut self.request);
        let durable = self.durable;
        tracing::warn!(%request, durable = %durable.client, "a reservation was dropped unsettled; settling its durable progress");
        runtime.spawn(async move {
            let result = if durable.client == Nanoton::ZERO {
                settlement.release(&request).await
            } else {
                settlement.settle(&request, durable).await.map(|_| ())
            };
            if let Err(e) = result {
                tracing::error!(%request, error = %e, "closing a dropped reservation failed; recovery will");
            }
        });
    }
}

/// Why a reservation could not be held.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReserveError {
    /// The maximum cost does not fit the price arithmetic.
    #[error("maximum cost: {0}")]
    Price(cocoon_core::PriceError),
    /// The settlement refused or failed.
    #[error(transparent)]
    Refused(SettleError),
}

/// A price capped at a reservation; the worker's fee never exceeds what
/// the client pays. Only absurd counts overflow; they cost the reservation.
fn capped(full: Result<Charge, cocoon_core::PriceError>, reserved: Nanoton) -> Charge {
    let full = full.unwrap_or(Charge {
        client: Nanoton::new(u64::MAX),
        worker: Nanoton::new(u64::MAX),
    });
    let client = full.client.min(reserved);
    Charge {
        client,
        worker: full.worker.min(client),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_pay::{VoucherSigner, VoucherTerms};
    use tycho_types::cell::HashBytes;

    fn addr(b: u8) -> StdAddr {
        StdAddr::new(0, HashBytes([b; 32]))
    }

    /// Payments over a real ledger in a directory of the test's own, at 10
    /// nanoton a token, with 1000 nanoton deposited by client `addr(1)`.
    struct Books {
        payments: Arc<Payments>,
        dir: std::path::PathBuf,
    }

    impl Books {
        async fn open(name: &str) -> Books {
            let dir = std::env::temp_dir()
                .join(format!("cocoon-reservation-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let rng = ring::rand::SystemRandom::new();
            let key = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            let signer = VoucherSigner::from_pkcs8(key.as_ref()).unwrap();
            let voucher_key = signer.public_key();
            let terms = VoucherTerms {
                contract: addr(0xcc),
                ttl_secs: 3600,
            };
            let (ledger, _) = Ledger::open(&dir.join("ledger.redb"), signer, terms).unwrap();
            let ledger = Arc::new(ledger);
            ledger
                .submit(Op::Deposit {
                    client: addr(1),
                    amount: Nanoton::new(1000),
                })
                .await
                .unwrap();
            let prices = cocoon_core::PriceList::new(
                Nanoton::new(10),
                Nanoton::new(8),
                [cocoon_core::BasisPoints::ONE; 4],
            )
            .unwrap();
            let payments = Arc::new(Payments {
                settlement: ledger.clone(),
                ledger,
                prices: crate::payments::PriceBoard::new(prices),
                default_max_tokens: 50,
                dev_deposits: true,
                contract: addr(0xcc),
                voucher_key,
                checkpoint_window: Duration::ZERO,
            });
            Books { payments, dir }
        }

        /// Holds the cost of 10 prompt bytes and 50 completion tokens: 600.
        async fn hold(&self, request: &str) -> Reservation {
            Reservation::hold(
                &self.payments,
                request,
                &addr(1),
                &addr(2),
                Coefficient::ONE,
                (10, 0),
            )
            .await
            .unwrap()
        }

        fn client(&self) -> cocoon_pay::ClientAccount {
            self.payments.ledger.client(&addr(1))
        }

        /// Waits (bounded) for the client's account to satisfy `cond`.
        async fn until(&self, cond: impl Fn(&cocoon_pay::ClientAccount) -> bool) -> bool {
            for _ in 0..200 {
                if cond(&self.client()) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    }

    impl Drop for Books {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn tokens(prompt: u64, completion: u64) -> Usage {
        Usage {
            prompt,
            completion,
            ..Usage::default()
        }
    }

    #[tokio::test]
    async fn a_settled_reservation_charges_at_most_what_it_holds() {
        let books = Books::open("settle").await;
        let r = books.hold("r1").await;
        assert_eq!(books.client().reserved, Nanoton::new(600));
        // A worker claiming far more than was held costs the reservation.
        let s = r.settle(&tokens(10, 10_000)).await.unwrap();
        assert_eq!(s.charged.client, Nanoton::new(600));
        let c = books.client();
        assert_eq!((c.reserved, c.charged), (Nanoton::ZERO, Nanoton::new(600)));
        let refused = Reservation::hold(
            &books.payments,
            "r2",
            &addr(1),
            &addr(2),
            Coefficient::ONE,
            (10, 0),
        )
        .await;
        assert!(matches!(
            refused,
            Err(ReserveError::Refused(SettleError::InsufficientFunds(_)))
        ));
    }

    #[tokio::test]
    async fn checkpoints_only_ever_raise_the_durable_cost() {
        let books = Books::open("checkpoint").await;
        let mut r = books.hold("r1").await;
        r.checkpoint(&tokens(10, 5)).await.unwrap();
        let ops = books.payments.ledger.commit_stats().1;
        // Less than what is durable already: nothing to write.
        r.checkpoint(&tokens(10, 2)).await.unwrap();
        r.checkpoint(&tokens(10, 5)).await.unwrap();
        assert_eq!(books.payments.ledger.commit_stats().1, ops);
        r.checkpoint(&tokens(10, 6)).await.unwrap();
        assert_eq!(books.payments.ledger.commit_stats().1, ops + 1);
        r.release().await;
        assert_eq!(books.client().reserved, Nanoton::ZERO);
    }

    #[tokio::test]
    async fn a_dropped_reservation_is_settled_at_its_durable_progress() {
        let books = Books::open("drop").await;
        let mut r = books.hold("r1").await;
        r.checkpoint(&tokens(10, 5)).await.unwrap();
        drop(r);
        assert!(
            books
                .until(|c| c.reserved == Nanoton::ZERO && c.charged == Nanoton::new(150))
                .await,
            "charged the durable 150 and held nothing: {:?}",
            books.client()
        );
        // Nothing durable: dropping gives everything back.
        drop(books.hold("r2").await);
        assert!(
            books
                .until(|c| c.reserved == Nanoton::ZERO && c.charged == Nanoton::new(150))
                .await,
            "{:?}",
            books.client()
        );
    }

    #[test]
    fn costs_are_capped_at_the_reservation() {
        let c = |client, worker| Charge {
            client: Nanoton::new(client),
            worker: Nanoton::new(worker),
        };
        let reserved = Nanoton::new(1000);
        assert_eq!(capped(Ok(c(500, 400)), reserved), c(500, 400));
        // A worker reporting more than the client agreed to hold.
        assert_eq!(capped(Ok(c(5000, 4000)), reserved), c(1000, 1000));
        assert_eq!(capped(Ok(c(1200, 900)), reserved), c(1000, 900));
        let overflow = cocoon_core::PriceList::new(
            Nanoton::new(u64::MAX),
            Nanoton::new(1),
            [cocoon_core::BasisPoints::ONE; 4],
        )
        .and_then(|p| {
            p.cost(
                &Usage {
                    prompt: u64::MAX,
                    ..Usage::default()
                },
                Coefficient::ONE,
            )
        });
        assert!(overflow.is_err());
        assert_eq!(capped(overflow, reserved), c(1000, 1000));
    }
}
