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
//!
//! Evidence is kept on disk beside the ledger (`slash-evidence.json`) until
//! the chain has taken it: a send that did not complete (the chain down,
//! the message lost, the proxy restarted) is tried again every minute while
//! the evidence is valid; one the contract refused is not.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use cocoon_core::Nanoton;
use cocoon_receipt::evidence::{SignedEvidence, SlashEvidence};
use cocoon_receipt::{SignedReceipt, SignedReceiptFacts};
use serde::{Deserialize, Serialize};
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

/// How often evidence whose send did not complete is sent again.
const RETRY_EVERY: Duration = Duration::from_secs(60);

/// One piece of evidence the proxy signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Where it stands: "not yet", "sending", "sent" (the chain took it:
    /// the stake was slashed), "refused: why" (final), "failed: why" (sent
    /// again later), or "not sent: why".
    pub submitted: String,
    /// Until when the chain takes it (Unix time).
    #[serde(default)]
    pub expires_at: u64,
}

impl SlashRecord {
    /// Whether it should be sent (again) now: not taken, not refused, not
    /// on its way, still valid.
    fn due(&self, now: u64) -> bool {
        (self.submitted == "not yet" || self.submitted.starts_with("failed"))
            && now < self.expires_at
    }
}

/// Evidence signed so far, newest last, kept on disk when the log has a
/// file.
#[derive(Debug, Default)]
pub(crate) struct SlashEvidenceLog {
    kept: Mutex<VecDeque<SlashRecord>>,
    file: Option<PathBuf>,
}

impl SlashEvidenceLog {
    /// The log kept in `file`, with what an earlier run left there; a
    /// send an earlier run had on its way is due again (the contract takes
    /// a piece of evidence once).
    pub(crate) fn open(file: PathBuf) -> Self {
        let mut kept: VecDeque<SlashRecord> = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for r in kept.iter_mut().filter(|r| r.submitted == "sending") {
            r.submitted = "failed: the proxy stopped while sending it".into();
        }
        if !kept.is_empty() {
            tracing::info!(records = kept.len(), file = %file.display(), "slash evidence from an earlier run");
        }
        SlashEvidenceLog {
            kept: Mutex::new(kept),
            file: Some(file),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<SlashRecord>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the log (a new file renamed over the old one).
    fn save(&self, kept: &VecDeque<SlashRecord>) {
        let Some(file) = &self.file else { return };
        let tmp = file.with_extension("json.partial");
        let written = serde_json::to_vec(kept)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, file));
        if let Err(e) = written {
            tracing::error!(file = %file.display(), error = %e, "slash evidence could not be written to disk");
        }
    }

    fn push(&self, r: SlashRecord) {
        let mut kept = self.lock();
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(r);
        self.save(&kept);
    }

    fn set_submitted(&self, evidence: &str, submitted: String) {
        let mut kept = self.lock();
        if let Some(r) = kept.iter_mut().find(|r| r.evidence == evidence) {
            r.submitted = submitted;
        }
        self.save(&kept);
    }

    /// The records due to be sent now, marked as on their way.
    fn take_due(&self) -> Vec<SlashRecord> {
        let now = cocoon_core::unix_now();
        let mut kept = self.lock();
        let due: Vec<SlashRecord> = kept
            .iter_mut()
            .filter(|r| r.due(now))
            .map(|r| {
                r.submitted = "sending".into();
                r.clone()
            })
            .collect();
        if !due.is_empty() {
            self.save(&kept);
        }
        due
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
            let mut sending = record.clone();
            sending.submitted = "sending".into();
            shared.slashing.push(sending);
            let shared = shared.clone();
            let sent = boc.clone();
            tokio::spawn(async move {
                let submitted = submit(&shared, &record, &sent).await;
                shared.slashing.set_submitted(&record.evidence, submitted);
            });
            Some(boc)
        }
        Err(why) => {
            tracing::info!(worker = %accused.worker.name, reason = %why, "no slash evidence for this dissent");
            None
        }
    }
}

/// Why no slash evidence is signed for a dissent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoEvidence {
    /// The proxy does not charge: there is no voucher key to sign with.
    #[error("this proxy charges nothing, so it signs no evidence")]
    NoPayments,
    /// The accused names no worker contract to slash.
    #[error("the accused worker named no worker contract")]
    NoContract,
    /// The operator turned slashing off.
    #[error("slashing is off (--slashing off)")]
    Off,
    /// The slashed amount would go to a client contract whose owner is not
    /// known yet.
    #[error("the owner of client contract {0} is not known here yet")]
    OwnerUnknown(String),
    /// A run's receipt cannot be evidence.
    #[error("worker {worker}'s receipt: {why}")]
    Receipt {
        /// The worker's name.
        worker: String,
        /// What is wrong with it.
        why: ReceiptUnusable,
    },
    /// Signing or encoding the evidence failed.
    #[error(transparent)]
    Evidence(#[from] cocoon_receipt::evidence::EvidenceError),
    /// The runs are not exact replays of each other: honest hardware can
    /// disagree there, so the disagreement alone proves nothing.
    #[error("no exact replay: {0}")]
    NotExactReplay(String),
}

/// What an exact replay needs: the same attested code (image), the same
/// weights and the same attested hardware (every GPU, its driver and
/// VBIOS). Across these, temperature-0 output can differ on honest
/// hardware (kernels, batch sizes, GPU generations), and bytes are not
/// compared for money: a worker without GPU evidence runs on unknown
/// hardware and is never judged by bytes. Open-tier workers run unmeasured
/// code, so neither are they.
pub(crate) fn replay_class(w: &WorkerHandle) -> Option<String> {
    if w.offer.open {
        return None;
    }
    let image = w.image_hash?;
    let model = w.model_hash?;
    let hardware = w.hardware.as_deref()?;
    Some(format!("{image}/{}/{hardware}", model.to_hex()))
}

/// Refuses evidence whose runs are not all exact replays of one another.
fn exact_replays(accused: &Run<'_>, witnesses: [&Run<'_>; 2]) -> Result<(), NoEvidence> {
    let class = replay_class(accused.worker).ok_or_else(|| {
        NoEvidence::NotExactReplay(format!(
            "worker {} runs unattested code (open tier or no attestation)",
            accused.worker.name
        ))
    })?;
    for w in witnesses {
        if replay_class(w.worker).as_deref() != Some(class.as_str()) {
            return Err(NoEvidence::NotExactReplay(format!(
                "witness {} runs other code, weights or hardware than {} ({class})",
                w.worker.name, accused.worker.name
            )));
        }
    }
    Ok(())
}

/// Why a run's receipt cannot serve as evidence.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReceiptUnusable {
    /// It does not parse or check.
    #[error(transparent)]
    Malformed(#[from] cocoon_receipt::ReceiptError),
    /// It states other content than the worker sent.
    #[error("it states content {stated:?}, but what the worker sent hashes to {sent}")]
    OtherContent {
        /// The content digest it states.
        stated: Option<String>,
        /// The digest of what was sent.
        sent: String,
    },
    /// Its certificate is not kept here.
    #[error("its certificate {0} is not known here")]
    UnknownCertificate(String),
    /// Its certificate does not parse.
    #[error("its certificate: {0}")]
    Certificate(#[from] cocoon_tee::cert::CertError),
    /// Its certificate names no receipt key.
    #[error("its certificate names no receipt key")]
    NoReceiptKey,
}

fn facts(shared: &Shared, run: &Run<'_>) -> Result<SignedReceiptFacts, NoEvidence> {
    receipt_facts(shared, run).map_err(|why| NoEvidence::Receipt {
        worker: run.worker.name.clone(),
        why,
    })
}

fn receipt_facts(shared: &Shared, run: &Run<'_>) -> Result<SignedReceiptFacts, ReceiptUnusable> {
    let receipt = SignedReceipt::from_json(run.receipt)?;
    let r = &receipt.receipt;
    if r.content_sha256.as_deref() != Some(run.content) {
        return Err(ReceiptUnusable::OtherContent {
            stated: r.content_sha256.clone(),
            sent: run.content.to_string(),
        });
    }
    let der = (shared.certificates.get(&r.worker_certificate_sha256))
        .ok_or_else(|| ReceiptUnusable::UnknownCertificate(r.worker_certificate_sha256.clone()))?;
    let cert = cocoon_tee::cert::parse(&der)?;
    let key = if r.version >= 4 {
        (cert.claims.receipt_key).ok_or(ReceiptUnusable::NoReceiptKey)?
    } else {
        cert.claims.public_key
    };
    Ok(SignedReceiptFacts::of(&receipt, key)?)
}

fn sign(
    shared: &Shared,
    accused: &Run<'_>,
    witnesses: [&Run<'_>; 2],
    payer: &StdAddr,
) -> Result<(SlashRecord, Vec<u8>), NoEvidence> {
    let payments = (shared.config.charging.payments()).ok_or(NoEvidence::NoPayments)?;
    let contract = (accused.worker.payee.clone()).ok_or(NoEvidence::NoContract)?;
    if !shared.config.slashing {
        return Err(NoEvidence::Off);
    }
    exact_replays(accused, witnesses)?;
    // The slashed amount goes into the contract of the client's owner,
    // which the proxy contract derives: on a chain the owner must be
    // known, or the amount would land in a contract no one can open. Off
    // a chain the payer names the client, and the evidence only shows.
    let client_owner = match shared.config.charging.contracts() {
        Some(contracts) => contracts
            .owner_of(payer)
            .ok_or_else(|| NoEvidence::OwnerUnknown(payer.to_string()))?,
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
    let signed = SignedEvidence::sign(evidence, |h| payments.ledger.sign_cell_hash(h))?;
    let boc = signed.to_boc()?;
    let record = SlashRecord {
        worker: accused.worker.name.clone(),
        worker_contract: contract.to_string(),
        client_owner: client_owner.to_string(),
        request_sha256,
        evidence: base64::engine::general_purpose::STANDARD.encode(&boc),
        submitted: "not yet".into(),
        expires_at: cocoon_core::unix_now() + VALID_FOR.as_secs(),
    };
    Ok((record, boc))
}

async fn submit(shared: &Shared, record: &SlashRecord, boc: &[u8]) -> String {
    let Some(contracts) = shared.config.charging.contracts().cloned() else {
        return "not sent: this proxy is not on a chain; anyone holding the evidence may send it"
            .into();
    };
    let result = async {
        let to: StdAddr = record.worker_contract.parse().map_err(|e| format!("{e}"))?;
        let cell = tycho_types::boc::Boc::decode(boc).map_err(|e| e.to_string())?;
        let body = cocoon_chain::contracts::slash(cocoon_core::unix_now(), cell)
            .map_err(|e| e.to_string())?;
        match contracts
            .operator_send(to, body, SLASH_GAS, SLASH_TIMEOUT)
            .await
        {
            Ok(_) => Ok(()),
            Err(crate::client_contracts::OperatorSendError::Send(
                e @ cocoon_chain::SendError::Refused { .. },
            )) => Err(format!("refused: {e}")),
            Err(e) => Err(format!("failed: {e}")),
        }
    }
    .await;
    match result {
        Ok(()) => {
            tracing::warn!(worker = %record.worker, contract = %record.worker_contract, "slash evidence taken on chain");
            "sent".into()
        }
        Err(e) => {
            tracing::warn!(worker = %record.worker, error = %e, "slash evidence not taken on chain");
            e
        }
    }
}

/// Sends again, every [`RETRY_EVERY`], the evidence whose send did not
/// complete (this run's or an earlier one's), until `stop` turns true.
pub(crate) async fn retry(
    shared: std::sync::Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        for record in shared.slashing.take_due() {
            let boc = match base64::engine::general_purpose::STANDARD.decode(&record.evidence) {
                Ok(b) => b,
                Err(e) => {
                    shared
                        .slashing
                        .set_submitted(&record.evidence, format!("refused: unreadable: {e}"));
                    continue;
                }
            };
            let submitted = submit(&shared, &record, &boc).await;
            shared.slashing.set_submitted(&record.evidence, submitted);
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(evidence: &str, submitted: &str, expires_at: u64) -> SlashRecord {
        SlashRecord {
            worker: "w".into(),
            worker_contract: format!("0:{}", "11".repeat(32)),
            client_owner: format!("0:{}", "22".repeat(32)),
            request_sha256: "ab".repeat(32),
            evidence: evidence.into(),
            submitted: submitted.into(),
            expires_at,
        }
    }

    /// Evidence outlives the proxy: what was not taken on chain is sent
    /// again after a restart, what was refused or has expired is not.
    #[test]
    fn evidence_not_yet_taken_survives_a_restart_and_is_due_again() {
        let dir = std::env::temp_dir().join(format!("cocoon-slash-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("slash-evidence.json");
        let later = cocoon_core::unix_now() + 3600;
        {
            let log = SlashEvidenceLog::open(file.clone());
            log.push(record("a", "sending", later));
            log.push(record("b", "sent", later));
            log.push(record("c", "refused: replayed", later));
            log.push(record("d", "failed: chain down", later));
            log.push(record("e", "failed: chain down", 1));
        }
        let log = SlashEvidenceLog::open(file);
        assert_eq!(log.all().len(), 5);
        let due: Vec<String> = log.take_due().into_iter().map(|r| r.evidence).collect();
        assert_eq!(
            due,
            ["a", "d"],
            "on its way at the stop, or failed; not taken, refused or expired"
        );
        assert!(log.take_due().is_empty(), "marked as on their way");
        log.set_submitted("a", "sent".into());
        assert_eq!(log.all()[0].submitted, "sent");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
