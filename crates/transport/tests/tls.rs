//! The transport's guarantees, checked with real handshakes on loopback:
//! TLS 1.3 only, a client certificate is mandatory, and the peer verifier's
//! verdict decides on both sides.

use std::sync::Arc;
use std::time::Duration;

mod common;

use cocoon_core::Role;
use cocoon_transport::{listen, NodeCredentials, PeerIdentity, PeerVerifier, VerifyError};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

/// Refuses every peer, naming a check, like an attestation policy would.
#[derive(Debug)]
struct RefuseAll;

impl PeerVerifier for RefuseAll {
    fn policy_name(&self) -> &str {
        "refuse-all"
    }
    fn verify(&self, _: &CertificateDer<'_>, _: UnixTime) -> Result<PeerIdentity, VerifyError> {
        Err(VerifyError::Refused {
            policy: "refuse-all".into(),
            check: "image hash".into(),
            found: "deadbeef".into(),
        })
    }
}

fn accept_any() -> Arc<dyn PeerVerifier> {
    cocoon_transport::Trust::Insecure.verifier("test", &[Role::Client, Role::Worker])
}

/// Handshakes with the listener and exchanges a byte; Ok if the server kept
/// the connection.
async fn try_connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut tls = connector
        .connect(ServerName::try_from("cocoon").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // In TLS 1.3 the server judges the client's certificate after the
    // client considers the handshake done: its verdict shows on first read.
    tls.write_all(b"x").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(500), tls.read(&mut buf)).await {
        Ok(Ok(0)) => Err("closed by server".into()),
        Ok(Err(e)) => Err(format!("refused: {e}")),
        _ => Ok(()),
    }
}

#[tokio::test]
async fn mutual_tls13_handshake_carries_the_peer_identity() {
    let server = Arc::new(NodeCredentials::generate(Role::Proxy, "p").unwrap());
    let client = Arc::new(NodeCredentials::generate(Role::Worker, "w").unwrap());
    let (addr, mut incoming) = listen("127.0.0.1:0".parse().unwrap(), server.clone(), accept_any())
        .await
        .unwrap();
    try_connect(
        addr,
        common::client_config(&[&rustls::version::TLS13], Some(&client)),
    )
    .await
    .unwrap();
    let conn = tokio::time::timeout(Duration::from_secs(5), incoming.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    use tonic::transport::server::Connected;
    let info = conn.connect_info();
    assert_eq!(
        info.identity.fingerprint,
        client.fingerprint(),
        "the server saw the client's certificate"
    );
    assert_eq!(info.identity.policy, "none");
    assert!(
        !info.identity.authenticated,
        "policy none never claims authentication"
    );
}

#[tokio::test]
async fn a_client_without_certificate_is_refused() {
    let server = Arc::new(NodeCredentials::generate(Role::Proxy, "p").unwrap());
    let (addr, mut incoming) = listen("127.0.0.1:0".parse().unwrap(), server.clone(), accept_any())
        .await
        .unwrap();
    let r = try_connect(
        addr,
        common::client_config(&[&rustls::version::TLS13], None),
    )
    .await;
    assert!(r.is_err(), "a client without a certificate got in");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), incoming.next())
            .await
            .is_err(),
        "no connection was accepted"
    );
}

/// TLS 1.2 is not even compiled in; an independent TLS stack (the
/// `openssl` tool, part of the base system) offering only 1.2 is refused,
/// while the same tool offering 1.3 with a certificate is accepted.
#[tokio::test]
async fn tls12_is_refused() {
    let server = Arc::new(NodeCredentials::generate(Role::Proxy, "p").unwrap());
    let client = Arc::new(NodeCredentials::generate(Role::Client, "c").unwrap());
    let (addr, _incoming) = listen("127.0.0.1:0".parse().unwrap(), server.clone(), accept_any())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("cocoon-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = |label: &str, der: &[u8]| {
        use std::fmt::Write;
        let b64 = base64(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            let _ = writeln!(out, "{}", std::str::from_utf8(line).unwrap());
        }
        out + &format!("-----END {label}-----\n")
    };
    std::fs::write(
        dir.join("cert.pem"),
        pem("CERTIFICATE", client.chain()[0].as_ref()),
    )
    .unwrap();
    let v2 = match client.key() {
        rustls::pki_types::PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        _ => unreachable!("credentials are PKCS#8"),
    };
    // ring writes PKCS#8 v2 (with the public key), which OpenSSL 3.0 cannot
    // read; v1 of the same Ed25519 key is a fixed prefix and the 32-byte seed.
    assert_eq!(
        &v2[..16],
        b"\x30\x51\x02\x01\x01\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20"
    );
    let mut key = b"\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20".to_vec();
    key.extend_from_slice(&v2[16..48]);
    std::fs::write(dir.join("key.pem"), pem("PRIVATE KEY", &key)).unwrap();
    let dir2 = dir.clone();
    let run = move |version: &str| {
        std::process::Command::new("openssl")
            .args(["s_client", version, "-connect", &addr.to_string(), "-cert"])
            .arg(dir2.join("cert.pem"))
            .arg("-key")
            .arg(dir2.join("key.pem"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("the openssl tool runs")
    };
    let (v12, v13) = tokio::task::spawn_blocking(move || (run("-tls1_2"), run("-tls1_3")))
        .await
        .unwrap();
    let out12 =
        String::from_utf8_lossy(&v12.stdout).to_string() + &String::from_utf8_lossy(&v12.stderr);
    let out13 =
        String::from_utf8_lossy(&v13.stdout).to_string() + &String::from_utf8_lossy(&v13.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !v12.status.success() && out12.contains("alert protocol version"),
        "TLS 1.2 was not refused:\n{out12}"
    );
    assert!(
        out13.contains("TLSv1.3"),
        "TLS 1.3 with a certificate was not accepted:\n{out13}"
    );
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn the_verifier_decides_on_the_server_side() {
    let server = Arc::new(NodeCredentials::generate(Role::Proxy, "p").unwrap());
    let client = Arc::new(NodeCredentials::generate(Role::Client, "c").unwrap());
    let (addr, mut incoming) = listen(
        "127.0.0.1:0".parse().unwrap(),
        server.clone(),
        Arc::new(RefuseAll),
    )
    .await
    .unwrap();
    let r = try_connect(
        addr,
        common::client_config(&[&rustls::version::TLS13], Some(&client)),
    )
    .await;
    assert!(r.is_err(), "a refused client got in");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), incoming.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_verifier_decides_on_the_client_side() {
    let server = Arc::new(NodeCredentials::generate(Role::Proxy, "p").unwrap());
    let client = Arc::new(NodeCredentials::generate(Role::Client, "c").unwrap());
    let (addr, _incoming) = listen("127.0.0.1:0".parse().unwrap(), server.clone(), accept_any())
        .await
        .unwrap();
    let channel =
        cocoon_transport::channel(&addr.to_string(), client.clone(), Arc::new(RefuseAll)).unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let err = grpc
        .ready()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    // A lazy channel reports a failed dial on first use.
    let status = if err.is_empty() {
        let path = http::uri::PathAndQuery::from_static("/cocoon.v1.ClientGateway/Hello");
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        grpc.unary(tonic::Request::new(()), path, codec)
            .await
            .err()
            .map(|s| s.to_string())
            .unwrap_or_default()
    } else {
        err
    };
    assert!(
        !status.is_empty(),
        "the client accepted a server its verifier refused"
    );
}

/// A dialer's verifier refusing the server: the handshake fails with an
/// error that still carries the verifier's typed refusal, check included.
#[tokio::test]
async fn a_refusal_keeps_its_type_through_the_handshake() {
    let server = Arc::new(NodeCredentials::generate(Role::Proxy, "p").unwrap());
    let client = Arc::new(NodeCredentials::generate(Role::Client, "c").unwrap());
    let (addr, _incoming) = listen("127.0.0.1:0".parse().unwrap(), server, accept_any())
        .await
        .unwrap();
    let config = cocoon_transport::client_tls_config(client, Arc::new(RefuseAll)).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let err = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("cocoon").unwrap(), tcp)
        .await
        .expect_err("the client's verifier refuses every server");
    let refusal = err
        .get_ref()
        .and_then(|e| cocoon_transport::refusal_of(e))
        .expect("the refusal is found in the handshake's error");
    assert_eq!(refusal.check(), "image hash");
    assert!(refusal.to_string().contains("deadbeef"), "{refusal}");
    let plain = std::io::Error::other("connection reset");
    assert!(cocoon_transport::refusal_of(&plain).is_none());
}
