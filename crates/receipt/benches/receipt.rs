//! CPU a receipt costs one request (`cargo bench -p cocoon-receipt`), per
//! hop, for a streamed answer of 50 chunks of 128 bytes of text (the
//! streaming benchmark's shape): the worker hashes the chunks, builds, signs and
//! encodes the receipt; the client hashes the chunks as received, parses
//! the receipt and checks it (signature, hashes, usage, price arithmetic).
//! The proxy only passes the receipt on. Verifying a worker's certificate
//! happens once per certificate and is reported apart. Target: ≤ 0.05 ms
//! per request across the hops.

use std::collections::BTreeSet;
use std::time::Instant;

use cocoon_core::{BasisPoints, Coefficient, Nanoton, PriceList, Role};
use cocoon_receipt::{
    digest, ProxyIdentity, ReceiptBody, ReceiptSigner, SignedReceipt, WorkerIdentity,
};
use cocoon_tee::sim::SimRoot;
use cocoon_tee::{Claims, Policy, RaTlsVerifier, SimAttester, TcbStatus, TeeKind};

const ROUNDS: u32 = 2000;

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let attester = SimAttester::new(
        SimRoot::load_or_create(dir.path()).expect("sim root"),
        [1; 48],
    );
    let now = cocoon_core::unix_now();
    let receipt_pkcs8 =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .expect("a receipt key");
    let receipt_pkcs8 = receipt_pkcs8.as_ref().to_vec();
    let receipt_public: [u8; 32] = {
        use ring::signature::KeyPair;
        ring::signature::Ed25519KeyPair::from_pkcs8(&receipt_pkcs8)
            .expect("a receipt key")
            .public_key()
            .as_ref()
            .try_into()
            .expect("32 bytes")
    };
    let minted = cocoon_tee::cert::mint(
        Claims {
            public_key: [0; 32],
            role: Role::Worker,
            issued_at: now,
            expires_at: now + 3600,
            config_hash: [0; 32],
            model_hash: None,
            receipt_key: Some(receipt_public),
            e2e_key: None,
            region: None,
        },
        &attester,
    )
    .expect("a certificate");
    let policy = Policy {
        kinds: [TeeKind::Sim].into(),
        images: [(Role::Worker, BTreeSet::from([attester.image_hash()]))].into(),
        min_tcb: TcbStatus::UpToDate,
        max_cert_age_secs: 7200,
        required_claims: Default::default(),
        sim_roots: vec![attester.root_public_key()],
        gpu: None,
        open: None,
    };
    let verifier = RaTlsVerifier::new(policy, None).without_cache();
    let (kind, image) = verifier
        .inspect_own(&minted.der, now)
        .expect("own evidence");
    let signer = ReceiptSigner::new(minted.der.clone(), &receipt_pkcs8, Some(kind), Some(image))
        .expect("signer");
    let bp = |v| BasisPoints::new(v).expect("basis points");
    let prices = PriceList::new(
        Nanoton::new(100),
        Nanoton::new(80),
        [bp(10_000), bp(2_500), bp(10_000), bp(10_000)],
    )
    .expect("prices");
    // Chunks as the streaming benchmark's worker relays them: OpenAI chunk
    // JSON around 128 bytes of text, about 290 bytes each.
    let chunks: Vec<Vec<u8>> = (0..50)
        .map(|i| {
            let finish = if i == 49 { "\"stop\"" } else { "null" };
            format!(
                "{{\"id\":\"chatcmpl-bench-{i:06}\",\"object\":\"chat.completion.chunk\",\"created\":{now},\"model\":\"bench\",\"system_fingerprint\":null,\"choices\":[{{\"index\":0,\"delta\":{{\"role\":null,\"content\":\"{}\"}},\"logprobs\":null,\"finish_reason\":{finish}}}]}}",
                "x".repeat(128)
            )
            .into_bytes()
        })
        .collect();
    let request = br#"{"model":"m","messages":[{"role":"user","content":"hello"}],"stream":true}"#;
    let usage = cocoon_core::Usage {
        prompt: 12,
        cached: 0,
        completion: 50,
        reasoning: 0,
    };

    let t = Instant::now();
    let mut identity = None;
    for _ in 0..200 {
        identity = Some(
            WorkerIdentity::verify(&minted.der, &verifier, now).expect("certificate verifies"),
        );
    }
    let cert_us = t.elapsed().as_secs_f64() * 1e6 / 200.0;
    let identity = identity.expect("verified");

    let body = |r: u32, answer_sha256: String| {
        let charge = prices.cost(&usage, Coefficient::ONE).expect("cost");
        ReceiptBody {
            version: cocoon_receipt::RECEIPT_VERSION,
            request_id: format!("req-{r}"),
            request_sha256: digest::sha256_hex(request),
            stream: true,
            answer_sha256,
            content_sha256: None,
            response_id: format!("chatcmpl-{r}"),
            model: "m".into(),
            model_hash: None,
            usage: usage.into(),
            worker: "w".into(),
            worker_certificate_sha256: String::new(),
            tee: None,
            image_hash: None,
            coefficient: 1000,
            prices: Some(prices),
            cost_nanoton: Some(charge.client.get()),
            worker_fee_nanoton: Some(charge.worker.get()),
            proxy: ProxyIdentity {
                name: "p".into(),
                contract: None,
            },
            started_at_ms: now * 1000,
            finished_at_ms: now * 1000 + 5,
        }
    };

    // One row per batch size: how many receipts share a signature (the
    // answers a busy worker finishes while it signs another batch) and, at
    // the client, one verification (the client receives them all).
    let mut rows = Vec::new();
    for batch in [1u32, 2, 4, 8, 16, 32, 64] {
        let mut receipts = Vec::with_capacity(ROUNDS as usize);
        let t = Instant::now();
        for group in 0..ROUNDS / batch {
            let prepared = (0..batch)
                .map(|i| {
                    let mut d = digest::StreamDigest::default();
                    for c in &chunks {
                        d.push(c);
                    }
                    signer
                        .prepare(body(group * batch + i, d.finish()))
                        .expect("a well-formed body")
                })
                .collect();
            receipts.extend(
                signer
                    .sign_batch(prepared)
                    .iter()
                    .map(SignedReceipt::to_json),
            );
        }
        let worker_us = t.elapsed().as_secs_f64() * 1e6 / receipts.len() as f64;

        let t = Instant::now();
        for json in &receipts {
            let mut d = digest::StreamDigest::default();
            for c in &chunks {
                d.push(c);
            }
            let signed = SignedReceipt::from_json(json).expect("parses");
            identity.check(&signed).expect("checks");
            signed
                .receipt
                .expect_request(&digest::sha256_hex(request))
                .expect("request");
            signed.receipt.expect_answer(&d.finish()).expect("answer");
            signed.receipt.expect_usage(usage).expect("usage");
        }
        let client_us = t.elapsed().as_secs_f64() * 1e6 / receipts.len() as f64;
        rows.push((batch, worker_us, client_us));
    }

    // Where the rest goes, per receipt: what does not shrink with batching.
    let parts = {
        let mut d = digest::StreamDigest::default();
        let t = Instant::now();
        for _ in 0..ROUNDS {
            let mut d = digest::StreamDigest::default();
            for c in &chunks {
                d.push(c);
            }
            std::hint::black_box(d.finish());
        }
        let stream_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
        for c in &chunks {
            d.push(c);
        }
        let unsigned = body(1, d.finish());
        let signed = signer
            .sign_batch(vec![signer.prepare(unsigned.clone()).expect("prepares")])
            .pop()
            .expect("one receipt");
        let json = signed.to_json();
        let time = |f: &mut dyn FnMut()| {
            let t = Instant::now();
            for _ in 0..ROUNDS {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS)
        };
        [
            ("hash the stream (each end)", stream_us),
            (
                "worker: build and hash the facts",
                time(&mut || {
                    std::hint::black_box(signer.prepare(unsigned.clone()).expect("prepares"));
                }),
            ),
            (
                "worker: encode",
                time(&mut || {
                    std::hint::black_box(signed.to_json());
                }),
            ),
            (
                "client: parse",
                time(&mut || {
                    std::hint::black_box(SignedReceipt::from_json(&json).expect("parses"));
                }),
            ),
            (
                "client: hash the facts",
                time(&mut || {
                    std::hint::black_box(signed.signed_message().expect("hashes"));
                }),
            ),
        ]
    };

    // Deterministic requests (temperature 0 or a seed) also carry the
    // answer's content digest: one JSON parse per chunk, in the worker.
    let t = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(digest::content(true, &chunks));
    }
    let content_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);

    println!("# Receipt CPU per request ({ROUNDS} requests, 50 chunks of ~128 bytes, one core)\n");
    println!("worker: hash chunks, build, hash facts, sign (once per batch), encode;");
    println!("client: hash chunks, parse, check facts and signature (once per batch).\n");
    println!("| receipts per signature | worker µs | client µs | total µs (target ≤ 50) |");
    println!("|---|---|---|---|");
    for (batch, worker_us, client_us) in rows {
        println!(
            "| {batch} | {worker_us:.1} | {client_us:.1} | {:.1} |",
            worker_us + client_us
        );
    }
    println!("\nOf which, per receipt whatever the batch:\n");
    println!("| part | µs |");
    println!("|---|---|");
    for (part, us) in parts {
        println!("| {part} | {us:.1} |");
    }
    println!("\nWorker, deterministic requests only: content digest {content_us:.1} µs.");
    println!("Once per worker certificate (sim evidence), in the client: {cert_us:.1} µs.");
}
