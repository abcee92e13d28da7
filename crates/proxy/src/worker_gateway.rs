use std::pin::Pin;
use std::sync::Arc;

use cocoon_core::tee::TeeKind;
use cocoon_core::ModelName;
use cocoon_proto::worker_gateway_server::WorkerGateway;
use cocoon_proto::{
    proxy_message, worker_message, ProxyMessage, ProxyWelcome, WorkerHello, WorkerMessage,
};
use cocoon_tee::{Attested, PeerAttestation};
use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tycho_types::models::StdAddr;

use crate::registry::{Offer, Provenance, WorkerHandle};
use crate::worker_id::WorkerId;
use crate::Shared;

pub(crate) struct WorkerGatewayService {
    shared: Arc<Shared>,
}

impl WorkerGatewayService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        WorkerGatewayService { shared }
    }
}

type MessageStream = Pin<Box<dyn Stream<Item = Result<ProxyMessage, Status>> + Send>>;

/// How many messages may wait for a slow worker connection.
const OUTBOUND_QUEUE: usize = 1024;

#[tonic::async_trait]
impl WorkerGateway for WorkerGatewayService {
    type SessionStream = MessageStream;

    /// A worker's session: its hello is checked, a welcome answers it, and
    /// from then on requests go out and events come in until either side
    /// ends it.
    async fn session(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<MessageStream>, Status> {
        let info = request
            .extensions()
            .get::<cocoon_transport::PeerInfo>()
            .cloned();
        let attested = crate::peer_role::require(info.as_ref(), cocoon_core::Role::Worker)?;
        let peer = info
            .map(|p| p.addr.to_string())
            .unwrap_or_else(|| "unknown".into());
        let mut inbound = request.into_inner();
        let hello = first_hello(&mut inbound).await?;
        let admitted = self.admit(hello, attested.as_deref())?;
        let identity = self.prove_identity(&admitted, attested.as_deref()).await?;

        let (tx, rx) = tokio::sync::mpsc::channel(OUTBOUND_QUEUE);
        tx.send(Ok(self.welcome(admitted.payee.as_ref())))
            .await
            .map_err(|_| Status::internal("session closed during hello"))?;
        let worker = self.register(identity, admitted, tx);
        tracing::info!(
            worker = %worker.name,
            identity = %worker.identity,
            %peer,
            model = %worker.model,
            tee = %OrNone(worker.tee),
            image = %OrNone(worker.image_hash),
            coefficient = %worker.coefficient(),
            max_active = worker.max_active(),
            "worker connected"
        );

        let shared = self.shared.clone();
        tokio::spawn(async move {
            let ended = read_session(&shared, &worker, attested.as_deref(), &mut inbound).await;
            shared.registry.remove(&worker);
            match ended {
                Ok(()) => tracing::info!(worker = %worker.name, "worker disconnected"),
                Err(reason) => {
                    tracing::warn!(worker = %worker.name, %reason, "worker disconnected")
                }
            }
        });
        // Sessions never end on their own; shutdown must end them, or the
        // server's graceful stop would wait for them forever.
        let mut stopping = self.shared.stopping.clone();
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).take_until(async move {
            let _ = stopping.wait_for(|s| *s).await;
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// A worker's hello, checked: what the registry keeps of it.
struct Admitted {
    worker_id: String,
    offer: Offer,
    /// Where its earnings go, when the proxy charges.
    payee: Option<StdAddr>,
    /// SHA-256 of the certificate that signs its receipts.
    certificate: String,
    /// Its contract owner's word for the certificate (on a chain).
    owner: crate::worker_contract::OwnerProof,
    /// The key its receipts are signed with, as its attested certificate
    /// names it; `None` without attestation.
    receipt_key: Option<[u8; 32]>,
}

/// The session's first message, which must be a hello.
async fn first_hello(inbound: &mut Streaming<WorkerMessage>) -> Result<WorkerHello, Status> {
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no hello within 10 s"))??;
    match first.and_then(|m| m.msg) {
        Some(worker_message::Msg::Hello(h)) => Ok(h),
        _ => Err(Status::invalid_argument(
            "the first message of a session must be hello",
        )),
    }
}

impl WorkerGatewayService {
    /// Who the admitted worker is. On a chain its worker contract, which
    /// must hold its stake, run our code, name this proxy, be owned by the
    /// wallet that signed the hello and have registered the receipt key
    /// the worker's certificate names; off chain the attested receipt
    /// key; without attestation nothing (`None`: the session stands alone).
    async fn prove_identity(
        &self,
        admitted: &Admitted,
        attested: Option<&Attested<PeerAttestation>>,
    ) -> Result<Option<WorkerId>, Status> {
        let contracts = self.shared.config.charging.contracts();
        if let (Some(contract), Some(contracts)) = (&admitted.payee, contracts) {
            if attested.is_some() && admitted.receipt_key.is_none() {
                return Err(Status::failed_precondition(
                    "the worker's certificate names no receipt key: on a chain a worker signs receipts with a key registered in its worker contract",
                ));
            }
            let staked = contracts
                .check_worker_stake(contract, &admitted.owner, admitted.receipt_key.as_ref())
                .await
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
            tracing::debug!(worker = %admitted.worker_id, stake = %staked.stake, "worker contract staked");
            if let Some(registry) = self.shared.config.charging.registry() {
                let p = &admitted.offer.provenance;
                registry
                    .admits_operator(&staked.owner, p.region.as_ref(), p.open)
                    .map_err(Status::failed_precondition)?;
            }
            return Ok(Some(WorkerId::Contract {
                contract: contract.clone(),
                owner: staked.owner,
            }));
        }
        if admitted.offer.provenance.open && !self.shared.config.open_tier_off_chain {
            return Err(Status::failed_precondition(
                "an open-tier worker (no TEE) is admitted only when the root registry lists its operator for the open tier, and this proxy runs off chain",
            ));
        }
        Ok(admitted.receipt_key.map(WorkerId::ReceiptKey))
    }

    /// The weights a hello announces, checked against the worker's attested
    /// claims and, on a chain, the root registry's models.
    fn weights(
        &self,
        hello: &WorkerHello,
        model: &ModelName,
        attested: Option<&Attested<PeerAttestation>>,
    ) -> Result<Option<cocoon_core::ModelHash>, Status> {
        let model_hash = cocoon_proto::convert::model_hash(&hello.model_hash)
            .map_err(|e| Status::invalid_argument(format!("hello.model_hash: {e}")))?;
        if let Some(claimed) = attested.and_then(|a| a.model_hash) {
            if model_hash != Some(claimed) {
                return Err(Status::failed_precondition(format!(
                    "hello.model_hash {:?} differs from the model hash in the worker's attested certificate ({claimed})",
                    hello.model_hash
                )));
            }
        }
        // On a chain the registry decides which weights may serve.
        let Some(registry) = self
            .shared
            .config
            .charging
            .registry()
            .filter(|r| r.checks_models())
        else {
            return Ok(model_hash);
        };
        match &model_hash {
            Some(h) if registry.allows_model(h) => Ok(model_hash),
            Some(h) => Err(Status::failed_precondition(format!(
                "model {model} with weights {h} is not registered by the root registry; its owner adds it with `cocoon registry add-model`"
            ))),
            None => Err(Status::failed_precondition(format!(
                "model {model}: the worker announces no weights hash, and the root registry accepts only registered weights (an upstream engine declares them with --model-hash)"
            ))),
        }
    }

    /// Checks a hello against the protocol, the worker's attested claims
    /// and the proxy's payment needs; every refusal names the field.
    fn admit(
        &self,
        hello: WorkerHello,
        attested: Option<&Attested<PeerAttestation>>,
    ) -> Result<Admitted, Status> {
        if hello.protocol_version != cocoon_core::PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version mismatch: worker speaks {}, proxy speaks {}",
                hello.protocol_version,
                cocoon_core::PROTOCOL_VERSION
            )));
        }
        let model = ModelName::new(&hello.model)
            .map_err(|e| Status::invalid_argument(format!("hello.model: {e}")))?;
        let model_hash = self.weights(&hello, &model, attested)?;
        let payee = match (self.shared.config.charging.payments(), hello.worker_address.as_str()) {
            (None, _) => None,
            (Some(_), "") => {
                return Err(Status::failed_precondition(
                    "this proxy charges for requests: hello.worker_address (where earnings go) is required",
                ))
            }
            (Some(_), a) => Some(crate::client_gateway::parse_address(a)?),
        };
        let coefficient = cocoon_proto::convert::coefficient(hello.coefficient)
            .map_err(|e| Status::invalid_argument(format!("hello.coefficient: {e}")))?;
        if hello.max_active_requests == 0 {
            return Err(Status::invalid_argument(
                "hello.max_active_requests must be at least 1, found 0",
            ));
        }
        if hello.worker_id.is_empty() || hello.worker_id.len() > 128 {
            return Err(Status::invalid_argument(format!(
                "hello.worker_id must be 1 to 128 bytes, found {} bytes",
                hello.worker_id.len()
            )));
        }
        let certificate = self
            .shared
            .certificates
            .admit(&hello.certificate, attested, model_hash)
            .map_err(|e| Status::failed_precondition(format!("hello.certificate: {e}")))?;
        let owner = crate::worker_contract::OwnerProof {
            key: hello.owner_key.to_vec(),
            signature: hello.owner_signature.to_vec(),
            certificate_sha256: cocoon_receipt::digest::sha256(&hello.certificate),
        };
        Ok(Admitted {
            owner,
            receipt_key: attested.and_then(|a| a.receipt_key),
            certificate,
            worker_id: hello.worker_id,
            offer: Offer {
                model,
                provenance: Provenance {
                    model_hash,
                    tee: attested.map(|a| a.kind).filter(|k| *k != TeeKind::None),
                    image_hash: attested.map(|a| a.image_hash),
                    e2e_key: attested.and_then(|a| a.e2e_key),
                    tcb: attested.map(|a| a.tcb_status).unwrap_or_default(),
                    gpu: attested.and_then(|a| a.gpus.first()).map(|g| g.describe()),
                    region: attested.and_then(|a| a.region.clone()),
                    open: attested.is_some_and(|a| a.kind == TeeKind::None),
                    hardware: attested.and_then(|a| hardware(&a.gpus)),
                },
                coefficient,
                max_active: hello.max_active_requests,
            },
            payee,
        })
    }

    /// The answer to a hello: who the proxy is, how it charges, and the
    /// worker's latest voucher.
    fn welcome(&self, payee: Option<&StdAddr>) -> ProxyMessage {
        let payments = self.shared.config.charging.payments().map(|p| &**p);
        let worker_voucher = match (payments, payee) {
            (Some(p), Some(a)) => p.ledger.worker_voucher(a).and_then(|v| v.to_boc().ok()),
            _ => None,
        };
        ProxyMessage {
            msg: Some(proxy_message::Msg::Welcome(ProxyWelcome {
                protocol_version: cocoon_core::PROTOCOL_VERSION,
                proxy_name: self.shared.config.name.clone(),
                payments: payments.is_some(),
                voucher_key: payments
                    .map(|p| p.voucher_key.to_vec())
                    .unwrap_or_default()
                    .into(),
                contract_address: payments.map(|p| p.contract.to_string()).unwrap_or_default(),
                worker_voucher: worker_voucher.unwrap_or_default().into(),
            })),
        }
    }

    /// Adds an admitted worker to the registry, with its session's
    /// outbound queue.
    fn register(
        &self,
        identity: Option<WorkerId>,
        a: Admitted,
        outbound: crate::registry::Outbound,
    ) -> Arc<WorkerHandle> {
        let registry = &self.shared.registry;
        let serial = registry.next_serial();
        let worker = WorkerHandle::new(
            serial,
            identity.unwrap_or(WorkerId::Unproven(serial)),
            a.worker_id,
            a.offer,
            outbound,
        )
        .with_payee(a.payee);
        worker.set_certificate(a.certificate);
        registry.insert(worker)
    }
}

/// Reads a worker's messages until its session ends: `Ok` when the worker
/// closed it, else why it failed.
async fn read_session(
    shared: &Shared,
    worker: &WorkerHandle,
    attested: Option<&Attested<PeerAttestation>>,
    inbound: &mut Streaming<WorkerMessage>,
) -> Result<(), SessionEnded> {
    let mut rotated: Option<std::time::Instant> = None;
    loop {
        let msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(status) => return Err(SessionEnded::Failed(status)),
        };
        match msg.msg {
            Some(worker_message::Msg::Event(ev)) if ev.event.is_some() => worker.deliver(ev),
            Some(worker_message::Msg::Update(u)) => {
                match cocoon_proto::convert::coefficient(u.coefficient) {
                    Ok(c) => {
                        tracing::info!(worker = %worker.name, from = %worker.coefficient(), to = %c, "worker changed its coefficient");
                        worker.set_coefficient(c);
                    }
                    Err(e) => {
                        tracing::warn!(worker = %worker.name, error = %e, "ignoring invalid coefficient update")
                    }
                }
            }
            Some(worker_message::Msg::Certificate(c)) => {
                // Certificates rotate every few tens of minutes; faster
                // would only push other workers' out of the kept ones.
                if rotated.is_some_and(|t| t.elapsed() < MIN_ROTATION) {
                    return Err(SessionEnded::RotatingTooFast);
                }
                rotated = Some(std::time::Instant::now());
                // A rotated certificate: receipts signed with it follow.
                let sha = shared
                    .certificates
                    .admit(&c.der, attested, worker.model_hash)?;
                tracing::info!(worker = %worker.name, certificate = %sha, "worker replaced its receipt certificate");
                worker.set_certificate(sha);
            }
            Some(worker_message::Msg::Hello(_)) => {
                tracing::warn!(worker = %worker.name, "ignoring a second hello in one session")
            }
            Some(worker_message::Msg::Event(_)) | None => {}
        }
    }
}

/// Why a worker's session ended other than by the worker closing it.
#[derive(Debug, thiserror::Error)]
enum SessionEnded {
    /// The stream failed.
    #[error("session failed: {}", .0.message())]
    Failed(Status),
    /// The worker rotated to a certificate the proxy refuses.
    #[error("the worker's new receipt certificate: {0}")]
    Certificate(#[from] crate::worker_certificates::CertificateRefused),
    /// The worker replaced its certificate again too soon.
    #[error("the worker replaced its receipt certificate twice within {MIN_ROTATION:?}")]
    RotatingTooFast,
}

/// Least time between two receipt certificates of one session.
const MIN_ROTATION: std::time::Duration = std::time::Duration::from_secs(60);

/// An optional value in a log line: the value, or "none".
struct OrNone<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrNone<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// Every attested GPU with its driver and VBIOS, as one string (the
/// hardware part of an exact replay); `None` without any.
fn hardware(gpus: &[cocoon_tee::nvidia::VerifiedGpu]) -> Option<String> {
    if gpus.is_empty() {
        return None;
    }
    let mut each: Vec<String> = gpus
        .iter()
        .map(|g| {
            format!(
                "{} driver {} vbios {}",
                g.describe(),
                g.driver_version,
                g.vbios_version
            )
        })
        .collect();
    each.sort();
    Some(format!("{}x [{}]", gpus.len(), each.join("; ")))
}
