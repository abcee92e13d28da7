//! TEE evidence as peers present it: TDX quotes, SEV-SNP reports, NVIDIA
//! GPU reports, and RA-TLS certificates with their claims, evidence and
//! GPU extensions.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use cocoon_core::Role;
use cocoon_tee::gpu::GpuEvidence;
use cocoon_tee::policy::DEFAULT_MAX_CERT_AGE_SECS;
use cocoon_tee::sim::SimRoot;
use cocoon_tee::{Claims, Evidence, Policy, RaTlsVerifier, SimAttester, TcbStatus, TeeKind};

use crate::fixtures;

/// The time RA-TLS certificates are judged at.
pub(crate) const RATLS_AT: u64 = 1_790_000_000;

/// The sim root every sim certificate in the targets and seeds chains to:
/// one per machine, made on first use.
pub(crate) fn sim_root() -> SimRoot {
    let dir = std::env::temp_dir().join("cocoon-fuzz-sim-root");
    SimRoot::load_or_create(&dir).expect("the fuzz sim root can be made in the temporary folder")
}

/// The attester of the image the sim policy allows.
pub(crate) fn sim_attester() -> SimAttester {
    SimAttester::new(sim_root(), [1; 48])
}

/// A verifier that accepts sim evidence of [`sim_attester`]'s image for
/// every role, without caching (each input is judged afresh).
pub(crate) fn sim_verifier() -> &'static RaTlsVerifier {
    static VERIFIER: OnceLock<RaTlsVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let a = sim_attester();
        let images = [Role::Client, Role::Proxy, Role::Worker]
            .into_iter()
            .map(|r| (r, BTreeSet::from([a.image_hash()])))
            .collect();
        let policy = Policy {
            kinds: BTreeSet::from([TeeKind::Sim]),
            images,
            min_tcb: TcbStatus::UpToDate,
            max_cert_age_secs: DEFAULT_MAX_CERT_AGE_SECS,
            required_claims: BTreeSet::new(),
            sim_roots: vec![a.root_public_key()],
            gpu: None,
            open: None,
        };
        RaTlsVerifier::new(policy, None).without_cache()
    })
}

/// A TDX quote checked against genuine collateral.
pub(crate) fn tdx_quote(data: &[u8]) -> bool {
    cocoon_tee::tdx::verify(data, fixtures::TDX_COLLATERAL, fixtures::TDX_AT).is_ok()
}

/// An SEV-SNP report checked against a genuine VCEK and AMD chain.
pub(crate) fn snp_report(data: &[u8]) -> bool {
    cocoon_tee::snp::verify(
        data,
        fixtures::SNP_VCEK,
        fixtures::SNP_CHAIN,
        fixtures::SNP_AT,
    )
    .is_ok()
}

/// An NVIDIA GPU's SPDM report checked against a genuine chain (selector
/// 0), or a chain read for a genuine report (otherwise).
pub(crate) fn nvidia_report(data: &[u8]) -> bool {
    let Some((select, rest)) = crate::selector(data) else {
        return false;
    };
    if select == 0 {
        cocoon_tee::nvidia::verify(rest, fixtures::GPU_CHAIN, fixtures::GPU_AT).is_ok()
    } else {
        cocoon_tee::nvidia::verify(&fixtures::gpu_report(), rest, fixtures::GPU_AT).is_ok()
    }
}

/// An RA-TLS certificate judged for any role (selector 0), or one of its
/// extensions alone: claims (1), evidence (2), GPU evidence (3).
pub(crate) fn ratls_cert(data: &[u8]) -> bool {
    let Some((select, rest)) = crate::selector(data) else {
        return false;
    };
    match select % 4 {
        0 => sim_verifier()
            .verify(rest, &[Role::Client, Role::Proxy, Role::Worker], RATLS_AT)
            .is_ok(),
        1 => match Claims::decode(rest) {
            Ok(c) => {
                assert_eq!(
                    Claims::decode(&c.encode()).ok(),
                    Some(c),
                    "claims round-trip"
                );
                true
            }
            Err(_) => false,
        },
        2 => Evidence::decode(rest).is_ok(),
        _ => GpuEvidence::decode_list(rest).is_ok(),
    }
}
