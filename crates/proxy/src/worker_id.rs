//! Who a worker is: whatever answers for its answers, proved when it
//! connects. Reputation, spot-check records, routing statistics and the
//! distinctness of a request's replicas are keyed by it; the name in the
//! worker's hello is a label for people and proves nothing.

use tycho_types::models::StdAddr;

/// A worker's identity, strongest first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkerId {
    /// On a chain: its worker contract, which holds its stake and is
    /// slashed for its answers, and the wallet that owns that contract
    /// (it signed the worker's certificate in the hello).
    Contract {
        /// The worker contract.
        contract: StdAddr,
        /// The contract's owner.
        owner: StdAddr,
    },
    /// Off chain, under attestation: the key its attested certificate
    /// names as the one its receipts are signed with.
    ReceiptKey([u8; 32]),
    /// Without attestation (development only): nothing proves who it is,
    /// so each session stands alone (by its serial): a name could be
    /// anyone's, and a record under it anyone's to take or spoil.
    Unproven(u64),
}

/// Who stands behind a worker: workers of one owner count as one when a
/// request asks for distinct workers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// A wallet owning worker contracts.
    Wallet(StdAddr),
    /// A receipt key (one per worker off chain).
    ReceiptKey([u8; 32]),
    /// An unproven session.
    Unproven(u64),
}

impl WorkerId {
    /// Who answers for the worker.
    pub fn owner(&self) -> Owner {
        match self {
            WorkerId::Contract { owner, .. } => Owner::Wallet(owner.clone()),
            WorkerId::ReceiptKey(k) => Owner::ReceiptKey(*k),
            WorkerId::Unproven(session) => Owner::Unproven(*session),
        }
    }

    /// Whether the identity was proved (a contract or an attested key).
    pub fn is_proven(&self) -> bool {
        !matches!(self, WorkerId::Unproven(_))
    }
}

impl std::fmt::Display for WorkerId {
    /// The worker contract's address, `key:` and the receipt key in hex,
    /// or `session:` and an unproven session's serial.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerId::Contract { contract, .. } => write!(f, "{contract}"),
            WorkerId::ReceiptKey(k) => write!(f, "key:{}", hex::encode(k)),
            WorkerId::Unproven(session) => write!(f, "session:{session}"),
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Wallet(a) => write!(f, "{a}"),
            Owner::ReceiptKey(k) => write!(f, "key:{}", hex::encode(k)),
            Owner::Unproven(session) => write!(f, "session:{session}"),
        }
    }
}

impl serde::Serialize for WorkerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contracts_of_one_owner_share_it_and_keys_stand_alone() {
        let owner = StdAddr::new(0, tycho_types::cell::HashBytes([7; 32]));
        let a = WorkerId::Contract {
            contract: StdAddr::new(0, tycho_types::cell::HashBytes([1; 32])),
            owner: owner.clone(),
        };
        let b = WorkerId::Contract {
            contract: StdAddr::new(0, tycho_types::cell::HashBytes([2; 32])),
            owner,
        };
        assert_ne!(a, b, "two contracts are two workers");
        assert_eq!(a.owner(), b.owner(), "of one owner");
        let k = WorkerId::ReceiptKey([3; 32]);
        assert_eq!(k.owner(), Owner::ReceiptKey([3; 32]));
        assert_eq!(k.to_string(), format!("key:{}", "03".repeat(32)));
        assert!(k.is_proven() && !WorkerId::Unproven(1).is_proven());
        assert_ne!(
            WorkerId::Unproven(1).owner(),
            WorkerId::Unproven(2).owner(),
            "unproven sessions are never one owner"
        );
    }
}
