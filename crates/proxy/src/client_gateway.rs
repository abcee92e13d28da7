use std::pin::Pin;
use std::sync::Arc;

use cocoon_proto::client_gateway_server::ClientGateway;
use cocoon_proto::{
    ClientHello, InferEvent, InferRequest, ListModelsRequest, ListModelsResponse, ProxyHello,
};
use futures_util::Stream;
use tonic::{Request, Response, Status};

use crate::Shared;

pub(crate) struct ClientGatewayService {
    shared: Arc<Shared>,
}

impl ClientGatewayService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        ClientGatewayService { shared }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<InferEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ClientGateway for ClientGatewayService {
    async fn hello(&self, request: Request<ClientHello>) -> Result<Response<ProxyHello>, Status> {
        crate::peer_role::require(request.extensions().get(), cocoon_core::Role::Client)?;
        let hello = request.into_inner();
        if hello.protocol_version != cocoon_core::PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version mismatch: client speaks {}, proxy speaks {}",
                hello.protocol_version,
                cocoon_core::PROTOCOL_VERSION
            )));
        }
        tracing::info!(client = %hello.client_name, "client connected");
        Ok(Response::new(ProxyHello {
            protocol_version: cocoon_core::PROTOCOL_VERSION,
            proxy_name: self.shared.config.name.clone(),
        }))
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
        let req = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let job = crate::relay::Relay::new(self.shared.clone(), req, tx)?;
        tokio::spawn(job.run());
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
