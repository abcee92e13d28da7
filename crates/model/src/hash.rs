use std::io::Read;
use std::path::Path;

use cocoon_core::ModelHash;

/// A file that could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read model file {path}: {reason}")]
pub struct HashError {
    /// The file.
    pub path: String,
    /// The OS error.
    pub reason: std::io::Error,
}

/// SHA-256 of a file, read in 1 MiB blocks; `progress` is told the bytes
/// read so far.
pub fn hash_file(path: &Path, mut progress: impl FnMut(u64)) -> Result<ModelHash, HashError> {
    let err = |reason| HashError {
        path: path.display().to_string(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(err)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        done += n as u64;
        progress(done);
    }
    Ok(digest_to_hash(ctx.finish()))
}

pub(crate) fn digest_to_hash(d: ring::digest::Digest) -> ModelHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    ModelHash::from_bytes(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_like_sha256sum() {
        let dir = std::env::temp_dir().join(format!("cocoon-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x");
        std::fs::write(&f, b"abc").unwrap();
        let mut seen = 0;
        let h = hash_file(&f, |n| seen = n).unwrap();
        assert_eq!(
            h.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(seen, 3);
        assert!(hash_file(&dir.join("missing"), |_| {})
            .unwrap_err()
            .to_string()
            .contains("missing"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
