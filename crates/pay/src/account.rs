//! Accounts as explicit state machines. Every transition either applies in
//! full or returns an error and changes nothing.
//!
//! A client's **available** balance is
//! `deposited − charged − reserved − stake`, floored at zero: the stake is
//! a floor the proxy keeps untouched (it backs the client's obligations when
//! the channel closes on chain), reservations are the maximum cost of
//! requests in flight, and charges are final.

use cocoon_core::Nanoton;

/// Where a client account is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// Takes deposits and requests.
    Active,
    /// Finishing requests in flight; takes no new ones.
    Closing,
    /// Settled; nothing moves.
    Closed,
}

impl AccountStatus {
    fn tag(self) -> u8 {
        match self {
            AccountStatus::Active => 0,
            AccountStatus::Closing => 1,
            AccountStatus::Closed => 2,
        }
    }

    fn from_tag(t: u8) -> Option<Self> {
        match t {
            0 => Some(AccountStatus::Active),
            1 => Some(AccountStatus::Closing),
            2 => Some(AccountStatus::Closed),
            _ => None,
        }
    }

    /// `active`, `closing` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Closing => "closing",
            AccountStatus::Closed => "closed",
        }
    }
}

/// Why an account transition was refused. Nothing moved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The available balance does not cover the request's maximum cost.
    #[error("insufficient balance: the request may cost up to {needed}, available is {available} (deposited {deposited}, charged {charged}, reserved {reserved}, stake {stake})")]
    InsufficientFunds {
        /// Maximum cost of the request.
        needed: Nanoton,
        /// Available balance.
        available: Nanoton,
        /// Deposited in total.
        deposited: Nanoton,
        /// Charged in total.
        charged: Nanoton,
        /// Reserved by requests in flight.
        reserved: Nanoton,
        /// The stake floor.
        stake: Nanoton,
    },
    /// The account is not active.
    #[error("account is {0}, not active")]
    NotActive(&'static str),
    /// Releasing or settling more than is reserved: a ledger bug.
    #[error("cannot release {release} from {reserved} reserved")]
    OverRelease {
        /// Asked.
        release: Nanoton,
        /// Held.
        reserved: Nanoton,
    },
    /// An amount overflowed.
    #[error(transparent)]
    Money(#[from] cocoon_core::MoneyError),
}

/// A client's account with one proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAccount {
    /// Deposited in total.
    pub deposited: Nanoton,
    /// Kept back from spending.
    pub stake: Nanoton,
    /// Held for requests in flight.
    pub reserved: Nanoton,
    /// Charged in total: the client voucher's total.
    pub charged: Nanoton,
    /// Life stage.
    pub status: AccountStatus,
    /// Seqno of the latest client voucher.
    pub seqno: u64,
}

impl Default for ClientAccount {
    fn default() -> Self {
        ClientAccount {
            deposited: Nanoton::ZERO,
            stake: Nanoton::ZERO,
            reserved: Nanoton::ZERO,
            charged: Nanoton::ZERO,
            status: AccountStatus::Active,
            seqno: 0,
        }
    }
}

impl ClientAccount {
    /// What can be reserved now.
    pub fn available(&self) -> Nanoton {
        self.deposited
            .saturating_sub(self.charged)
            .saturating_sub(self.reserved)
            .saturating_sub(self.stake)
    }

    /// Takes what the chain reports for the client's contract: `deposited`
    /// (its booked balance plus what vouchers already committed: all the
    /// client ever put in, less withdrawals) and the stake it must keep.
    /// Absolute, so a withdrawal lowers it; in any life stage.
    pub fn sync_from_chain(&mut self, deposited: Nanoton, stake: Nanoton) {
        self.deposited = deposited;
        self.stake = stake;
    }

    /// Adds a deposit.
    pub fn deposit(&mut self, amount: Nanoton) -> Result<(), AccountError> {
        if self.status != AccountStatus::Active {
            return Err(AccountError::NotActive(self.status.as_str()));
        }
        self.deposited = self.deposited.checked_add(amount)?;
        Ok(())
    }

    /// Holds `amount` for a request, if available.
    pub fn reserve(&mut self, amount: Nanoton) -> Result<(), AccountError> {
        if self.status != AccountStatus::Active {
            return Err(AccountError::NotActive(self.status.as_str()));
        }
        let available = self.available();
        if amount > available {
            return Err(AccountError::InsufficientFunds {
                needed: amount,
                available,
                deposited: self.deposited,
                charged: self.charged,
                reserved: self.reserved,
                stake: self.stake,
            });
        }
        self.reserved = self.reserved.checked_add(amount)?;
        Ok(())
    }

    /// Gives back a reservation without charging (failure before the first byte).
    pub fn release(&mut self, reserved: Nanoton) -> Result<(), AccountError> {
        self.reserved =
            self.reserved
                .checked_sub(reserved)
                .map_err(|_| AccountError::OverRelease {
                    release: reserved,
                    reserved: self.reserved,
                })?;
        Ok(())
    }

    /// Turns a reservation into a charge of at most the reservation; the
    /// rest is released. Returns the amount charged and bumps the seqno.
    pub fn settle(&mut self, reserved: Nanoton, cost: Nanoton) -> Result<Nanoton, AccountError> {
        let charge = cost.min(reserved);
        let mut next = *self;
        next.release(reserved)?;
        next.charged = next.charged.checked_add(charge)?;
        next.seqno += 1;
        *self = next;
        Ok(charge)
    }

    /// Fixed-width encoding for the ledger store.
    pub(crate) fn encode(&self) -> [u8; 41] {
        let mut b = [0u8; 41];
        b[0..8].copy_from_slice(&self.deposited.get().to_le_bytes());
        b[8..16].copy_from_slice(&self.stake.get().to_le_bytes());
        b[16..24].copy_from_slice(&self.reserved.get().to_le_bytes());
        b[24..32].copy_from_slice(&self.charged.get().to_le_bytes());
        b[32] = self.status.tag();
        b[33..41].copy_from_slice(&self.seqno.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != 41 {
            return None;
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        Some(ClientAccount {
            deposited: Nanoton::new(u(0)),
            stake: Nanoton::new(u(8)),
            reserved: Nanoton::new(u(16)),
            charged: Nanoton::new(u(24)),
            status: AccountStatus::from_tag(b[32])?,
            seqno: u(33),
        })
    }
}

/// A worker's account with one proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerAccount {
    /// Earned in total: the worker voucher's total.
    pub earned: Nanoton,
    /// Paid out on chain so far.
    pub paid_out: Nanoton,
    /// Seqno of the latest worker voucher.
    pub seqno: u64,
    /// Fees for checks it ran on other workers' answers that the proxy's
    /// commission could not cover yet: paid from the commission as it
    /// grows, whenever this worker settles a request or another check.
    pub checks_due: Nanoton,
}

impl WorkerAccount {
    /// Adds earnings and bumps the seqno.
    pub fn earn(&mut self, fee: Nanoton) -> Result<(), AccountError> {
        self.earned = self.earned.checked_add(fee)?;
        self.seqno += 1;
        Ok(())
    }

    /// Earned but not yet paid out.
    pub fn owed(&self) -> Nanoton {
        self.earned.saturating_sub(self.paid_out)
    }

    /// Pays as much of the checks due as `commission` holds, from it;
    /// returns the amount paid.
    pub fn pay_checks(&mut self, commission: &mut Nanoton) -> Result<Nanoton, AccountError> {
        let pay = self.checks_due.min(*commission);
        if pay > Nanoton::ZERO {
            self.earn(pay)?;
            self.checks_due = self.checks_due.checked_sub(pay)?;
            *commission = commission.checked_sub(pay)?;
        }
        Ok(pay)
    }

    pub(crate) fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&self.earned.get().to_le_bytes());
        b[8..16].copy_from_slice(&self.paid_out.get().to_le_bytes());
        b[16..24].copy_from_slice(&self.seqno.to_le_bytes());
        b[24..32].copy_from_slice(&self.checks_due.get().to_le_bytes());
        b
    }

    /// Reads a record; one written before checks were paid (24 bytes) has
    /// none due.
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != 24 && b.len() != 32 {
            return None;
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        Some(WorkerAccount {
            earned: Nanoton::new(u(0)),
            paid_out: Nanoton::new(u(8)),
            seqno: u(16),
            checks_due: Nanoton::new(if b.len() == 32 { u(24) } else { 0 }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u64) -> Nanoton {
        Nanoton::new(v)
    }

    #[test]
    fn a_client_account_moves_only_when_it_can() {
        let mut a = ClientAccount {
            stake: n(10),
            ..Default::default()
        };
        a.deposit(n(100)).unwrap();
        assert_eq!(a.available(), n(90));
        a.reserve(n(60)).unwrap();
        let before = a;
        let err = a.reserve(n(31)).unwrap_err();
        assert!(err.to_string().contains("available is 30 nanoton"), "{err}");
        assert_eq!(a, before, "a refused reservation moved nothing");
        // Charged less than reserved: the rest comes back.
        assert_eq!(a.settle(n(60), n(25)).unwrap(), n(25));
        assert_eq!(
            (a.reserved, a.charged, a.seqno, a.available()),
            (n(0), n(25), 1, n(65))
        );
        // Never more than the reservation.
        a.reserve(n(5)).unwrap();
        assert_eq!(a.settle(n(5), n(9)).unwrap(), n(5));
        a.reserve(n(7)).unwrap();
        a.release(n(7)).unwrap();
        assert_eq!(a.available(), n(60));
        assert!(a.release(n(1)).is_err());
        a.status = AccountStatus::Closing;
        assert!(matches!(
            a.reserve(n(1)),
            Err(AccountError::NotActive("closing"))
        ));
        assert_eq!(ClientAccount::decode(&a.encode()), Some(a));
        let w = WorkerAccount {
            earned: n(5),
            paid_out: n(2),
            seqno: 3,
            checks_due: n(4),
        };
        assert_eq!(WorkerAccount::decode(&w.encode()), Some(w));
        assert_eq!(w.owed(), n(3));
        // A record written before checks were paid reads with none due.
        let old = WorkerAccount::decode(&w.encode()[..24]).unwrap();
        assert_eq!((old.earned, old.seqno, old.checks_due), (n(5), 3, n(0)));
    }
}
