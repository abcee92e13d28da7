//! Slash evidence. When a worker's answer to a deterministic request
//! differs from what two other workers answered (a replicated request or a
//! spot-check), the proxy signs evidence its worker contract accepts
//! (crates/receipt/src/evidence.rs, contracts/README.md): the three
//! workers' own signed receipt facts, each signed with the receipt key its
//! attested certificate names (the contract checks the accused's is one
//! its owner registered), and the proxy's word that the witnesses are
//! other attested workers. The evidence pays the root's share of the
//! worker's stake into the affected client's contract. The proxy sends it
//! on chain itself when it has an operator wallet; anyone holding it may
//! (the replicated answer carries it, and the proxy's `/evidence` lists it).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use cocoon_core::Nanoton;
use cocoon_receipt::evidence::{SignedEvidence, SlashEvidence};
use cocoon_receipt::{SignedReceipt, SignedReceiptFacts};
use serde::Serialize;
use tycho_types::models::StdAddr;

use crate::registry::WorkerHandle;
use crate::Shared;

/// Evidence records kept for `/evidence` and `/stats`.
const KEPT: usize = 100;
/// How long signed evidence stays valid on chain.
const VALID_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
/// Gas carried with a slash; what is left comes back to the wallet.
const SLASH_GAS: Nanoton = Nanoton::new(100_000_000);
/// How long sending a slash may take to be applied.
const SLASH_TIMEOUT: Duration = Duration::from_secs(60);

/// One piece of evidence the proxy signed.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SlashRecord {
    /// The accused worker's name.
    pub worker: String,
    /// Its worker contract.
    pub worker_contract: String,
    /// The owner of the client contract the slashed amount goes to.
    pub client_owner: String,
    /// SHA-256 of the request, hex.
    pub request_sha256: String,
    /// The `signed_evidence` bag of cells, base64: the body of a `slash`.
    pub evidence: String,
    /// Whether the proxy sent it on chain: "sent", "not sent: why", or
    /// "failed: why".
    pub submitted: String,
}

/// Evidence signed so far, newest last.
#[derive(Debug, Default)]
pub(crate) struct SlashEvidenceLog {
    kept: Mutex<VecDeque<SlashRecord>>,
}

impl SlashEvidenceLog {
    fn push(&self, r: SlashRecord) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(r);
    }

    fn set_submitted(&self, evidence: &str, submitted: String) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = kept.iter_mut().find(|r| r.evidence == evidence) {
            r.submitted = submitted;
        }
    }

    /// The records kept, oldest first.
    pub(crate) fn all(&self) -> Vec<SlashRecord> {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// A worker's run of a request, as the proxy saw it.
pub(crate) struct Run<'a> {
    pub worker: &'a WorkerHandle,
    /// Its signed receipt (JSON), as the worker sent it.
    pub receipt: &'a [u8],
    /// The content digest the proxy computed from what it relayed.
    pub content: &'a str,
}

/// Signs evidence that `accused` dissented from `witnesses`, who agree,
/// for a request paid by `payer`; records it and sends it on chain in the
/// background when the proxy can. Returns the evidence (a bag of cells),
/// or `None` with the reason logged when there is no evidence to give:
/// no payments, no worker contract, a receipt without a content digest
/// or whose certificate is unknown.
pub(crate) fn on_dissent(
    shared: &std::sync::Arc<Shared>,
    accused: &Run<'_>,
    witnesses: [&Run<'_>; 2],
    payer: &StdAddr,
) -> Option<Vec<u8>> {
    match sign(shared, accused, witnesses, payer) {
        Ok((record, boc)) => {
            tracing::warn!(worker = %record.worker, contract = %record.worker_contract, "signed slash evidence against a dissenting worker");
            shared.slashing.push(record.clone());
            let shared = shared.clone();
            let sent = boc.clone();
            tokio::spawn(async move {
                let submitted = submit(&shared, &record, &sent).await;
                shared.slashing.set_submitted(&record.evidence, submitted);
            });
            Some(boc)
        }
        Err(why) => {
            tracing::info!(worker = %accused.worker.id, reason = %why, "no slash evidence for this dissent");
            None
        }
    }
}

fn facts(shared: &Shared, run: &Run<'_>) -> Result<SignedReceiptFacts, String> {
    let id = &run.worker.id;
    let receipt =
        SignedReceipt::from_json(run.receipt).map_err(|e| format!("worker {id}'s receipt: {e}"))?;
    let r = &receipt.receipt;
    if r.content_sha256.as_deref() != Some(run.content) {
        return Err(format!(
            "worker {id}'s receipt states content {:?}, but what it sent hashes to {}",
            r.content_sha256, run.content
        ));
    }
    let der = shared
        .certificates
        .get(&r.worker_certificate_sha256)
        .ok_or_else(|| format!("worker {id}'s receipt certificate is not known here"))?;
    let cert = cocoon_tee::cert::parse(&der)
        .map_err(|e| format!("worker {id}'s receipt certificate: {e}"))?;
    let key = if r.version >= 4 {
        cert.claims
            .receipt_key
            .ok_or_else(|| format!("worker {id}'s certificate names no receipt key"))?
    } else {
        cert.claims.public_key
    };
    SignedReceiptFacts::of(&receipt, key).map_err(|e| format!("worker {id}'s receipt: {e}"))
}

fn sign(
    shared: &Shared,
    accused: &Run<'_>,
    witnesses: [&Run<'_>; 2],
    payer: &StdAddr,
) -> Result<(SlashRecord, Vec<u8>), String> {
    let payments = shared
        .config
        .payments
        .as_ref()
        .ok_or("this proxy charges nothing, so it signs no evidence")?;
    let contract = accused
        .worker
        .payee
        .clone()
        .ok_or("the accused worker named no worker contract")?;
    if !shared.config.slashing {
        return Err("slashing is off (--slashing off)".into());
    }
    // The slashed amount goes into the contract of the client's owner,
    // which the proxy contract derives: on a chain the owner must be
    // known, or the amount would land in a contract no one can open. Off
    // a chain the payer names the client, and the evidence only shows.
    let client_owner = match &payments.client_contracts {
        Some(contracts) => contracts
            .owner_of(payer)
            .ok_or_else(|| format!("the owner of client contract {payer} is not known here yet"))?,
        None => payer.clone(),
    };
    let evidence = SlashEvidence {
        worker: contract.clone(),
        client_owner: client_owner.clone(),
        expires_at: (cocoon_core::unix_now() + VALID_FOR.as_secs()) as u32,
        accused: facts(shared, accused)?,
        first: facts(shared, witnesses[0])?,
        second: facts(shared, witnesses[1])?,
    };
    let request_sha256 = hex::encode(evidence.accused.facts.request);
    let signed = SignedEvidence::sign(evidence, |h| payments.ledger.sign_cell_hash(h))
        .map_err(|e| e.to_string())?;
    let boc = signed.to_boc().map_err(|e| e.to_string())?;
    let record = SlashRecord {
        worker: accused.worker.id.clone(),
        worker_contract: contract.to_string(),
        client_owner: client_owner.to_string(),
        request_sha256,
        evidence: base64::engine::general_purpose::STANDARD.encode(&boc),
        submitted: "not yet".into(),
    };
    Ok((record, boc))
}

async fn submit(shared: &Shared, record: &SlashRecord, boc: &[u8]) -> String {
    let Some(contracts) = shared
        .config
        .payments
        .as_ref()
        .and_then(|p| p.client_contracts.clone())
    else {
        return "not sent: this proxy is not on a chain; anyone holding the evidence may send it"
            .into();
    };
    let result = async {
        let to: StdAddr = record.worker_contract.parse().map_err(|e| format!("{e}"))?;
        let cell = tycho_types::boc::Boc::decode(boc).map_err(|e| e.to_string())?;
        let body = cocoon_chain::contracts::slash(cocoon_core::unix_now(), cell)
            .map_err(|e| e.to_string())?;
        contracts
            .operator_send(to, body, SLASH_GAS, SLASH_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(()) => {
            tracing::warn!(worker = %record.worker, contract = %record.worker_contract, "slash evidence sent on chain");
            "sent".into()
        }
        Err(e) => {
            tracing::warn!(worker = %record.worker, error = %e, "sending slash evidence failed");
            format!("failed: {e}")
        }
    }
}
