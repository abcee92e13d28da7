//! Attestation costs, measured side by side in one run (`cargo bench -p
//! cocoon-transport --bench attestation`, or bench/attestation.sh):
//!
//! - cold verification of evidence: a TDX quote with its collateral already
//!   in memory (as after a PCCS fetch), an SEV-SNP report with its chain,
//!   a sim quote;
//! - RA-TLS certificate verification with and without the cache;
//! - mutual TLS handshakes per second on loopback: plain certificates with
//!   no verification (the reference), RA-TLS with the verification cache,
//!   and RA-TLS verifying every certificate afresh.
//!
//! Fixtures come from ../shared/fixtures/tee. Prints a Markdown report.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cocoon_core::Role;
use cocoon_tee::policy::DEFAULT_MAX_CERT_AGE_SECS;
use cocoon_tee::sim::SimRoot;
use cocoon_tee::{Policy, RaTlsVerifier, SimAttester, TcbStatus, TeeKind};
use cocoon_transport::{Attestation, Trust};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

fn fixture(dir: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../../shared/fixtures/tee")
    .join(dir)
    .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Median and 90th percentile of `n` runs of `f`, in milliseconds.
fn time_ms(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    f(); // warm caches of the allocator and code, not of verification
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[n / 2], v[n * 9 / 10])
}

fn sim_trust(dir: &std::path::Path, cache: bool) -> (Trust, Arc<RaTlsVerifier>) {
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
    let mut verifier = RaTlsVerifier::new(policy, None);
    if !cache {
        verifier = verifier.without_cache();
    }
    let verifier = Arc::new(verifier);
    let trust = Trust::Attested(Arc::new(Attestation::new(
        Arc::new(attester),
        verifier.clone(),
        [0; 32],
    )));
    (trust, verifier)
}

/// Sequential handshakes per second: connect, mutual TLS 1.3 handshake,
/// one byte each way, close.
async fn handshakes_per_sec(trust: &Trust, seconds: f64) -> f64 {
    let server = trust.credentials(Role::Proxy, "bench", None).unwrap();
    let (addr, mut incoming) = cocoon_transport::listen(
        "127.0.0.1:0".parse().unwrap(),
        server,
        trust.verifier("bench: clients", &[Role::Client]),
    )
    .await
    .unwrap();
    tokio::spawn(async move {
        while let Some(Ok(mut conn)) = incoming.next().await {
            tokio::spawn(async move {
                let mut b = [0u8; 1];
                if conn.read_exact(&mut b).await.is_ok() {
                    let _ = conn.write_all(&b).await;
                }
            });
        }
    });
    let client = trust.credentials(Role::Client, "bench", None).unwrap();
    let config =
        cocoon_transport::client_tls_config(client, trust.verifier("bench: proxy", &[Role::Proxy]))
            .unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("cocoon").unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("COCOON_BENCH_QUICK").is_some();
    let (iters, secs) = if quick { (20, 0.5) } else { (200, 3.0) };
    let mut out = String::new();
    let mut line = |s: String| {
        println!("{s}");
        out.push_str(&s);
        out.push('\n');
    };

    line("## Evidence verification (cold: no verification cache)\n".into());
    line("| evidence | median ms | p90 ms |".into());
    line("|---|---:|---:|".into());
    let (q, c) = (
        fixture("tdx", "tdx_quote"),
        fixture("tdx", "tdx_quote_collateral.json"),
    );
    let (m, p) = time_ms(iters, || {
        cocoon_tee::tdx::verify(&q, &c, 1_752_919_234).unwrap();
    });
    line(format!("| TDX quote v4, collateral in memory (DCAP: PCK chain, CRLs, TCB info, QE identity) | {m:.2} | {p:.2} |"));
    let report = hex::decode(
        String::from_utf8(fixture("sev-snp", "report_milan.hex"))
            .unwrap()
            .split_whitespace()
            .collect::<String>(),
    )
    .unwrap();
    let (vcek, chain) = (
        fixture("sev-snp", "vcek_milan.der"),
        fixture("sev-snp", "cert_chain_milan.pem"),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (m, p) = time_ms(iters, || {
        cocoon_tee::snp::verify(&report, &vcek, &chain, now).unwrap();
    });
    line(format!(
        "| SEV-SNP report, VCEK chain (3 RSA-4096 PSS + P-384) | {m:.2} | {p:.2} |"
    ));

    let dir = std::env::temp_dir().join(format!("cocoon-bench-attest-{}", std::process::id()));
    let root = SimRoot::load_or_create(&dir).unwrap();
    let sim_q = root.quote(&[1; 48], &[[0; 48]; 4], TcbStatus::UpToDate, &[0; 64]);
    let key = [root.public_key()];
    let (m, p) = time_ms(iters, || {
        cocoon_tee::sim::verify(&sim_q, &key).unwrap();
    });
    line(format!("| sim quote (Ed25519) | {m:.3} | {p:.3} |"));

    line(
        "\n## RA-TLS certificate verification (parse, claims, evidence, binding, policy)\n".into(),
    );
    line("| verifier | median ms | p90 ms |".into());
    line("|---|---:|---:|".into());
    for cache in [true, false] {
        let (trust, verifier) = sim_trust(&dir, cache);
        let Trust::Attested(att) = &trust else {
            unreachable!()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = cocoon_tee::Claims {
            public_key: [0; 32],
            role: Role::Proxy,
            issued_at: now,
            expires_at: now + 3600,
            config_hash: [0; 32],
            model_hash: None,
            receipt_key: None,
            e2e_key: None,
            region: None,
        };
        let cert = cocoon_tee::cert::mint(claims, &**att.attester()).unwrap();
        let (m, p) = time_ms(iters * 5, || {
            verifier.verify(&cert.der, &[Role::Proxy], now).unwrap();
        });
        line(format!(
            "| sim evidence, cache {} | {m:.3} | {p:.3} |",
            if cache { "on" } else { "off" }
        ));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    line(format!(
        "\n## Mutual TLS 1.3 handshakes on loopback, sequential, {secs} s each\n"
    ));
    line("| trust | handshakes/s | ms per handshake | added ms vs plain | ratio vs plain |".into());
    line("|---|---:|---:|---:|---:|".into());
    let plain = rt.block_on(handshakes_per_sec(&Trust::Insecure, secs));
    line(format!(
        "| plain certificates, no verification (reference) | {plain:.0} | {:.3} | - | 1.00 |",
        1e3 / plain
    ));
    for cache in [true, false] {
        let (trust, _) = sim_trust(&dir, cache);
        let rate = rt.block_on(handshakes_per_sec(&trust, secs));
        line(format!(
            "| RA-TLS, sim evidence both ways, cache {} | {rate:.0} | {:.3} | {:.3} | {:.2} |",
            if cache { "on" } else { "off" },
            1e3 / rate,
            1e3 / rate - 1e3 / plain,
            rate / plain
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(path) = std::env::var_os("COCOON_BENCH_OUT") {
        std::fs::write(path, out).unwrap();
    }
}
