//! Collateral from a PCCS. The PCCS here is a local stand-in speaking the
//! PCCS v4 API on loopback and serving the real collateral from
//! ../shared/fixtures (Intel's service cannot be reached from tests, and
//! the data it would serve is exactly this, signed by Intel).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cocoon_tee::evidence::{self, CollateralSource, VerifyContext};
use cocoon_tee::pccs::Pccs;
use cocoon_tee::Evidence;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../../shared/fixtures/tee/tdx")
    .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Serves the collateral of FMSPC B0C06F000000 the way a PCCS does.
fn pccs_stand_in() -> (String, Arc<AtomicU64>) {
    let c: serde_json::Value =
        serde_json::from_slice(&fixture("tdx_quote_collateral.json")).unwrap();
    let s = move |k: &str| c[k].as_str().unwrap().to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            reader.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
            }
            counter.fetch_add(1, Ordering::Relaxed);
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            let (status, header, body): (u16, String, Vec<u8>) =
                if path.starts_with("/sgx/certification/v4/pckcrl") {
                    (
                        200,
                        format!(
                            "SGX-PCK-CRL-Issuer-Chain: {}",
                            urlencode(&s("pck_crl_issuer_chain"))
                        ),
                        hex::decode(s("pck_crl")).unwrap(),
                    )
                } else if path == "/tdx/certification/v4/tcb?fmspc=B0C06F000000" {
                    let body = format!(
                        "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
                        s("tcb_info"),
                        s("tcb_info_signature")
                    );
                    (
                        200,
                        format!(
                            "TCB-Info-Issuer-Chain: {}",
                            urlencode(&s("tcb_info_issuer_chain"))
                        ),
                        body.into_bytes(),
                    )
                } else if path == "/tdx/certification/v4/qe/identity" {
                    let body = format!(
                        "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                        s("qe_identity"),
                        s("qe_identity_signature")
                    );
                    (
                        200,
                        format!(
                            "SGX-Enclave-Identity-Issuer-Chain: {}",
                            urlencode(&s("qe_identity_issuer_chain"))
                        ),
                        body.into_bytes(),
                    )
                } else if path == "/sgx/certification/v4/rootcacrl" {
                    (200, "X-Note: hex".into(), s("root_ca_crl").into_bytes())
                } else {
                    (404, "X-Note: unknown".into(), b"no such FMSPC".to_vec())
                };
            // Chunked, as Node-based PCCS servers answer.
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\n{header}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
            let _ = stream.write_all(b"\r\n0\r\n\r\n");
        }
    });
    (url, hits)
}

const LAST_OK: u64 = 1_752_919_234;

#[test]
fn collateral_is_fetched_verified_and_cached_until_its_next_update() {
    let (url, hits) = pccs_stand_in();
    let pccs = Pccs::new(&url).unwrap();
    let quote = fixture("tdx_quote");
    let json = pccs.collateral(&quote, LAST_OK).unwrap();
    let ev = cocoon_tee::tdx::verify(&quote, &json, LAST_OK).unwrap();
    assert_eq!(ev.tcb_status, "UpToDate");
    assert_eq!((pccs.fetches(), hits.load(Ordering::Relaxed)), (1, 4));

    // Cached: no new requests until the earliest nextUpdate (the PCK CRL's).
    pccs.collateral(&quote, LAST_OK).unwrap();
    assert_eq!(pccs.fetches(), 1);
    pccs.collateral(&quote, LAST_OK + 1).unwrap();
    assert_eq!(
        pccs.fetches(),
        2,
        "fetched again once the CRL's nextUpdate passed"
    );

    // A quote without collateral verifies with the PCCS as its source.
    let verified = evidence::verify(
        &Evidence::Tdx {
            quote: quote.clone(),
            collateral: None,
        },
        VerifyContext {
            now: LAST_OK,
            sim_roots: &[],
            collateral: Some(&pccs),
        },
    )
    .unwrap();
    assert_eq!(verified.image_hash, ev.image_hash);
}

#[test]
fn an_fmspc_the_pccs_does_not_know_is_named() {
    let (url, _) = pccs_stand_in();
    let pccs = Pccs::new(&url).unwrap();
    let err = pccs
        .collateral(&fixture("cocoon_quote.dat"), LAST_OK)
        .unwrap_err();
    assert!(
        matches!(
            &err,
            cocoon_tee::evidence::CollateralError::Pccs {
                fmspc,
                error: cocoon_tee::pccs::PccsError::Status { status: 404, .. },
                ..
            } if fmspc == "90C06F000000"
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("FMSPC 90C06F000000") && text.contains("HTTP 404"),
        "{text}"
    );
}
