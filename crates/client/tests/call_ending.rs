//! The client must read every proxy call to its end. Dropping a call after
//! its last event resets the HTTP/2 stream, and h2 closes the connection
//! that all requests share after 1024 resets. On loopback the trailers
//! usually arrive with the last event, hiding the bug; this test stands in
//! for the proxy's gateway (same protocol, same TLS transport) so that it
//! can hold the trailers back and see whether the client waited for them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cocoon_proto::client_gateway_server::{ClientGateway, ClientGatewayServer};
use cocoon_proto::*;
use futures_util::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Gateway {
    /// Calls whose client dropped them before the trailers.
    dropped_early: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

type Events = Pin<Box<dyn Stream<Item = Result<InferEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ClientGateway for Gateway {
    async fn hello(&self, _: Request<ClientHello>) -> Result<Response<ProxyHello>, Status> {
        Ok(Response::new(ProxyHello {
            protocol_version: cocoon_core::PROTOCOL_VERSION,
            proxy_name: "test".into(),
            ..Default::default()
        }))
    }

    async fn balance(
        &self,
        _: Request<BalanceRequest>,
    ) -> Result<Response<BalanceResponse>, Status> {
        Ok(Response::new(BalanceResponse::default()))
    }

    async fn dev_deposit(
        &self,
        _: Request<DevDepositRequest>,
    ) -> Result<Response<BalanceResponse>, Status> {
        Err(Status::permission_denied("no development deposits here"))
    }

    async fn worker_certificate(
        &self,
        _: Request<WorkerCertificateRequest>,
    ) -> Result<Response<WorkerCertificateResponse>, Status> {
        Err(Status::not_found("this stand-in has no workers"))
    }

    async fn roster(
        &self,
        _: Request<cocoon_proto::RosterRequest>,
    ) -> Result<Response<cocoon_proto::RosterResponse>, Status> {
        // No worker to seal to: requests go in the clear.
        Ok(Response::new(cocoon_proto::RosterResponse::default()))
    }

    async fn list_models(
        &self,
        _: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        Ok(Response::new(ListModelsResponse::default()))
    }

    type InferStream = Events;

    async fn infer(&self, req: Request<InferRequest>) -> Result<Response<Events>, Status> {
        let stream = req.into_inner().stream;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let dropped = self.dropped_early.clone();
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let ev = |e| Ok(InferEvent { event: Some(e) });
            let chunk = if stream {
                &b"{\"choices\":[]}"[..]
            } else {
                &b"{\"object\":\"chat.completion\"}"[..]
            };
            let _ = tx
                .send(ev(infer_event::Event::Assigned(Assigned {
                    worker_id: "w".into(),
                    coefficient: 1000,
                    attempt: 1,
                    model_hash: String::new(),
                    ..Default::default()
                })))
                .await;
            let _ = tx
                .send(ev(infer_event::Event::Chunk(bytes::Bytes::from_static(
                    chunk,
                ))))
                .await;
            let _ = tx
                .send(ev(infer_event::Event::Done(Completion {
                    completion_tokens: 1,
                    ..Default::default()
                })))
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if tx.is_closed() {
                dropped.fetch_add(1, Ordering::SeqCst);
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

async fn http_post(addr: SocketAddr, body: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_calls_are_read_to_their_trailers() {
    let trust = cocoon_transport::Trust::Insecure;
    let creds = std::sync::Arc::new(
        cocoon_transport::NodeCredentials::generate(cocoon_core::Role::Proxy, "test").unwrap(),
    );
    let (proxy_addr, incoming) = cocoon_transport::listen(
        "127.0.0.1:0".parse().unwrap(),
        creds,
        trust.verifier("test", &[cocoon_core::Role::Client]),
    )
    .await
    .unwrap();
    let gateway = Gateway::default();
    let (dropped, calls) = (gateway.dropped_early.clone(), gateway.calls.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ClientGatewayServer::new(gateway))
            .serve_with_incoming(incoming),
    );

    let client = cocoon_client::Client::start(cocoon_client::ClientConfig {
        name: "test".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        proxy: proxy_addr.to_string(),
        trust,
        address: None,
        dev_deposit: None,
        chain: None,
        wallet: None,
        max_body_bytes: 1 << 20,
        default_max_coefficient: None,
        default_trust: Default::default(),
        default_timeout: Duration::from_secs(10),
        check_receipts: true,
        access: Default::default(),
    })
    .await
    .unwrap();

    let plain = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let streamed = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let a = http_post(client.listen, plain).await;
    assert!(
        a.starts_with("HTTP/1.1 200") && a.contains("chat.completion"),
        "{a}"
    );
    let b = http_post(client.listen, streamed).await;
    assert!(
        b.starts_with("HTTP/1.1 200") && b.contains("data: [DONE]"),
        "{b}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Let the gateway's checks run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        0,
        "the client dropped finished calls before their trailers"
    );
    client.shutdown().await;
}

/// Beyond loopback without keys the client refuses to start (before it
/// binds anything), unless told to serve open.
#[tokio::test]
async fn an_open_api_beyond_loopback_is_refused_without_keys() {
    let config = cocoon_client::ClientConfig {
        name: "exposed".into(),
        listen: "0.0.0.0:0".parse().unwrap(),
        proxy: "127.0.0.1:9".into(),
        trust: cocoon_transport::Trust::Insecure,
        address: None,
        dev_deposit: None,
        chain: None,
        wallet: None,
        max_body_bytes: 1 << 20,
        default_max_coefficient: None,
        default_trust: Default::default(),
        default_timeout: Duration::from_secs(10),
        check_receipts: true,
        access: Default::default(),
    };
    match cocoon_client::Client::start(config).await {
        Err(e @ cocoon_client::ClientError::OpenBeyondLoopback { .. }) => {
            assert!(e.to_string().contains("--open-api"), "{e}")
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("an open API was served beyond loopback"),
    }
}
