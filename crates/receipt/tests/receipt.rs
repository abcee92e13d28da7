//! Receipts signed with a sim-attested worker certificate (the sim TEE is
//! the only one that can mint evidence on this machine) and checked the
//! way clients and `cocoon receipt verify` check them.

use std::collections::BTreeSet;

use cocoon_core::{BasisPoints, ModelHash, Nanoton, PriceList, Role};
use cocoon_receipt::{
    digest, ProxyIdentity, ReceiptBody, ReceiptError, ReceiptSigner, ReceiptUsage, SignedReceipt,
    WorkerIdentity,
};
use cocoon_tee::policy::DEFAULT_MAX_CERT_AGE_SECS;
use cocoon_tee::sim::SimRoot;
use cocoon_tee::{Claims, Policy, RaTlsVerifier, SimAttester, TcbStatus, TeeKind};

const NOW: u64 = 1_790_000_000;
const MODEL: [u8; 32] = [7; 32];

struct Worker {
    signer: ReceiptSigner,
    verifier: RaTlsVerifier,
    der: Vec<u8>,
    /// The certificate's own key, which signed receipts before version 4.
    cert_pkcs8: Vec<u8>,
}

/// A fresh Ed25519 key: PKCS#8 and its public half.
fn key() -> (Vec<u8>, [u8; 32]) {
    use ring::signature::KeyPair;
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec();
    let public = ring::signature::Ed25519KeyPair::from_pkcs8(&pkcs8)
        .unwrap()
        .public_key()
        .as_ref()
        .try_into()
        .unwrap();
    (pkcs8, public)
}

/// A worker certificate's claims, naming `receipt_key` (or none, as
/// workers did before receipts of version 4).
fn claims(receipt_key: Option<[u8; 32]>) -> Claims {
    Claims {
        public_key: [0; 32],
        role: Role::Worker,
        issued_at: NOW - 10,
        expires_at: NOW + 3600,
        config_hash: [0; 32],
        model_hash: Some(ModelHash::from_bytes(MODEL)),
        receipt_key,
        e2e_key: None,
        region: None,
    }
}

fn worker(dir: &std::path::Path, image: u8) -> Worker {
    let attester = SimAttester::new(SimRoot::load_or_create(dir).unwrap(), [image; 48]);
    let policy = Policy {
        kinds: [TeeKind::Sim].into(),
        images: [(
            Role::Worker,
            BTreeSet::from([
                SimAttester::new(SimRoot::load_or_create(dir).unwrap(), [1; 48]).image_hash(),
            ]),
        )]
        .into(),
        min_tcb: TcbStatus::UpToDate,
        max_cert_age_secs: DEFAULT_MAX_CERT_AGE_SECS,
        required_claims: Default::default(),
        sim_roots: vec![attester.root_public_key()],
        gpu: None,
        open: None,
    };
    let (receipt_pkcs8, receipt_key) = key();
    let minted = cocoon_tee::cert::mint(claims(Some(receipt_key)), &attester).unwrap();
    let verifier = RaTlsVerifier::new(policy, None);
    let (kind, image) = verifier.inspect_own(&minted.der, NOW).unwrap();
    let signer =
        ReceiptSigner::new(minted.der.clone(), &receipt_pkcs8, Some(kind), Some(image)).unwrap();
    assert!(
        ReceiptSigner::new(minted.der.clone(), &minted.pkcs8, None, None).is_err(),
        "only the receipt key the claims name signs receipts"
    );
    Worker {
        signer,
        verifier,
        der: minted.der,
        cert_pkcs8: minted.pkcs8,
    }
}

fn prices() -> PriceList {
    let bp = |v| BasisPoints::new(v).unwrap();
    PriceList::new(
        Nanoton::new(20),
        Nanoton::new(15),
        [bp(10_000), bp(2_500), bp(20_000), bp(15_000)],
    )
    .unwrap()
}

fn body(answer: &str) -> ReceiptBody {
    let usage = ReceiptUsage {
        prompt_tokens: 10,
        cached_tokens: 4,
        completion_tokens: 5,
        reasoning_tokens: 0,
    };
    let charge = prices()
        .cost(&usage.into(), cocoon_core::Coefficient::ONE)
        .unwrap();
    ReceiptBody {
        version: 0,
        request_id: "req-1".into(),
        request_sha256: digest::sha256_hex(b"{\"model\":\"m\"}"),
        stream: false,
        answer_sha256: digest::whole_answer(answer.as_bytes()),
        content_sha256: Some(digest::content(false, &[answer])),
        response_id: "chatcmpl-1".into(),
        model: "m".into(),
        model_hash: Some(hex::encode(MODEL)),
        usage,
        worker: "w1".into(),
        worker_certificate_sha256: String::new(),
        tee: None,
        image_hash: None,
        coefficient: 1000,
        prices: Some(prices()),
        cost_nanoton: Some(charge.client.get()),
        worker_fee_nanoton: Some(charge.worker.get()),
        proxy: ProxyIdentity {
            name: "p".into(),
            contract: None,
        },
        started_at_ms: NOW * 1000,
        finished_at_ms: NOW * 1000 + 250,
    }
}

#[test]
fn a_signed_receipt_verifies_after_a_trip_through_json_and_names_what_ran() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), 1);
    let answer = r#"{"id":"chatcmpl-1","choices":[{"message":{"content":"hello"}}]}"#;
    let signed = w.signer.sign(body(answer)).unwrap();
    assert_eq!(signed.receipt.tee.as_deref(), Some("sim"));
    assert_eq!(
        signed.receipt.worker_certificate_sha256,
        digest::sha256_hex(&w.der)
    );
    // Through a JSON value, as when it is a member of an answer.
    let v: serde_json::Value = serde_json::from_slice(&signed.to_json()).unwrap();
    let back = SignedReceipt::from_value(&v).unwrap();
    let id = WorkerIdentity::verify(&w.der, &w.verifier, NOW + 1).unwrap();
    id.check(&back).unwrap();
    back.receipt
        .expect_answer(&digest::whole_answer(answer.as_bytes()))
        .unwrap();
    assert_eq!(
        id.attestation().image_hash.to_string(),
        back.receipt.image_hash.clone().unwrap()
    );
}

#[test]
fn every_tampering_is_caught_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), 1);
    let answer = r#"{"id":"chatcmpl-1","choices":[{"message":{"content":"hello"}}]}"#;
    let signed = w.signer.sign(body(answer)).unwrap();
    let id = WorkerIdentity::verify(&w.der, &w.verifier, NOW).unwrap();

    // Any signed member changed: the signature fails.
    let mut more_tokens = signed.clone();
    more_tokens.receipt.usage.completion_tokens += 1;
    assert!(matches!(
        id.check(&more_tokens),
        Err(ReceiptError::Signature { .. })
    ));
    let mut other_model = signed.clone();
    other_model.receipt.model = "bigger-model".into();
    assert!(matches!(
        id.check(&other_model),
        Err(ReceiptError::Signature { .. })
    ));
    let mut bad_sig = signed.clone();
    bad_sig.signature.replace_range(
        0..2,
        if bad_sig.signature.starts_with("00") {
            "01"
        } else {
            "00"
        },
    );
    assert!(matches!(
        id.check(&bad_sig),
        Err(ReceiptError::Signature { .. })
    ));

    // Another answer than the one signed.
    let altered = r#"{"id":"chatcmpl-1","choices":[{"message":{"content":"hellO"}}]}"#;
    let e = signed
        .receipt
        .expect_answer(&digest::whole_answer(altered.as_bytes()))
        .unwrap_err();
    assert!(e.to_string().starts_with("answer_sha256:"), "{e}");

    // Another worker's certificate.
    let other_dir = tempfile::tempdir().unwrap();
    let other = worker(other_dir.path(), 1);
    let other_id = WorkerIdentity::verify(&other.der, &other.verifier, NOW).unwrap();
    assert!(matches!(
        other_id.check(&signed),
        Err(ReceiptError::CertificateMismatch { .. })
    ));

    // A signer that lies about its price arithmetic signs a receipt that
    // still fails.
    let mut cheap = body(answer);
    cheap.cost_nanoton = Some(1);
    let e = id.check(&w.signer.sign(cheap).unwrap()).unwrap_err();
    assert!(e.to_string().starts_with("cost_nanoton:"), "{e}");

    // A receipt dated outside its certificate's validity.
    let mut late = body(answer);
    late.finished_at_ms = (NOW + 7200) * 1000;
    let e = id.check(&w.signer.sign(late).unwrap()).unwrap_err();
    assert!(e.to_string().starts_with("finished_at_ms:"), "{e}");

    // Unknown members are refused, not ignored.
    let mut v: serde_json::Value = serde_json::from_slice(&signed.to_json()).unwrap();
    v["receipt"]["bonus"] = 1.into();
    assert!(matches!(
        SignedReceipt::from_value(&v),
        Err(ReceiptError::Malformed(_))
    ));
}

#[test]
fn a_worker_outside_the_policy_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // Image 2 is not the policy's image 1.
    let w = worker(dir.path(), 2);
    let e = WorkerIdentity::verify(&w.der, &w.verifier, NOW).unwrap_err();
    assert!(e.to_string().contains("image"), "{e}");
}

/// Slash evidence from three real signed receipts for one deterministic
/// request: what a proxy builds when one worker dissents, and what the
/// worker contract checks (contracts/test/slash.test.mjs runs the contract
/// on evidence built by this same code).
#[test]
fn three_signed_receipts_make_slash_evidence_only_when_one_worker_dissents() {
    use cocoon_receipt::evidence::{EvidenceError, SignedEvidence, SlashEvidence};
    use cocoon_receipt::SignedReceiptFacts;
    use ring::signature::KeyPair;

    let dir = tempfile::tempdir().unwrap();
    let honest = r#"{"id":"a","choices":[{"message":{"content":"hello"},"finish_reason":"stop"}]}"#;
    let wrong = r#"{"id":"b","choices":[{"message":{"content":"HELLO"},"finish_reason":"stop"}]}"#;
    let run = |answer: &str| {
        let w = worker(dir.path(), 1);
        let signed = w.signer.sign(body(answer)).unwrap();
        SignedReceiptFacts::of(&signed, w.signer.public_key()).unwrap()
    };
    let (accused, first, second) = (run(wrong), run(honest), run(honest));
    assert_ne!(accused.facts.content, first.facts.content);
    assert_eq!(first.facts.content, second.facts.content);

    let proxy = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[9; 32]).unwrap();
    let proxy_key: [u8; 32] = proxy.public_key().as_ref().try_into().unwrap();
    let sign = |h: &[u8; 32]| -> [u8; 64] { proxy.sign(h).as_ref().try_into().unwrap() };
    let evidence = |accused, first, second| SlashEvidence {
        worker: "0:1111111111111111111111111111111111111111111111111111111111111111"
            .parse()
            .unwrap(),
        client_owner: "0:2222222222222222222222222222222222222222222222222222222222222222"
            .parse()
            .unwrap(),
        expires_at: 1_800_000_000,
        accused,
        first,
        second,
    };

    let signed = SignedEvidence::sign(
        evidence(accused.clone(), first.clone(), second.clone()),
        sign,
    )
    .unwrap();
    let read = SignedEvidence::from_boc(&signed.to_boc().unwrap()).unwrap();
    assert_eq!(read, signed, "the cell round-trips");
    read.verify(&proxy_key).unwrap();
    assert!(matches!(
        read.verify(&[1; 32]),
        Err(EvidenceError::Signature(_))
    ));

    // The accused's content claimed to be something it did not sign.
    let mut lie = accused.clone();
    lie.facts.content = [0xee; 32];
    assert_eq!(
        SignedEvidence::sign(evidence(lie, first.clone(), second.clone()), sign).unwrap_err(),
        EvidenceError::ReceiptSignature("accused")
    );
    // An honest worker cannot be accused by honest witnesses.
    assert!(matches!(
        SignedEvidence::sign(evidence(first.clone(), second.clone(), first.clone()), sign),
        Err(EvidenceError::NotADissent(_))
    ));
    // Witnesses that disagree with each other prove nothing.
    assert!(matches!(
        SignedEvidence::sign(
            evidence(first.clone(), accused.clone(), second.clone()),
            sign
        ),
        Err(EvidenceError::NotADissent(_))
    ));
    // A receipt without a content digest (not deterministic) proves nothing.
    let w = worker(dir.path(), 1);
    let mut nondeterministic = body(wrong);
    nondeterministic.content_sha256 = None;
    let signed = w.signer.sign(nondeterministic).unwrap();
    let sampled = SignedReceiptFacts::of(&signed, w.signer.public_key()).unwrap();
    assert!(matches!(
        SignedEvidence::sign(evidence(sampled, first, second), sign),
        Err(EvidenceError::NotADissent(_))
    ));
}

/// Receipts signed together share one signature over their tree's root;
/// each still verifies alone, through JSON and as a TON cell, and none can
/// be moved, altered or claimed by another batch.
#[test]
fn receipts_signed_in_a_batch_each_verify_alone_and_resist_tampering() {
    use cocoon_receipt::SignedReceiptFacts;

    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), 1);
    let answers: Vec<String> = (0..5)
        .map(|i| {
            format!(r#"{{"id":"chatcmpl-{i}","choices":[{{"message":{{"content":"{i}"}}}}]}}"#)
        })
        .collect();
    let prepared = answers
        .iter()
        .map(|a| w.signer.prepare(body(a)).unwrap())
        .collect();
    let batch = w.signer.sign_batch(prepared);
    assert_eq!(batch.len(), 5);
    assert!(
        batch.iter().all(|r| r.signature == batch[0].signature),
        "one signature for the whole batch"
    );
    let id = WorkerIdentity::verify(&w.der, &w.verifier, NOW).unwrap();
    for (signed, answer) in batch.iter().zip(&answers) {
        // A fresh identity, as `cocoon receipt verify` checks one saved
        // receipt: nothing remembered from its batch-mates.
        let alone = WorkerIdentity::verify(&w.der, &w.verifier, NOW).unwrap();
        let back = SignedReceipt::from_json(&signed.to_json()).unwrap();
        assert_eq!(back.batch, signed.batch);
        alone.check(&back).unwrap();
        id.check(&back).unwrap();
        back.receipt
            .expect_answer(&digest::whole_answer(answer.as_bytes()))
            .unwrap();
        let facts = SignedReceiptFacts::of(&back, w.signer.public_key()).unwrap();
        let cell = facts.cell().unwrap();
        assert_eq!(SignedReceiptFacts::from_cell(cell.as_ref()).unwrap(), facts);
    }

    let signature_error = |r: &SignedReceipt| {
        let fresh = WorkerIdentity::verify(&w.der, &w.verifier, NOW).unwrap();
        matches!(fresh.check(r), Err(ReceiptError::Signature { .. }))
    };
    // Another receipt's body under this receipt's place in the tree.
    let mut swapped = batch[1].clone();
    swapped.receipt = batch[2].receipt.clone();
    assert!(signature_error(&swapped));
    // The right body at another index.
    let mut moved = batch[1].clone();
    moved.batch.as_mut().unwrap().index = 0;
    assert!(signature_error(&moved));
    // A sibling altered.
    let mut altered = batch[3].clone();
    altered.batch.as_mut().unwrap().path[0][5] ^= 0x10;
    assert!(signature_error(&altered));
    // The path dropped: the signature covers the root, not the leaf.
    let mut unbatched = batch[4].clone();
    unbatched.batch = None;
    assert!(signature_error(&unbatched));
    // The cached root does not vouch for a different signature.
    let mut resigned = batch[0].clone();
    resigned.signature = batch[0].signature.replace(&batch[0].signature[..2], "00");
    if resigned.signature == batch[0].signature {
        resigned.signature.replace_range(..2, "01");
    }
    assert!(matches!(
        id.check(&resigned),
        Err(ReceiptError::Signature { .. })
    ));
    // A version 2 receipt knows no batches.
    let mut old = batch[0].clone();
    old.receipt.version = 2;
    assert!(matches!(
        SignedReceipt::from_json(&old.to_json()),
        Err(ReceiptError::Malformed(m)) if m.contains("batch")
    ));
}

#[test]
fn version_3_receipts_verify_under_a_certificate_without_a_receipt_key_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), 1);
    let identity = WorkerIdentity::verify(&w.der, &w.verifier, NOW).unwrap();
    // What a worker of the earlier version signed: the body, labelled with
    // its version, signed with a certificate's own key.
    let by_cert_key = |der: &[u8], pkcs8: &[u8], version: u32| {
        let key = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8).unwrap();
        let mut signed = w.signer.sign(body("hello")).unwrap();
        signed.receipt.version = version;
        signed.receipt.worker_certificate_sha256 = digest::sha256_hex(der);
        let hash = SignedReceipt::facts_hash(&signed.receipt).unwrap();
        signed.signature = hex::encode(key.sign(&hash).as_ref());
        signed
    };
    // A certificate naming a receipt key signs nothing else, whatever the
    // version a receipt claims: an earlier version states no time and
    // could never be evidence.
    for version in [3, 4] {
        assert!(
            identity
                .check(&by_cert_key(&w.der, &w.cert_pkcs8, version))
                .is_err(),
            "version {version} under the certificate's own key"
        );
    }
    // A certificate of the earlier kind, with no receipt key, verifies
    // version 3 under its own key, and version 4 not at all.
    let attester = SimAttester::new(SimRoot::load_or_create(dir.path()).unwrap(), [1; 48]);
    let old = cocoon_tee::cert::mint(claims(None), &attester).unwrap();
    let old_identity = WorkerIdentity::verify(&old.der, &w.verifier, NOW).unwrap();
    old_identity
        .check(&by_cert_key(&old.der, &old.pkcs8, 3))
        .unwrap();
    assert!(old_identity
        .check(&by_cert_key(&old.der, &old.pkcs8, 4))
        .is_err());
    // Version 4 facts state the time; version 3 facts do not, so the two
    // hash differently and a signature cannot move between them.
    let v4 = w.signer.sign(body("hello")).unwrap();
    assert_eq!(v4.receipt.version, 4);
    identity.check(&v4).unwrap();
    let facts = cocoon_receipt::ReceiptFacts::of(&v4.receipt).unwrap();
    assert_eq!(facts.time, Some((NOW * 1000 + 250).div_euclid(1000) as u32));
    let mut as_v3 = v4.receipt.clone();
    as_v3.version = 3;
    assert_ne!(
        SignedReceipt::facts_hash(&as_v3).unwrap(),
        SignedReceipt::facts_hash(&v4.receipt).unwrap()
    );
}
