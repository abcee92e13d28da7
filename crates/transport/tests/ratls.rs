//! RA-TLS over real handshakes on loopback, with the sim TEE: attested
//! peers get in and carry their attestation; unattested or wrong-role peers
//! are refused; certificates rotate without dropping open connections.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

mod common;

use cocoon_core::Role;
use cocoon_tee::policy::DEFAULT_MAX_CERT_AGE_SECS;
use cocoon_tee::sim::SimRoot;
use cocoon_tee::{Policy, RaTlsVerifier, SimAttester, TcbStatus, TeeKind};
use cocoon_transport::{listen, Attestation, NodeCredentials, Trust};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

fn sim_trust(dir: &std::path::Path, lifetime: Duration) -> Trust {
    let attester = SimAttester::new(SimRoot::load_or_create(dir).unwrap(), [7; 48]);
    let image = attester.image_hash();
    let policy = Policy {
        kinds: BTreeSet::from([TeeKind::Sim]),
        images: [Role::Client, Role::Proxy, Role::Worker]
            .into_iter()
            .map(|r| (r, BTreeSet::from([image])))
            .collect(),
        min_tcb: TcbStatus::UpToDate,
        max_cert_age_secs: DEFAULT_MAX_CERT_AGE_SECS,
        required_claims: BTreeSet::new(),
        sim_roots: vec![attester.root_public_key()],
        gpu: None,
        open: None,
    };
    Trust::Attested(Arc::new(
        Attestation::new(
            Arc::new(attester),
            Arc::new(RaTlsVerifier::new(policy, None)),
            [0; 32],
        )
        .with_lifetime(lifetime),
    ))
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(addr: std::net::SocketAddr, cert: &Arc<NodeCredentials>) -> Tls {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(common::client_config(
        &[&rustls::version::TLS13],
        Some(cert),
    ))
    .connect(ServerName::try_from("cocoon").unwrap(), tcp)
    .await
    .unwrap()
}

/// Sends a byte and expects it echoed; `Err` if the server hung up.
async fn ping(tls: &mut Tls) -> Result<(), String> {
    tls.write_all(b"p").await.map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(2), tls.read(&mut b)).await {
        Ok(Ok(1)) => Ok(()),
        Ok(Ok(_)) => Err("closed by server".into()),
        Ok(Err(e)) => Err(format!("refused: {e}")),
        Err(_) => Err("no echo".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attested_peers_connect_and_rotation_drops_no_connection() {
    let dir = std::env::temp_dir().join(format!("cocoon-ratls-transport-{}", std::process::id()));
    // Certificates live 3 s and are replaced every 2 s.
    let trust = sim_trust(&dir, Duration::from_secs(3));
    let server = trust.credentials(Role::Proxy, "p", None).unwrap();
    let verifier = trust.verifier("test: clients", &[Role::Client]);
    let (addr, mut incoming) = listen("127.0.0.1:0".parse().unwrap(), server.clone(), verifier)
        .await
        .unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(mut conn)) = incoming.next().await {
            use tonic::transport::server::Connected;
            let _ = seen_tx.send(conn.connect_info().identity.clone());
            tokio::spawn(async move {
                let mut b = [0u8; 1];
                while let Ok(1) = conn.read(&mut b).await {
                    if conn.write_all(&b).await.is_err() {
                        return;
                    }
                }
            });
        }
    });

    let client = trust.credentials(Role::Client, "c", None).unwrap();
    let mut first = connect(addr, &client).await;
    ping(&mut first).await.unwrap();
    let id = seen.recv().await.unwrap();
    assert!(id.authenticated);
    let att = id
        .attestation
        .as_ref()
        .expect("the server saw the client's attestation");
    assert_eq!((att.role, att.kind), (Role::Client, TeeKind::Sim));

    let (client_fp, server_fp) = (client.fingerprint(), server.fingerprint());
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_ne!(
        client.fingerprint(),
        client_fp,
        "the client's certificate was rotated"
    );
    assert_ne!(
        server.fingerprint(),
        server_fp,
        "the server's certificate was rotated"
    );
    // The connection made before the rotation still works...
    ping(&mut first).await.unwrap();
    // ...and a new one presents the new certificate, which is accepted.
    let mut second = connect(addr, &client).await;
    ping(&mut second).await.unwrap();
    assert_eq!(seen.recv().await.unwrap().fingerprint, client.fingerprint());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unattested_and_wrong_role_peers_are_refused() {
    let dir = std::env::temp_dir().join(format!("cocoon-ratls-refuse-{}", std::process::id()));
    let trust = sim_trust(&dir, Duration::from_secs(3600));
    let server = trust.credentials(Role::Proxy, "p", None).unwrap();
    let (addr, _incoming) = listen(
        "127.0.0.1:0".parse().unwrap(),
        server,
        trust.verifier("test: workers", &[Role::Worker]),
    )
    .await
    .unwrap();
    let plain = Arc::new(NodeCredentials::generate(Role::Worker, "w").unwrap());
    let mut tls = connect(addr, &plain).await;
    assert!(ping(&mut tls).await.is_err(), "a plain certificate got in");
    let client = trust.credentials(Role::Client, "c", None).unwrap();
    let mut tls = connect(addr, &client).await;
    assert!(
        ping(&mut tls).await.is_err(),
        "a client got into a worker-only listener"
    );
    let (refused, last) = trust.refusals();
    assert_eq!(refused.get("certificate"), Some(&1), "{refused:?}");
    assert_eq!(refused.get("role"), Some(&1), "{refused:?}");
    assert!(last.unwrap().contains("peer claims client"));
    let _ = std::fs::remove_dir_all(&dir);
}
