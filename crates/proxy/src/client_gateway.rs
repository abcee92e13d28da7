use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use cocoon_proto::client_gateway_server::ClientGateway;
use cocoon_proto::{
    BalanceRequest, BalanceResponse, ClientHello, DevDepositRequest, InferEvent, InferRequest,
    ListModelsRequest, ListModelsResponse, ProxyHello,
};
use futures_util::Stream;
use tonic::{Request, Response, Status};

use crate::Shared;

pub(crate) struct ClientGatewayService {
    shared: Arc<Shared>,
    /// Connections whose client has said hello (a client checks its link
    /// with `hello` every few seconds, and only the first on a connection is
    /// news worth a log line), with the worker certificates sent on each.
    introduced: Arc<Mutex<HashMap<u64, HashSet<String>>>>,
}

/// Certificates remembered per connection.
const MAX_SENT_PER_CONNECTION: usize = 4096;

/// The worker certificates a client's connection has been sent: each goes
/// with the first assignment that names it on the connection, so the
/// client verifies it without asking for it on the answer's path.
#[derive(Clone)]
pub(crate) struct CertificatesSent {
    introduced: Arc<Mutex<HashMap<u64, HashSet<String>>>>,
    connection: Option<u64>,
}

impl CertificatesSent {
    /// Whether `sha256` is to go with an assignment now: the first time on
    /// this connection (marked sent from then on), or always on one that
    /// never said hello (nothing tracks it).
    pub(crate) fn first_time(&self, sha256: &str) -> bool {
        let Some(id) = self.connection else {
            return true;
        };
        let mut introduced = self.introduced.lock().unwrap_or_else(|p| p.into_inner());
        match introduced.get_mut(&id) {
            Some(sent) => {
                // Certificates rotate; a long-lived connection forgets the
                // old ones now and then, and may be sent one again.
                if sent.len() >= MAX_SENT_PER_CONNECTION {
                    sent.clear();
                }
                sent.insert(sha256.to_string())
            }
            None => true,
        }
    }
}

impl ClientGatewayService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        ClientGatewayService {
            shared,
            introduced: Arc::default(),
        }
    }

    /// Logs a client once per connection: when it first says hello on it,
    /// and when the connection closes.
    fn note_hello(&self, peer: Option<&cocoon_transport::PeerInfo>, client: &str) {
        let Some(peer) = peer else {
            tracing::debug!(%client, "hello from a client without connection info");
            return;
        };
        let id = peer.connection.id();
        let first = {
            let mut introduced = self.introduced.lock().unwrap_or_else(|p| p.into_inner());
            let first = !introduced.contains_key(&id);
            introduced.entry(id).or_default();
            first
        };
        if !first {
            tracing::trace!(%client, "client link check");
            return;
        }
        tracing::info!(%client, addr = %peer.addr, "client connected");
        let connection = peer.connection.clone();
        let introduced = self.introduced.clone();
        let client = client.to_owned();
        let addr = peer.addr;
        tokio::spawn(async move {
            connection.closed().await;
            introduced
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            tracing::info!(%client, %addr, "client disconnected");
        });
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<InferEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ClientGateway for ClientGatewayService {
    async fn hello(&self, request: Request<ClientHello>) -> Result<Response<ProxyHello>, Status> {
        crate::peer_role::require(request.extensions().get(), cocoon_core::Role::Client)?;
        let peer = request
            .extensions()
            .get::<cocoon_transport::PeerInfo>()
            .cloned();
        let hello = request.into_inner();
        if hello.protocol_version != cocoon_core::PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version mismatch: client speaks {}, proxy speaks {}",
                hello.protocol_version,
                cocoon_core::PROTOCOL_VERSION
            )));
        }
        self.note_hello(peer.as_ref(), &hello.client_name);
        let p = self.shared.config.charging.payments().map(|p| &**p);
        Ok(Response::new(ProxyHello {
            protocol_version: cocoon_core::PROTOCOL_VERSION,
            proxy_name: self.shared.config.name.clone(),
            payments: p.is_some(),
            voucher_key: p.map(|p| p.voucher_key.to_vec()).unwrap_or_default().into(),
            contract_address: p.map(|p| p.contract.to_string()).unwrap_or_default(),
            prices: p.map(|p| p.prices.to_wire()),
            default_max_tokens: p.map_or(0, |p| p.default_max_tokens),
        }))
    }

    async fn balance(
        &self,
        request: Request<BalanceRequest>,
    ) -> Result<Response<BalanceResponse>, Status> {
        crate::peer_role::require(request.extensions().get(), cocoon_core::Role::Client)?;
        let address = parse_address(&request.get_ref().client_address)?;
        if let Some(d) = self.shared.config.charging.contracts() {
            d.ensure(&address).await;
        }
        Ok(Response::new(self.balance_of(&address)))
    }

    async fn dev_deposit(
        &self,
        request: Request<DevDepositRequest>,
    ) -> Result<Response<BalanceResponse>, Status> {
        crate::peer_role::require(request.extensions().get(), cocoon_core::Role::Client)?;
        let p = self.payments()?;
        if !p.dev_deposits {
            return Err(Status::permission_denied(
                "this proxy takes deposits from the chain only; development deposits are off",
            ));
        }
        let req = request.into_inner();
        let address = parse_address(&req.client_address)?;
        p.ledger
            .submit(cocoon_pay::Op::Deposit {
                client: address.clone(),
                amount: cocoon_core::Nanoton::new(req.amount_nanoton),
            })
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        tracing::info!(client = %address, amount = req.amount_nanoton, "development deposit");
        Ok(Response::new(self.balance_of(&address)))
    }

    async fn worker_certificate(
        &self,
        request: Request<cocoon_proto::WorkerCertificateRequest>,
    ) -> Result<Response<cocoon_proto::WorkerCertificateResponse>, Status> {
        crate::peer_role::require(request.extensions().get(), cocoon_core::Role::Client)?;
        let sha = request.into_inner().sha256;
        match self.shared.certificates.get(&sha) {
            Some(der) => Ok(Response::new(cocoon_proto::WorkerCertificateResponse {
                der,
            })),
            None => Err(Status::not_found(format!(
                "no worker certificate {sha:?} is known to this proxy"
            ))),
        }
    }

    async fn roster(
        &self,
        request: Request<cocoon_proto::RosterRequest>,
    ) -> Result<Response<cocoon_proto::RosterResponse>, Status> {
        crate::peer_role::require(request.extensions().get(), cocoon_core::Role::Client)?;
        let model = request.into_inner().model;
        let workers = self
            .shared
            .registry
            .all()
            .into_iter()
            .filter(|w| w.model.as_str() == model && w.e2e_key.is_some())
            .filter_map(|w| {
                let certificate = self.shared.certificates.get(&w.certificate_sha256())?;
                Some(cocoon_proto::RosterEntry {
                    worker_id: w.name.clone(),
                    certificate,
                    coefficient: w.coefficient().per_mille(),
                })
            })
            .collect();
        Ok(Response::new(cocoon_proto::RosterResponse { workers }))
    }

    async fn list_models(
        &self,
        request: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        crate::peer_role::require(request.extensions().get(), cocoon_core::Role::Client)?;
        Ok(Response::new(ListModelsResponse {
            models: self.shared.registry.models(),
        }))
    }

    type InferStream = EventStream;

    async fn infer(&self, request: Request<InferRequest>) -> Result<Response<EventStream>, Status> {
        crate::peer_role::require(request.extensions().get(), cocoon_core::Role::Client)?;
        let sent = CertificatesSent {
            introduced: self.introduced.clone(),
            connection: request
                .extensions()
                .get::<cocoon_transport::PeerInfo>()
                .map(|p| p.connection.id()),
        };
        let req = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(crate::relay::relay(self.shared.clone(), req, tx, sent));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

impl ClientGatewayService {
    fn payments(&self) -> Result<&crate::Payments, Status> {
        (self.shared.config.charging.payments())
            .map(|p| &**p)
            .ok_or_else(|| Status::failed_precondition("this proxy does not charge for requests"))
    }

    fn balance_of(&self, address: &tycho_types::models::StdAddr) -> BalanceResponse {
        let Some(p) = self.shared.config.charging.payments().map(|p| &**p) else {
            return BalanceResponse::default();
        };
        let a = p.ledger.client(address);
        let latest = p
            .ledger
            .client_voucher(address)
            .and_then(|v| v.to_boc().ok())
            .unwrap_or_default();
        BalanceResponse {
            payments: true,
            deposited: a.deposited.get(),
            reserved: a.reserved.get(),
            spent: a.charged.get(),
            available: a.available().get(),
            stake: a.stake.get(),
            latest_voucher: latest.into(),
        }
    }
}

/// A TON address from the wire ("0:<64 hex>").
pub(crate) fn parse_address(s: &str) -> Result<tycho_types::models::StdAddr, Status> {
    s.parse().map_err(|e| {
        Status::invalid_argument(format!(
            "address {s:?} is not a TON address (\"0:<64 hex digits>\"): {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_goes_once_per_connection_and_always_to_an_untracked_one() {
        let introduced: Arc<Mutex<HashMap<u64, HashSet<String>>>> = Arc::default();
        introduced.lock().unwrap().insert(1, HashSet::new());
        let on = |connection| CertificatesSent {
            introduced: introduced.clone(),
            connection,
        };
        assert!(on(Some(1)).first_time("a"));
        assert!(!on(Some(1)).first_time("a"), "sent once");
        assert!(on(Some(1)).first_time("b"));
        assert!(on(Some(2)).first_time("a"), "a connection without hello");
        assert!(on(Some(2)).first_time("a"), "is not tracked");
        assert!(on(None).first_time("a"));
    }
}
