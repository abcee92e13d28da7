//! A worker's contract, checked before the worker is admitted on a chain:
//! our code, this proxy's, owned by the wallet that signed the worker's
//! hello, staked at least the root's minimum, not on its way out, and with
//! the worker's receipt key registered, so that its answers can be held
//! against its stake.

use cocoon_chain::registry::ReadError;
use cocoon_chain::views::{self, ReceiptKeyStatus};
use cocoon_chain::{AccountStatus, Chain};
use cocoon_core::Nanoton;
use tycho_types::cell::HashBytes;
use tycho_types::models::StdAddr;

use crate::client_contracts::ClientContracts;

/// A worker's proof that the wallet owning its worker contract lets its
/// certificate earn and answer through it (the hello's `owner_key` and
/// `owner_signature`).
#[derive(Debug, Clone)]
pub struct OwnerProof {
    /// The owner wallet's Ed25519 key.
    pub key: Vec<u8>,
    /// Its signature ([`cocoon_chain::wallet::worker_owner_message`]).
    pub signature: Vec<u8>,
    /// SHA-256 of the worker's certificate, as the hello carried it.
    pub certificate_sha256: [u8; 32],
}

/// A worker contract that may serve: staked, and owned by the wallet that
/// signed for the worker.
#[derive(Debug, Clone)]
pub struct StakedWorker {
    /// Its stake.
    pub stake: Nanoton,
    /// The wallet that owns it.
    pub owner: StdAddr,
}

/// Why a worker contract may not serve through this proxy.
#[derive(Debug, thiserror::Error)]
pub enum WorkerContractError {
    /// The chain could not be read.
    #[error("reading worker contract {contract}: {source}")]
    Read {
        /// The contract.
        contract: String,
        /// What failed.
        source: Box<ReadError>,
    },
    /// Nothing is deployed there.
    #[error("worker contract {0} is not deployed, so it holds no stake: a worker on a chain stakes the root's minimum from its wallet when it starts")]
    NotDeployed(String),
    /// It runs other code, whose getters prove nothing.
    #[error("{contract} runs code {found}, not the worker contract (code {ours}): its stake cannot be slashed")]
    NotOurCode {
        /// The contract.
        contract: String,
        /// Its code's hash.
        found: HashBytes,
        /// The worker contract code's hash.
        ours: HashBytes,
    },
    /// The worker contract code this proxy knows could not be loaded.
    #[error("the worker contract code this proxy knows: {0}")]
    OurCode(#[from] cocoon_chain::ArtifactError),
    /// It belongs to another proxy.
    #[error("worker contract {contract} belongs to proxy contract {found}, this proxy is {ours}")]
    OtherProxy {
        /// The contract.
        contract: String,
        /// The proxy contract it names.
        found: String,
        /// This proxy's.
        ours: String,
    },
    /// The hello's owner signature is missing or does not hold.
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// Its stake is below the root's minimum.
    #[error("worker contract {contract} holds a stake of {stake}; this proxy's workers stake at least {min} (the root's min_worker_stake)")]
    Understaked {
        /// The contract.
        contract: String,
        /// Its stake.
        stake: Nanoton,
        /// The minimum.
        min: Nanoton,
    },
    /// Its owner asked for the stake back.
    #[error("worker contract {contract} asked for its stake back (it unlocks at {unlock_at}): a worker on its way out takes no new requests; its owner cancels with cancel_stake_withdrawal")]
    Leaving {
        /// The contract.
        contract: String,
        /// When the stake unlocks.
        unlock_at: u64,
    },
    /// The receipt key the worker's certificate names is not in force.
    #[error("worker contract {contract} has not registered the receipt key {key} its certificate names ({status:?}): its receipts could not be held against it (the worker registers it when it starts)")]
    ReceiptKey {
        /// The contract.
        contract: String,
        /// The key, hex.
        key: String,
        /// What the contract says of it.
        status: ReceiptKeyStatus,
    },
}

/// Why a hello's owner signature does not prove the contract's owner.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// No key, or not an Ed25519 key.
    #[error("the worker names worker contract {0} without its owner's signature: a worker on a chain signs its hello with the wallet that owns its contract")]
    Unsigned(String),
    /// The signature does not verify.
    #[error(
        "the owner signature for worker contract {0} does not verify for this worker's certificate"
    )]
    BadSignature(String),
    /// The key makes no wallet address.
    #[error("the owner key makes no wallet address: {0}")]
    Wallet(#[from] cocoon_chain::WalletError),
    /// Another wallet signed.
    #[error("the worker's hello is signed by wallet {signer}, but worker contract {contract} belongs to {owner}")]
    OtherWallet {
        /// The wallet of the key that signed.
        signer: String,
        /// The contract.
        contract: String,
        /// Its owner.
        owner: String,
    },
}

impl OwnerProof {
    /// Checks that `owner`, the wallet that owns `contract`, signed for
    /// this certificate.
    pub fn check(
        &self,
        contract: &StdAddr,
        owner: &StdAddr,
        global_id: i32,
    ) -> Result<(), OwnerError> {
        let key: [u8; 32] = (self.key.as_slice().try_into())
            .map_err(|_| OwnerError::Unsigned(contract.to_string()))?;
        if !cocoon_chain::wallet::verify_worker_owner(
            &key,
            &self.signature,
            &self.certificate_sha256,
            contract,
        ) {
            return Err(OwnerError::BadSignature(contract.to_string()));
        }
        let signer = cocoon_chain::WalletV5::address_of_key(&key, global_id)?;
        if &signer != owner {
            return Err(OwnerError::OtherWallet {
                signer: signer.to_string(),
                contract: contract.to_string(),
                owner: owner.to_string(),
            });
        }
        Ok(())
    }
}

impl ClientContracts {
    /// Checks that `worker` may serve through this proxy (the module's
    /// rules); for an attested worker, that `receipt_key` is registered and
    /// active. Returns its stake and owner.
    pub async fn check_worker_stake(
        &self,
        worker: &StdAddr,
        owner_proof: &OwnerProof,
        receipt_key: Option<&[u8; 32]>,
    ) -> Result<StakedWorker, WorkerContractError> {
        let read = |source: ReadError| WorkerContractError::Read {
            contract: worker.to_string(),
            source: Box::new(source),
        };
        let chain = self.chain.as_ref();
        let account = chain.account(worker).await.map_err(|e| read(e.into()))?;
        if account.status != AccountStatus::Active {
            return Err(WorkerContractError::NotDeployed(worker.to_string()));
        }
        // Its getters' answers mean something only if it runs our worker
        // contract: other code could claim any stake and never be slashed.
        worker_code_is_ours(worker, account.code.as_ref())?;
        let data = views::worker_data(chain, worker).await.map_err(read)?;
        if data.proxy != self.contract {
            return Err(WorkerContractError::OtherProxy {
                contract: worker.to_string(),
                found: data.proxy.to_string(),
                ours: self.contract.to_string(),
            });
        }
        owner_proof.check(worker, &data.owner, self.global_id)?;
        let stake = views::worker_stake(chain, worker).await.map_err(read)?;
        if stake.stake < stake.min_stake {
            return Err(WorkerContractError::Understaked {
                contract: worker.to_string(),
                stake: stake.stake,
                min: stake.min_stake,
            });
        }
        if stake.withdrawing_until(cocoon_core::unix_now()).is_some() {
            return Err(WorkerContractError::Leaving {
                contract: worker.to_string(),
                unlock_at: stake.unlock_at,
            });
        }
        if let Some(key) = receipt_key {
            let status = views::receipt_key(chain, worker, key).await.map_err(read)?;
            if status != ReceiptKeyStatus::Active {
                return Err(WorkerContractError::ReceiptKey {
                    contract: worker.to_string(),
                    key: hex::encode(key),
                    status,
                });
            }
        }
        Ok(StakedWorker {
            stake: stake.stake,
            owner: data.owner,
        })
    }
}

/// Whether `code` is the worker contract this software deploys (the
/// committed artifact).
fn worker_code_is_ours(
    worker: &StdAddr,
    code: Option<&tycho_types::cell::Cell>,
) -> Result<(), WorkerContractError> {
    let ours = cocoon_chain::contracts::Codes::committed()?.worker;
    match code {
        Some(c) if c.repr_hash() == ours.repr_hash() => Ok(()),
        found => Err(WorkerContractError::NotOurCode {
            contract: worker.to_string(),
            found: found.map_or(HashBytes::ZERO, |c| *c.repr_hash()),
            ours: *ours.repr_hash(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_chain::ContractKind;

    #[test]
    fn only_the_worker_contracts_code_is_taken_for_a_stake() {
        let worker: StdAddr = "0:1111111111111111111111111111111111111111111111111111111111111111"
            .parse()
            .unwrap();
        let ours = ContractKind::Worker.code().unwrap().code;
        worker_code_is_ours(&worker, Some(&ours)).unwrap();
        let wallet = ContractKind::WalletV5R1.code().unwrap().code;
        let err = worker_code_is_ours(&worker, Some(&wallet)).unwrap_err();
        assert!(
            err.to_string().contains(&wallet.repr_hash().to_string())
                && err.to_string().contains(&ours.repr_hash().to_string()),
            "{err}"
        );
        assert!(worker_code_is_ours(&worker, None).is_err());
    }

    #[test]
    fn a_worker_contract_backs_only_a_certificate_its_owner_signed_for() {
        use cocoon_chain::wallet::{network::MAINNET, WalletKey};
        let contract: StdAddr =
            "0:2222222222222222222222222222222222222222222222222222222222222222"
                .parse()
                .unwrap();
        let owner_key = WalletKey::from_seed(&[1; 32]).unwrap();
        let owner =
            cocoon_chain::WalletV5::address_of_key(&owner_key.public_key(), MAINNET).unwrap();
        let cert = [7u8; 32];
        let proof = |key: &WalletKey, cert: [u8; 32], contract: &StdAddr| OwnerProof {
            key: key.public_key().to_vec(),
            signature: key.sign_worker_owner(&cert, contract).to_vec(),
            certificate_sha256: cert,
        };
        proof(&owner_key, cert, &contract)
            .check(&contract, &owner, MAINNET)
            .unwrap();
        // Another wallet's word for someone else's contract.
        let thief = WalletKey::from_seed(&[2; 32]).unwrap();
        let err = proof(&thief, cert, &contract)
            .check(&contract, &owner, MAINNET)
            .unwrap_err();
        assert!(err.to_string().contains(&owner.to_string()), "{err}");
        // The owner's signature for another certificate, or another contract.
        let mut replayed = proof(&owner_key, [8; 32], &contract);
        replayed.certificate_sha256 = cert;
        assert!(replayed.check(&contract, &owner, MAINNET).is_err());
        let other: StdAddr = "0:3333333333333333333333333333333333333333333333333333333333333333"
            .parse()
            .unwrap();
        assert!(proof(&owner_key, cert, &other)
            .check(&contract, &owner, MAINNET)
            .is_err());
        // No proof at all.
        let none = OwnerProof {
            key: vec![],
            signature: vec![],
            certificate_sha256: cert,
        };
        let err = none.check(&contract, &owner, MAINNET).unwrap_err();
        assert!(
            err.to_string().contains("without its owner's signature"),
            "{err}"
        );
    }
}
