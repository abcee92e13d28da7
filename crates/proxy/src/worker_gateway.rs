use std::pin::Pin;
use std::sync::Arc;

use cocoon_core::ModelName;
use cocoon_proto::worker_gateway_server::WorkerGateway;
use cocoon_proto::{proxy_message, worker_message, ProxyMessage, ProxyWelcome, WorkerMessage};
use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::registry::{Provenance, WorkerHandle};
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
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello within 10 s"))??;
        let hello = match first.and_then(|m| m.msg) {
            Some(worker_message::Msg::Hello(h)) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be hello",
                ))
            }
        };
        if hello.protocol_version != cocoon_core::PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version mismatch: worker speaks {}, proxy speaks {}",
                hello.protocol_version,
                cocoon_core::PROTOCOL_VERSION
            )));
        }
        let model = ModelName::new(&hello.model)
            .map_err(|e| Status::invalid_argument(format!("hello.model: {e}")))?;
        let model_hash = cocoon_proto::convert::model_hash(&hello.model_hash)
            .map_err(|e| Status::invalid_argument(format!("hello.model_hash: {e}")))?;
        if let Some(claimed) = attested.as_ref().and_then(|a| a.model_hash) {
            if model_hash != Some(claimed) {
                return Err(Status::failed_precondition(format!(
                    "hello.model_hash {:?} differs from the model hash in the worker's attested certificate ({claimed})",
                    hello.model_hash
                )));
            }
        }
        let payee = match (&self.shared.config.payments, hello.worker_address.as_str()) {
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

        let (tx, rx) = tokio::sync::mpsc::channel(OUTBOUND_QUEUE);
        let welcome = ProxyMessage {
            msg: Some(proxy_message::Msg::Welcome(ProxyWelcome {
                protocol_version: cocoon_core::PROTOCOL_VERSION,
                proxy_name: self.shared.config.name.clone(),
                payments: self.shared.config.payments.is_some(),
                voucher_key: self
                    .shared
                    .config
                    .payments
                    .as_ref()
                    .map(|p| p.voucher_key.to_vec())
                    .unwrap_or_default()
                    .into(),
                contract_address: self
                    .shared
                    .config
                    .payments
                    .as_ref()
                    .map(|p| p.contract.to_string())
                    .unwrap_or_default(),
                worker_voucher: match (&self.shared.config.payments, &payee) {
                    (Some(p), Some(a)) => p
                        .ledger
                        .worker_voucher(a)
                        .and_then(|v| v.to_boc().ok())
                        .unwrap_or_default()
                        .into(),
                    _ => Default::default(),
                },
            })),
        };
        tx.send(Ok(welcome))
            .await
            .map_err(|_| Status::internal("session closed during hello"))?;

        let registry = &self.shared.registry;
        let worker = Arc::new(
            WorkerHandle::new(
                registry.next_serial(),
                hello.worker_id,
                model,
                Provenance {
                    model_hash,
                    tee: attested.as_ref().map(|a| a.kind),
                    image_hash: attested.as_ref().map(|a| a.image_hash),
                },
                coefficient,
                hello.max_active_requests,
                tx,
            )
            .with_payee(payee),
        );
        registry.insert(worker.clone());
        tracing::info!(
            worker = %worker.id,
            %peer,
            model = %worker.model,
            tee = %OrNone(worker.tee),
            image = %OrNone(worker.image_hash),
            coefficient = %coefficient,
            max_active = hello.max_active_requests,
            "worker connected"
        );

        let shared = self.shared.clone();
        tokio::spawn(async move {
            let reason = read_session(&worker, &mut inbound).await;
            shared.registry.remove(&worker);
            tracing::warn!(worker = %worker.id, reason, "worker disconnected");
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

/// Reads a worker's messages until its session ends; returns why it ended.
async fn read_session(worker: &WorkerHandle, inbound: &mut Streaming<WorkerMessage>) -> String {
    loop {
        let msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return "session closed".into(),
            Err(status) => return format!("session failed: {}", status.message()),
        };
        match msg.msg {
            Some(worker_message::Msg::Event(ev)) if ev.event.is_some() => worker.deliver(ev),
            Some(worker_message::Msg::Update(u)) => {
                match cocoon_proto::convert::coefficient(u.coefficient) {
                    Ok(c) => {
                        tracing::info!(worker = %worker.id, from = %worker.coefficient(), to = %c, "worker changed its coefficient");
                        worker.set_coefficient(c);
                    }
                    Err(e) => {
                        tracing::warn!(worker = %worker.id, error = %e, "ignoring invalid coefficient update")
                    }
                }
            }
            Some(worker_message::Msg::Hello(_)) => {
                tracing::warn!(worker = %worker.id, "ignoring a second hello in one session")
            }
            Some(worker_message::Msg::Event(_)) | None => {}
        }
    }
}

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
