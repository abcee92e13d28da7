//! TEE evidence: producing it, verifying it, and binding it to TLS keys.
//!
//! - [`tdx`], [`snp`], [`sim`]: one verifier per TEE kind; [`evidence`]
//!   puts them behind one envelope and one `verify`.
//! - [`attester`]: evidence from configfs-tsm on a guest, or from the sim TEE.
//! - [`claims`], [`cert`]: RA-TLS certificates whose evidence is bound to
//!   their key and claims.
//! - [`policy`], [`ratls`]: which peers are acceptable, and the verifier
//!   that decides.
//!
//! The image hash identifies code: SHA-256 over measurement registers only
//! (TDX: MRTD, RTMR0-3; SEV-SNP: MEASUREMENT, HOST_DATA; sim: as TDX),
//! never over report data.

pub mod allowlist;
pub mod attester;
pub mod cert;
pub mod claims;
pub mod evidence;
pub mod gpu;
mod image;
pub mod keyfile;
pub mod nvidia;
pub mod nvml;
pub mod pccs;
pub mod policy;
pub mod ratls;
pub mod sim;
pub mod sim_gpu;
pub mod snp;
pub mod tdx;
mod x509;

pub use allowlist::ImageAllowList;
pub use attester::{Attester, ConfigfsTsm, GpuAttester, NoTee, SimAttester, WithGpus};
pub use claims::Claims;
pub use evidence::{Evidence, TcbStatus, TeeKind, VerifiedEvidence};
pub use image::{ImageHash, ImageHashError};
pub use policy::Policy;
pub use ratls::{Attested, PeerAttestation, RaTlsError, RaTlsVerifier};
