//! RA-TLS: a genuine certificate verifies, and each attack is refused with
//! the failed check named. Sim evidence stands in for hardware where the
//! attack is about the certificate; real TDX fixtures (../shared/fixtures)
//! are used where the attack is about the evidence.

use std::collections::BTreeSet;
use std::path::PathBuf;

use cocoon_core::{ModelHash, Role};
use cocoon_tee::cert::{self, assemble, CertParts};
use cocoon_tee::policy::{RequiredClaim, DEFAULT_MAX_CERT_AGE_SECS};
use cocoon_tee::sim::SimRoot;
use cocoon_tee::{
    Claims, Evidence, ImageHash, Policy, RaTlsError, RaTlsVerifier, SimAttester, TcbStatus, TeeKind,
};
use ring::signature::{Ed25519KeyPair, KeyPair};

const NOW: u64 = 1_795_478_400;

struct Fixture {
    root_dir: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let root_dir =
            std::env::temp_dir().join(format!("cocoon-ratls-{name}-{}", std::process::id()));
        Fixture { root_dir }
    }
    fn attester(&self, image: u8) -> SimAttester {
        SimAttester::new(
            SimRoot::load_or_create(&self.root_dir).unwrap(),
            [image; 48],
        )
    }
    fn policy(&self) -> Policy {
        let a = self.attester(1);
        let mut images = std::collections::BTreeMap::new();
        for role in [Role::Client, Role::Proxy, Role::Worker] {
            images.insert(role, BTreeSet::from([a.image_hash()]));
        }
        Policy {
            kinds: BTreeSet::from([TeeKind::Sim]),
            images,
            min_tcb: TcbStatus::UpToDate,
            max_cert_age_secs: DEFAULT_MAX_CERT_AGE_SECS,
            required_claims: BTreeSet::from([RequiredClaim::ModelHash]),
            sim_roots: vec![a.root_public_key()],
            gpu: None,
            open: None,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root_dir);
    }
}

fn claims(role: Role) -> Claims {
    Claims {
        public_key: [0; 32],
        role,
        issued_at: NOW - 10,
        expires_at: NOW + 3600,
        config_hash: [7; 32],
        model_hash: (role == Role::Worker).then(|| ModelHash::from_bytes([5; 32])),
        receipt_key: None,
        e2e_key: None,
        region: None,
    }
}

fn key() -> Ed25519KeyPair {
    let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap()
}

/// A certificate with the given key, claims and evidence, self-signed.
fn forge(key: &Ed25519KeyPair, claims: &Claims, evidence: &Evidence) -> Vec<u8> {
    assemble(&CertParts {
        key,
        issuer_cn: None,
        subject_cn: "cocoon-forged".into(),
        not_before: claims.issued_at,
        not_after: claims.expires_at,
        extensions: vec![
            (cert::claims_oid_der(), true, claims.encode()),
            (cert::evidence_oid_der(), true, evidence.encode()),
        ],
    })
}

fn refused(v: &RaTlsVerifier, der: &[u8], roles: &[Role], check: &str) -> String {
    match v.verify(der, roles, NOW) {
        Ok(a) => panic!("accepted, expected {check} to fail: {a:?}"),
        Err(e) => {
            assert_eq!(e.check(), check, "{e}");
            e.to_string()
        }
    }
}

#[test]
fn a_genuine_certificate_verifies_and_is_cached() {
    let f = Fixture::new("genuine");
    let v = RaTlsVerifier::new(f.policy(), None);
    let minted = cert::mint(claims(Role::Worker), &f.attester(1)).unwrap();
    let peer = v.verify(&minted.der, &[Role::Worker], NOW).unwrap();
    assert_eq!(peer.role, Role::Worker);
    assert_eq!(peer.kind, TeeKind::Sim);
    assert_eq!(peer.image_hash, f.attester(1).image_hash());
    assert_eq!(peer.model_hash, Some(ModelHash::from_bytes([5; 32])));
    v.verify(&minted.der, &[Role::Worker], NOW).unwrap();
    assert_eq!(v.cache_stats(), (1, 1));
}

#[test]
fn evidence_moved_to_another_key_is_refused() {
    let f = Fixture::new("moved");
    let v = RaTlsVerifier::new(f.policy(), None);
    let minted = cert::mint(claims(Role::Proxy), &f.attester(1)).unwrap();
    let stolen = cert::parse(&minted.der).unwrap().evidence;
    let k = key();
    let mut c = minted.claims.clone();
    c.public_key.copy_from_slice(k.public_key().as_ref());
    let err = refused(&v, &forge(&k, &c, &stolen), &[Role::Proxy], "binding");
    assert!(err.contains("another key"), "{err}");
}

#[test]
fn claims_edited_after_quoting_are_refused() {
    let f = Fixture::new("edited");
    let v = RaTlsVerifier::new(f.policy(), None);
    // The attacker holds the key, and re-signs with edited claims.
    let k = key();
    let mut c = claims(Role::Worker);
    c.public_key.copy_from_slice(k.public_key().as_ref());
    let evidence = f.attester(1).attest_for(&c);
    c.model_hash = Some(ModelHash::from_bytes([6; 32]));
    refused(&v, &forge(&k, &c, &evidence), &[Role::Worker], "binding");
}

trait AttestFor {
    fn attest_for(&self, c: &Claims) -> Evidence;
}
impl AttestFor for SimAttester {
    fn attest_for(&self, c: &Claims) -> Evidence {
        cocoon_tee::Attester::attest(self, &c.report_data()).unwrap()
    }
}

#[test]
fn a_certificate_for_another_role_is_refused() {
    let f = Fixture::new("role");
    let v = RaTlsVerifier::new(f.policy(), None);
    let client = cert::mint(claims(Role::Client), &f.attester(1)).unwrap();
    let err = refused(&v, &client.der, &[Role::Worker], "role");
    assert!(err.contains("peer claims client"), "{err}");
}

#[test]
fn an_image_not_on_the_allow_list_is_refused() {
    let f = Fixture::new("image");
    let v = RaTlsVerifier::new(f.policy(), None);
    let other = cert::mint(claims(Role::Worker), &f.attester(2)).unwrap();
    let err = refused(&v, &other.der, &[Role::Worker], "image_hash");
    assert!(
        err.contains(&f.attester(2).image_hash().to_string()),
        "{err}"
    );
}

#[test]
fn a_tcb_below_the_minimum_is_refused() {
    let f = Fixture::new("tcb");
    let v = RaTlsVerifier::new(f.policy(), None);
    let old = f.attester(1).with_tcb_status(TcbStatus::OutOfDate);
    let minted = cert::mint(claims(Role::Proxy), &old).unwrap();
    let err = refused(&v, &minted.der, &[Role::Proxy], "tcb_status");
    assert!(
        err.contains("OutOfDate is below the policy minimum UpToDate"),
        "{err}"
    );
}

#[test]
fn expired_and_replayed_certificates_are_refused() {
    let f = Fixture::new("expired");
    let v = RaTlsVerifier::new(f.policy(), None);
    let mut c = claims(Role::Proxy);
    (c.issued_at, c.expires_at) = (NOW - 600, NOW - 1);
    let expired = cert::mint(c, &f.attester(1)).unwrap();
    refused(&v, &expired.der, &[Role::Proxy], "validity");
    // Still within its validity, but older than the policy's maximum age.
    let mut c = claims(Role::Proxy);
    (c.issued_at, c.expires_at) = (NOW - DEFAULT_MAX_CERT_AGE_SECS - 1, NOW + 3600);
    let replayed = cert::mint(c, &f.attester(1)).unwrap();
    let err = refused(&v, &replayed.der, &[Role::Proxy], "certificate_age");
    assert!(err.contains("at most 7200s"), "{err}");
}

#[test]
fn sim_evidence_under_a_tdx_only_policy_is_refused() {
    let f = Fixture::new("simtdx");
    let mut p = f.policy();
    p.kinds = BTreeSet::from([TeeKind::Tdx]);
    let v = RaTlsVerifier::new(p, None);
    let minted = cert::mint(claims(Role::Proxy), &f.attester(1)).unwrap();
    let err = refused(&v, &minted.der, &[Role::Proxy], "tee_kind");
    assert!(
        err.contains("sim is not accepted (policy accepts tdx)"),
        "{err}"
    );
}

#[test]
fn sim_evidence_from_an_untrusted_root_is_refused() {
    let f = Fixture::new("simroot");
    let other = Fixture::new("simroot-other");
    let v = RaTlsVerifier::new(f.policy(), None);
    let minted = cert::mint(claims(Role::Proxy), &other.attester(1)).unwrap();
    let err = refused(&v, &minted.der, &[Role::Proxy], "evidence");
    assert!(err.contains("does not trust"), "{err}");
}

#[test]
fn an_unknown_critical_extension_is_refused() {
    let f = Fixture::new("critical");
    let v = RaTlsVerifier::new(f.policy(), None);
    let k = key();
    let mut c = claims(Role::Proxy);
    c.public_key.copy_from_slice(k.public_key().as_ref());
    let evidence = f.attester(1).attest_for(&c);
    let der = assemble(&CertParts {
        key: &k,
        issuer_cn: None,
        subject_cn: "cocoon-proxy".into(),
        not_before: c.issued_at,
        not_after: c.expires_at,
        extensions: vec![
            (cert::claims_oid_der(), true, c.encode()),
            (cert::evidence_oid_der(), true, evidence.encode()),
            (vec![0x2a, 0x03, 0x04], true, vec![0x05, 0x00]), // 1.2.3.4
        ],
    });
    let err = refused(&v, &der, &[Role::Proxy], "certificate");
    assert!(err.contains("unknown critical extension 1.2.3.4"), "{err}");
    // The genuine parts, with nothing added, verify.
    v.verify(&forge(&k, &c, &evidence), &[Role::Proxy], NOW)
        .unwrap();
}

#[test]
fn a_certificate_issued_by_another_key_is_refused() {
    let f = Fixture::new("chain");
    let v = RaTlsVerifier::new(f.policy(), None);
    let k = key();
    let mut c = claims(Role::Proxy);
    c.public_key.copy_from_slice(k.public_key().as_ref());
    let evidence = f.attester(1).attest_for(&c);
    let der = assemble(&CertParts {
        key: &k,
        issuer_cn: Some("Some CA".into()),
        subject_cn: "cocoon-proxy".into(),
        not_before: c.issued_at,
        not_after: c.expires_at,
        extensions: vec![
            (cert::claims_oid_der(), true, c.encode()),
            (cert::evidence_oid_der(), true, evidence.encode()),
        ],
    });
    let err = refused(&v, &der, &[Role::Proxy], "certificate");
    assert!(err.contains("not self-signed"), "{err}");
    // Flipping a byte of the signed part breaks the certificate's own signature.
    let mut bad = forge(&k, &c, &evidence);
    let at = bad.len() / 2;
    bad[at] ^= 1;
    assert!(v.verify(&bad, &[Role::Proxy], NOW).is_err());
}

#[test]
fn missing_evidence_and_missing_claims_are_refused() {
    let f = Fixture::new("missing");
    let v = RaTlsVerifier::new(f.policy(), None);
    let k = key();
    let mut c = claims(Role::Worker);
    c.public_key.copy_from_slice(k.public_key().as_ref());
    let no_evidence = assemble(&CertParts {
        key: &k,
        issuer_cn: None,
        subject_cn: "cocoon-worker".into(),
        not_before: c.issued_at,
        not_after: c.expires_at,
        extensions: vec![(cert::claims_oid_der(), true, c.encode())],
    });
    let err = refused(&v, &no_evidence, &[Role::Worker], "certificate");
    assert!(err.contains("missing evidence extension"), "{err}");
    // A worker that does not name its model, under a policy requiring it.
    let mut c = claims(Role::Worker);
    c.model_hash = None;
    let minted = cert::mint(c, &f.attester(1)).unwrap();
    refused(&v, &minted.der, &[Role::Worker], "claims");
}

fn tdx_fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../../shared/fixtures/tee/tdx")
    .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Verifies a certificate carrying real TDX evidence at the fixture's time.
fn tdx_verdict(quote: &str, collateral: &str, at: u64) -> RaTlsError {
    let k = key();
    let mut c = claims(Role::Proxy);
    (c.issued_at, c.expires_at) = (at - 10, at + 3600);
    c.public_key.copy_from_slice(k.public_key().as_ref());
    let evidence = Evidence::Tdx {
        quote: tdx_fixture(quote),
        collateral: Some(tdx_fixture(collateral)),
    };
    let mut images = std::collections::BTreeMap::new();
    images.insert(
        Role::Proxy,
        BTreeSet::from(["00".repeat(32).parse::<ImageHash>().unwrap()]),
    );
    let policy = Policy {
        kinds: BTreeSet::from([TeeKind::Tdx]),
        images,
        min_tcb: TcbStatus::UpToDate,
        max_cert_age_secs: DEFAULT_MAX_CERT_AGE_SECS,
        required_claims: BTreeSet::new(),
        sim_roots: vec![],
        gpu: None,
        open: None,
    };
    RaTlsVerifier::new(policy, None)
        .verify(&forge(&k, &c, &evidence), &[Role::Proxy], at)
        .unwrap_err()
}

#[test]
fn a_real_tdx_quote_for_another_key_is_refused_on_the_binding() {
    // The quote verifies (signature, chain, TCB), but its report data was
    // never SHA-512 of these claims.
    let err = tdx_verdict("tdx_quote", "tdx_quote_collateral.json", 1_752_919_234);
    assert_eq!(err.check(), "binding", "{err}");
}

#[test]
fn tdx_collateral_for_another_fmspc_is_refused() {
    // tdx_quote's PCK certificate is for FMSPC B0C06F000000; this
    // collateral is for 90C06F000000 (and valid at this time).
    let err = tdx_verdict(
        "tdx_quote",
        "tdx_quote_outdated_collateral.json",
        1_774_003_274,
    );
    assert_eq!(err.check(), "evidence", "{err}");
    let text = err.to_string().to_lowercase();
    assert!(text.contains("fmspc"), "{err}");
}

/// A worker whose certificates carry its sim GPU's evidence.
fn with_gpu(f: &Fixture) -> cocoon_tee::WithGpus {
    let root = SimRoot::load_or_create(&f.root_dir).unwrap();
    cocoon_tee::WithGpus {
        tee: std::sync::Arc::new(f.attester(1)),
        gpus: std::sync::Arc::new(cocoon_tee::sim_gpu::SimGpu::new(&root)),
    }
}

fn unpinned_gpu_policy(f: &Fixture) -> Policy {
    Policy {
        gpu: Some(cocoon_tee::nvidia::GpuPolicy::default()),
        ..f.policy()
    }
}

#[test]
fn gpu_evidence_counts_only_under_a_gpu_policy_and_names_its_region() {
    let f = Fixture::new("gpu");
    let mut c = claims(Role::Worker);
    c.region = Some(cocoon_core::Region::new("eu-west").unwrap());
    let minted = cert::mint(c, &with_gpu(&f)).unwrap();
    let without = RaTlsVerifier::new(f.policy(), None);
    let peer = without.verify(&minted.der, &[Role::Worker], NOW).unwrap();
    assert!(
        peer.gpus.is_empty(),
        "GPU evidence counted without a [gpu] policy"
    );
    assert_eq!(peer.region.as_ref().map(|r| r.as_str()), Some("eu-west"));
    let with = RaTlsVerifier::new(unpinned_gpu_policy(&f), None);
    let peer = with.verify(&minted.der, &[Role::Worker], NOW).unwrap();
    assert_eq!(peer.gpus.len(), 1);
    assert!(peer.gpus[0].simulated);
    assert_eq!(peer.gpus[0].describe(), "sim hopper GH100 A01");
}

#[test]
fn gpu_evidence_moved_to_another_certificate_or_off_policy_is_refused() {
    let f = Fixture::new("gpu-moved");
    let v = RaTlsVerifier::new(unpinned_gpu_policy(&f), None);
    let minted = cert::mint(claims(Role::Worker), &with_gpu(&f)).unwrap();
    let gpus = cert::parse(&minted.der).unwrap().gpus;
    // Another key, the same GPU report: the report answers the first
    // certificate's nonce.
    let other = cert::mint(claims(Role::Worker), &f.attester(1)).unwrap();
    let parsed = cert::parse(&other.der).unwrap();
    let key = Ed25519KeyPair::from_pkcs8(&other.pkcs8).unwrap();
    let moved = assemble(&CertParts {
        key: &key,
        issuer_cn: None,
        subject_cn: "cocoon-worker".into(),
        not_before: parsed.claims.issued_at,
        not_after: parsed.claims.expires_at,
        extensions: vec![
            (cert::claims_oid_der(), true, parsed.claims.encode()),
            (cert::evidence_oid_der(), true, parsed.evidence.encode()),
            (
                cert::gpu_evidence_oid_der(),
                true,
                cocoon_tee::gpu::GpuEvidence::encode_list(&gpus),
            ),
        ],
    });
    let msg = refused(&v, &moved, &[Role::Worker], "gpu");
    assert!(msg.contains("nonce"), "{msg}");
    // Golden values the sim GPU does not have.
    let mut pinned = unpinned_gpu_policy(&f);
    if let Some(g) = pinned.gpu.as_mut() {
        g.measurements.insert(1, vec![vec![0; 48]]);
    }
    let v = RaTlsVerifier::new(pinned, None);
    let msg = refused(&v, &minted.der, &[Role::Worker], "gpu");
    assert!(msg.contains("measurement 1"), "{msg}");
}
