use std::fmt;

/// Identity of the code a TEE runs: SHA-256 over its measurement registers
/// only, never over report data (which binds a key, not code).
///
/// TDX: SHA-256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ RTMR3), 5 × 48 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageHash([u8; 32]);

impl ImageHash {
    /// SHA-256 over the given registers, in order.
    pub(crate) fn over(registers: &[&[u8]]) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for r in registers {
            ctx.update(r);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        ImageHash(out)
    }

    /// What an open-tier worker's "image" is: nothing measured it, so it
    /// is the hash of no registers at all, which no TEE reports.
    pub fn unmeasured() -> Self {
        ImageHash::over(&[b"cocoon/unmeasured/v1"])
    }

    /// The digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ImageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageHash({self})")
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an image hash is 64 hexadecimal digits (SHA-256), found {0:?}")]
pub struct ImageHashError(pub String);

impl std::str::FromStr for ImageHash {
    type Err = ImageHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| ImageHashError(s.chars().take(80).collect()))?;
        Ok(ImageHash(out))
    }
}
