//! Accounts as explicit state machines. Every transition either applies in
//! full or returns an error and changes nothing.
//!
//! A client's **available** balance depends on what backs it:
//!
//! - development deposits: `deposited − charged − reserved − stake`,
//!   floored at zero (reservations are the maximum cost of requests in
//!   flight; charges are final);
//! - a client contract on chain: what the contract *guarantees* the proxy,
//!   less what is owed and not yet committed there, less reservations. Its
//!   owner may withdraw everything above the stake at any moment while it
//!   is open, so only `min(balance, stake)` is certain to be there when the
//!   proxy's next commit lands: charges not yet committed never pass it.

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
    /// The charges not yet committed on chain, with this request, would pass
    /// what the client's contract guarantees the proxy.
    #[error("charges not yet committed on chain ({uncommitted}) and requests in flight ({reserved}) leave {available} of the {guaranteed} the client contract guarantees this proxy (its stake, or its balance when lower); the request may cost up to {needed}. The proxy commits the client's voucher on chain; requests are served again once the chain confirms it")]
    BeyondGuarantee {
        /// Maximum cost of the request.
        needed: Nanoton,
        /// What is left of the guarantee.
        available: Nanoton,
        /// Charged and not yet committed on chain.
        uncommitted: Nanoton,
        /// Reserved by requests in flight.
        reserved: Nanoton,
        /// `min(balance, stake)` of the contract as last read.
        guaranteed: Nanoton,
    },
    /// The account is not active (its contract is closing or closed).
    #[error("the client's account is {0}: it takes no new requests (a closing contract is settled, not spent from)")]
    NotActive(&'static str),
    /// The request may cost more than the contract could ever guarantee:
    /// no commit helps.
    #[error("the request may cost up to {needed}, more than the {guaranteed} the client's contract guarantees this proxy (its stake, or its balance when lower); lower max_tokens, or send a smaller request")]
    AboveGuarantee {
        /// Maximum cost of the request.
        needed: Nanoton,
        /// `min(balance, stake)` of the contract as last read.
        guaranteed: Nanoton,
    },
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

/// What a client's balance stands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Development deposits: no contract, the ledger is the whole truth.
    Deposits,
    /// A client contract on chain.
    Contract {
        /// What vouchers committed on chain, as last read.
        committed: Nanoton,
    },
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
    /// What the balance stands on.
    pub backing: Backing,
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
            backing: Backing::Deposits,
        }
    }
}

impl ClientAccount {
    /// What can be reserved now.
    pub fn available(&self) -> Nanoton {
        match self.backing {
            Backing::Deposits => self
                .deposited
                .saturating_sub(self.charged)
                .saturating_sub(self.reserved)
                .saturating_sub(self.stake),
            Backing::Contract { .. } => self
                .guaranteed()
                .saturating_sub(self.uncommitted())
                .saturating_sub(self.reserved),
        }
    }

    /// What the client's contract is certain to hold for the proxy's next
    /// commit: `min(balance, stake)` (everything for development deposits).
    pub fn guaranteed(&self) -> Nanoton {
        match self.backing {
            Backing::Deposits => self.deposited.saturating_sub(self.stake),
            Backing::Contract { committed } => {
                self.deposited.saturating_sub(committed).min(self.stake)
            }
        }
    }

    /// Charged and not yet committed on chain (zero for development
    /// deposits, which have no chain).
    pub fn uncommitted(&self) -> Nanoton {
        match self.backing {
            Backing::Deposits => Nanoton::ZERO,
            Backing::Contract { committed } => self.charged.saturating_sub(committed),
        }
    }

    /// Takes what the chain reports for the client's contract: `deposited`
    /// (its booked balance plus what vouchers already committed: all the
    /// client ever put in, less withdrawals), the stake it must keep, and
    /// the committed total, and its state: a closing contract takes no new
    /// requests (its owner takes the balance once the close delay ends).
    /// Absolute, so a withdrawal lowers it; in any life stage.
    pub fn sync_from_chain(
        &mut self,
        deposited: Nanoton,
        stake: Nanoton,
        committed: Nanoton,
        status: AccountStatus,
    ) {
        self.deposited = deposited;
        self.stake = stake;
        self.backing = Backing::Contract { committed };
        self.status = status;
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
            let spendable = self
                .deposited
                .saturating_sub(self.charged)
                .saturating_sub(self.reserved);
            // The balance covers it, the stake never will: no commit helps.
            if matches!(self.backing, Backing::Contract { .. })
                && amount <= spendable
                && amount > self.guaranteed()
            {
                return Err(AccountError::AboveGuarantee {
                    needed: amount,
                    guaranteed: self.guaranteed(),
                });
            }
            if matches!(self.backing, Backing::Contract { .. }) && amount <= spendable {
                return Err(AccountError::BeyondGuarantee {
                    needed: amount,
                    available,
                    uncommitted: self.uncommitted(),
                    reserved: self.reserved,
                    guaranteed: self.guaranteed(),
                });
            }
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
    pub(crate) fn encode(&self) -> [u8; 50] {
        let mut b = [0u8; 50];
        b[0..8].copy_from_slice(&self.deposited.get().to_le_bytes());
        b[8..16].copy_from_slice(&self.stake.get().to_le_bytes());
        b[16..24].copy_from_slice(&self.reserved.get().to_le_bytes());
        b[24..32].copy_from_slice(&self.charged.get().to_le_bytes());
        b[32] = self.status.tag();
        b[33..41].copy_from_slice(&self.seqno.to_le_bytes());
        if let Backing::Contract { committed } = self.backing {
            b[41] = 1;
            b[42..50].copy_from_slice(&committed.get().to_le_bytes());
        }
        b
    }

    /// Reads a record. One written before the backing was kept (41 bytes)
    /// and holding a stake came from a contract whose committed total is
    /// not known: it reads as nothing committed, so it serves nothing until
    /// the chain is read again.
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != 41 && b.len() != 50 {
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
            backing: match b.get(41) {
                Some(1) => Backing::Contract {
                    committed: Nanoton::new(u(42)),
                },
                Some(0) => Backing::Deposits,
                Some(_) => return None,
                None if u(8) > 0 => Backing::Contract {
                    committed: Nanoton::ZERO,
                },
                None => Backing::Deposits,
            },
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

    /// The attack a contract's owner could run before: deposit 100 with a
    /// stake of 10, spend 90 in the proxy's books, withdraw the 90 above the
    /// stake on chain before the proxy commits. Now the books never run
    /// ahead of the chain by more than the stake.
    #[test]
    fn a_contract_backed_client_never_owes_more_than_its_stake_uncommitted() {
        let mut a = ClientAccount::default();
        a.sync_from_chain(n(100), n(10), n(0), AccountStatus::Active);
        assert_eq!((a.guaranteed(), a.available()), (n(10), n(10)));
        a.reserve(n(6)).unwrap();
        a.settle(n(6), n(6)).unwrap();
        assert_eq!((a.uncommitted(), a.available()), (n(6), n(4)));
        let before = a;
        let err = a.reserve(n(5)).unwrap_err();
        assert!(
            matches!(err, AccountError::BeyondGuarantee { available, uncommitted, guaranteed, .. }
                if available == n(4) && uncommitted == n(6) && guaranteed == n(10)),
            "{err}"
        );
        assert!(
            err.to_string().contains("not yet committed on chain"),
            "{err}"
        );
        assert_eq!(a, before, "a refused reservation moved nothing");
        // The commit lands: the chain shows 6 committed out of the balance.
        a.sync_from_chain(n(100), n(10), n(6), AccountStatus::Active);
        assert_eq!((a.uncommitted(), a.available()), (n(0), n(10)));
        // The owner withdrew down to the stake: 16 on chain, 6 of it
        // committed, so 10 left; still all of it guaranteed.
        a.sync_from_chain(n(16), n(10), n(6), AccountStatus::Active);
        assert_eq!(a.available(), n(10));
        // Below the stake, the balance itself is the limit; past the
        // deposit it is plain insufficient funds.
        a.sync_from_chain(n(10), n(10), n(6), AccountStatus::Active);
        assert_eq!(a.available(), n(4));
        assert!(matches!(
            a.reserve(n(5)),
            Err(AccountError::InsufficientFunds { .. })
        ));
        // More than the contract could ever guarantee: no commit helps,
        // and the error says so rather than "wait".
        a.sync_from_chain(n(100), n(10), n(6), AccountStatus::Active);
        assert!(matches!(
            a.reserve(n(11)),
            Err(AccountError::AboveGuarantee { .. })
        ));
        // A closing contract is settled, not spent from.
        a.sync_from_chain(n(100), n(10), n(6), AccountStatus::Closing);
        assert!(matches!(
            a.reserve(n(1)),
            Err(AccountError::NotActive("closing"))
        ));
        a.sync_from_chain(n(10), n(10), n(6), AccountStatus::Active);
        assert_eq!(ClientAccount::decode(&a.encode()), Some(a));
        // A record written before the backing was kept, holding a stake,
        // reads as nothing committed: it serves nothing until read again.
        let old = ClientAccount::decode(&a.encode()[..41]).unwrap();
        assert_eq!(old.backing, Backing::Contract { committed: n(0) });
        let dev = ClientAccount {
            deposited: n(5),
            ..Default::default()
        };
        let old_dev = ClientAccount::decode(&dev.encode()[..41]).unwrap();
        assert_eq!(
            (old_dev.backing, old_dev.available()),
            (Backing::Deposits, n(5))
        );
    }
}
