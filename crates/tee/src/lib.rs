//! TEE evidence and its verification.
//!
//! This first part verifies Intel TDX DCAP quotes (v4 and v5, TD 1.0 and TD
//! 1.5 bodies) with `dcap-qvl` against collateral, and computes the image
//! hash that identifies the code a TD runs. AMD SEV-SNP, the sim TEE,
//! attesters, policies and RA-TLS build on this.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod image;
pub mod snp;
pub mod tdx;

pub use image::ImageHash;
