//! GPU evidence in RA-TLS certificates, and its verification under a
//! node's [`Policy`].
//!
//! A certificate's GPU evidence answers a nonce derived from the
//! certificate's claims ([`crate::nvidia::claims_nonce`]): the claims name
//! the certificate's key, so a report made for one certificate cannot be
//! moved to another, and the TEE quote over the same claims says the code
//! that asked for the report is the attested image.

use crate::nvidia::{self, GpuError, VerifiedGpu};
use crate::policy::Policy;
use crate::x509;

/// Most GPUs one certificate may carry evidence for.
pub const MAX_GPUS: usize = 16;

/// Domain of the sim root's endorsement of a sim GPU root certificate.
pub(crate) const SIM_ENDORSEMENT_DOMAIN: &[u8] = b"cocoon/sim-gpu-root/v1\0";

/// One GPU's evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuEvidence {
    /// An NVIDIA Hopper or Blackwell GPU in confidential-computing mode:
    /// its SPDM measurements report and PEM chain, leaf first.
    Nvidia {
        /// The report as the driver returns it (request ‖ response).
        report: Vec<u8>,
        /// The certificate chain to NVIDIA's Device Identity CA.
        chain: Vec<u8>,
    },
    /// The simulated GPU: a report in NVIDIA's format under a chain whose
    /// root certificate a sim TEE root endorses. Development only: it
    /// proves nothing about hardware.
    Sim {
        /// The report.
        report: Vec<u8>,
        /// The chain, ending at the sim GPU root certificate.
        chain: Vec<u8>,
        /// The sim TEE root (Ed25519) that endorses the chain's root.
        sim_root: [u8; 32],
        /// Its signature over the domain and the root certificate's DER.
        endorsement: [u8; 64],
    },
}

const LIST_VERSION: u8 = 1;

impl GpuEvidence {
    fn tag(&self) -> u8 {
        match self {
            GpuEvidence::Nvidia { .. } => 1,
            GpuEvidence::Sim { .. } => 2,
        }
    }

    fn fields(&self) -> Vec<&[u8]> {
        match self {
            GpuEvidence::Nvidia { report, chain } => vec![report, chain],
            GpuEvidence::Sim {
                report,
                chain,
                sim_root,
                endorsement,
            } => vec![report, chain, sim_root, endorsement],
        }
    }

    /// Encoding: version, count, then for each GPU its kind tag and each
    /// field as a 4-byte big-endian length and its bytes.
    pub fn encode_list(list: &[GpuEvidence]) -> Vec<u8> {
        let mut out = vec![LIST_VERSION, list.len().min(usize::from(u8::MAX)) as u8];
        for ev in list.iter().take(usize::from(u8::MAX)) {
            out.push(ev.tag());
            for f in ev.fields() {
                out.extend_from_slice(&(f.len() as u32).to_be_bytes());
                out.extend_from_slice(f);
            }
        }
        out
    }

    /// Strict inverse of [`GpuEvidence::encode_list`].
    pub fn decode_list(bytes: &[u8]) -> Result<Vec<GpuEvidence>, String> {
        let [version, count, rest @ ..] = bytes else {
            return Err(format!("{} bytes, too short", bytes.len()));
        };
        if *version != LIST_VERSION {
            return Err(format!(
                "version {version}, this verifier reads {LIST_VERSION}"
            ));
        }
        if usize::from(*count) > MAX_GPUS {
            return Err(format!("{count} GPUs, at most {MAX_GPUS} are read"));
        }
        let mut r = Fields(rest);
        let mut out = Vec::with_capacity(usize::from(*count));
        for _ in 0..*count {
            out.push(match r.tag()? {
                1 => GpuEvidence::Nvidia {
                    report: r.next("report")?,
                    chain: r.next("chain")?,
                },
                2 => GpuEvidence::Sim {
                    report: r.next("report")?,
                    chain: r.next("chain")?,
                    sim_root: fixed(r.next("sim root")?, "sim root")?,
                    endorsement: fixed(r.next("endorsement")?, "endorsement")?,
                },
                other => return Err(format!("unknown GPU evidence kind {other}")),
            });
        }
        if !r.0.is_empty() {
            return Err(format!("{} trailing bytes", r.0.len()));
        }
        Ok(out)
    }
}

/// The unread rest of an encoding.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn tag(&mut self) -> Result<u8, String> {
        let (tag, tail) = self
            .0
            .split_first()
            .ok_or_else(|| "GPU kind missing".to_owned())?;
        self.0 = tail;
        Ok(*tag)
    }

    fn next(&mut self, name: &str) -> Result<Vec<u8>, String> {
        let (len, tail) = self
            .0
            .split_first_chunk::<4>()
            .ok_or_else(|| format!("{name}: length missing"))?;
        let n = u32::from_be_bytes(*len) as usize;
        if tail.len() < n {
            return Err(format!(
                "{name}: {n} bytes announced, {} present",
                tail.len()
            ));
        }
        let (v, tail) = tail.split_at(n);
        self.0 = tail;
        Ok(v.to_vec())
    }
}

fn fixed<const N: usize>(v: Vec<u8>, name: &str) -> Result<[u8; N], String> {
    let len = v.len();
    v.try_into()
        .map_err(|_| format!("{name} is {len} bytes, expected {N}"))
}

/// Verifies a certificate's GPU evidence under `policy`, at `at`.
///
/// Without a `[gpu]` section the policy trusts no GPU evidence: it is not
/// checked and the peer counts as having no attested GPU. With one, every
/// piece must verify (chain, signature, the nonce of these claims, the
/// policy's golden values), or the peer is refused: evidence that fails is
/// a forgery or a misconfiguration, and either must be seen.
pub fn verify_all(
    evidence: &[GpuEvidence],
    claims_encoding: &[u8],
    policy: &Policy,
    at: u64,
) -> Result<Vec<VerifiedGpu>, GpuError> {
    let Some(gpu_policy) = &policy.gpu else {
        return Ok(Vec::new());
    };
    let nonce = nvidia::claims_nonce(claims_encoding);
    evidence
        .iter()
        .map(|ev| {
            let gpu = verify_one(ev, policy, at)?;
            gpu.check_nonce(&nonce)?;
            gpu_policy.check(&gpu)?;
            Ok(gpu)
        })
        .collect()
}

fn verify_one(ev: &GpuEvidence, policy: &Policy, at: u64) -> Result<VerifiedGpu, GpuError> {
    match ev {
        GpuEvidence::Nvidia { report, chain } => nvidia::verify(report, chain, at),
        GpuEvidence::Sim {
            report,
            chain,
            sim_root,
            endorsement,
        } => {
            if !policy.accepts_sim() || !policy.sim_roots.contains(sim_root) {
                return Err(GpuError::Chain(format!(
                    "simulated GPU endorsed by sim root {}, which this policy does not trust",
                    hex::encode(sim_root)
                )));
            }
            let certs = x509::read_bundle(chain).map_err(GpuError::Certificate)?;
            let root = certs
                .last()
                .ok_or_else(|| GpuError::Chain("empty chain".into()))?;
            let der = x509::cert_der(root).map_err(GpuError::Certificate)?;
            let message = [SIM_ENDORSEMENT_DOMAIN, &der].concat();
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, sim_root)
                .verify(&message, endorsement)
                .map_err(|_| {
                    GpuError::Chain(
                        "the sim root's endorsement of the GPU root does not verify".into(),
                    )
                })?;
            let mut gpu = nvidia::verify_under(report, chain, at, root)?;
            gpu.simulated = true;
            Ok(gpu)
        }
    }
}
