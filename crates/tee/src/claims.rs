//! What an RA-TLS certificate claims about its holder, and how those claims
//! are bound into TEE evidence.

use cocoon_core::{ModelHash, Region, Role};
use sha2::Digest;

/// Domain separation for the canonical encoding: a quote over these claims
/// cannot be confused with a quote over anything else.
const DOMAIN: &[u8] = b"cocoon/ra-tls/claims/v1\0";

/// The holder's claims. The TEE evidence's report data is SHA-512 of
/// [`Claims::encode`], so editing any claim, or moving the evidence to a
/// certificate with another key, breaks the binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The certificate's Ed25519 public key.
    pub public_key: [u8; 32],
    /// The node's role.
    pub role: Role,
    /// When the certificate was minted, UNIX seconds.
    pub issued_at: u64,
    /// When it stops being valid, UNIX seconds.
    pub expires_at: u64,
    /// SHA-256 of the node's effective configuration.
    pub config_hash: [u8; 32],
    /// For workers: the weights they serve.
    pub model_hash: Option<ModelHash>,
    /// For workers: the Ed25519 key that signs their receipts. It outlives
    /// certificates, so the worker's owner can register it in the worker
    /// contract, and slash evidence must carry a receipt signed by it.
    pub receipt_key: Option<[u8; 32]>,
    /// For workers: the X25519 key requests are sealed to end to end. It is
    /// made inside the TEE when the worker starts and never leaves it.
    pub e2e_key: Option<[u8; 32]>,
    /// For workers: the region its operator configured. Proves the image
    /// was configured for it, not where the hardware is.
    pub region: Option<Region>,
}

/// Tags of the optional keys at the end of the encoding, in order.
const RECEIPT_KEY_TAG: u8 = 1;
const E2E_KEY_TAG: u8 = 2;
/// Tag of the region, after the keys: `3 ‖ length (1 byte) ‖ name`.
const REGION_TAG: u8 = 3;

/// Claims that could not be decoded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("claims encoding: {0}")]
pub struct ClaimsDecodeError(String);

fn role_tag(role: Role) -> u8 {
    match role {
        Role::Client => 1,
        Role::Proxy => 2,
        Role::Worker => 3,
    }
}

impl Claims {
    /// Canonical encoding: domain ‖ role ‖ key ‖ issued_at ‖ expires_at
    /// (big-endian u64) ‖ config hash ‖ 0 or 1 ‖ model hash if 1, then,
    /// only when there is one, 1 ‖ receipt key, then, only when there is
    /// one, 2 ‖ end-to-end key, then, only when there is one, 3 ‖ length ‖
    /// region.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DOMAIN.len() + 147);
        out.extend_from_slice(DOMAIN);
        out.push(role_tag(self.role));
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.config_hash);
        match &self.model_hash {
            Some(m) => {
                out.push(1);
                out.extend_from_slice(m.as_bytes());
            }
            None => out.push(0),
        }
        for (tag, key) in [
            (RECEIPT_KEY_TAG, &self.receipt_key),
            (E2E_KEY_TAG, &self.e2e_key),
        ] {
            if let Some(k) = key {
                out.push(tag);
                out.extend_from_slice(k);
            }
        }
        if let Some(region) = &self.region {
            out.push(REGION_TAG);
            out.push(region.as_str().len() as u8);
            out.extend_from_slice(region.as_str().as_bytes());
        }
        out
    }

    /// Strict inverse of [`Claims::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ClaimsDecodeError> {
        let err = |m: &str| ClaimsDecodeError(m.to_owned());
        let body = bytes
            .strip_prefix(DOMAIN)
            .ok_or_else(|| err("does not start with the cocoon/ra-tls/claims/v1 domain"))?;
        if body.len() < 82 {
            return Err(ClaimsDecodeError(format!(
                "{} bytes after the domain, expected at least 82",
                body.len()
            )));
        }
        let role = match body[0] {
            1 => Role::Client,
            2 => Role::Proxy,
            3 => Role::Worker,
            other => return Err(ClaimsDecodeError(format!("unknown role tag {other}"))),
        };
        let take32 = |at: usize| -> [u8; 32] {
            let mut a = [0u8; 32];
            a.copy_from_slice(&body[at..at + 32]);
            a
        };
        let u64_at = |at: usize| -> u64 {
            let mut a = [0u8; 8];
            a.copy_from_slice(&body[at..at + 8]);
            u64::from_be_bytes(a)
        };
        let (model_hash, rest) = match body[81] {
            0 => (None, 82),
            1 if body.len() >= 114 => (Some(ModelHash::from_bytes(take32(82))), 114),
            flag => {
                return Err(ClaimsDecodeError(format!(
                    "model hash flag {flag} does not fit a {}-byte body",
                    body.len()
                )))
            }
        };
        let (receipt_key, e2e_key, region) = optional_keys(&body[rest..])?;
        Ok(Claims {
            public_key: take32(1),
            role,
            issued_at: u64_at(33),
            expires_at: u64_at(41),
            config_hash: take32(49),
            model_hash,
            receipt_key,
            e2e_key,
            region,
        })
    }

    /// The report data that binds these claims: SHA-512 of the encoding.
    pub fn report_data(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(&sha2::Sha512::digest(self.encode()));
        out
    }
}

/// The tagged fields after the model hash: each key `tag ‖ 32 bytes`, then
/// the region `3 ‖ length ‖ name`; tags rising, nothing else.
type OptionalFields = (Option<[u8; 32]>, Option<[u8; 32]>, Option<Region>);

fn optional_keys(mut rest: &[u8]) -> Result<OptionalFields, ClaimsDecodeError> {
    let mut keys = [None, None];
    let mut last = 0u8;
    while let Some((&tag, after)) = rest.split_first() {
        if tag == REGION_TAG && tag > last {
            return Ok((keys[0], keys[1], Some(region(after)?)));
        }
        let slot = match tag {
            RECEIPT_KEY_TAG | E2E_KEY_TAG if tag > last => usize::from(tag - 1),
            _ => {
                return Err(ClaimsDecodeError(format!(
                    "tag {tag} after tag {last}: expected 1 (receipt key), 2 (end-to-end key), \
                     3 (region), rising"
                )))
            }
        };
        let key = after.get(..32).ok_or_else(|| {
            ClaimsDecodeError(format!(
                "key tag {tag} is followed by {} bytes, not 32",
                after.len()
            ))
        })?;
        let mut k = [0u8; 32];
        k.copy_from_slice(key);
        keys[slot] = Some(k);
        last = tag;
        rest = &after[32..];
    }
    Ok((keys[0], keys[1], None))
}

/// The region, the last field: its length, then exactly that many bytes.
fn region(after_tag: &[u8]) -> Result<Region, ClaimsDecodeError> {
    let (&len, name) = after_tag
        .split_first()
        .ok_or_else(|| ClaimsDecodeError("region length missing".into()))?;
    if name.len() != usize::from(len) {
        return Err(ClaimsDecodeError(format!(
            "region of {len} bytes is followed by {}",
            name.len()
        )));
    }
    let name =
        std::str::from_utf8(name).map_err(|_| ClaimsDecodeError("region is not UTF-8".into()))?;
    Region::new(name).map_err(|e| ClaimsDecodeError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_round_trip_and_every_field_changes_the_report_data() {
        let base = Claims {
            public_key: [1; 32],
            role: Role::Worker,
            issued_at: 10,
            expires_at: 20,
            config_hash: [2; 32],
            model_hash: Some(ModelHash::from_bytes([3; 32])),
            receipt_key: Some([4; 32]),
            e2e_key: Some([6; 32]),
            region: Some(Region::new("eu-west").unwrap()),
        };
        for c in [
            Claims {
                region: None,
                ..base.clone()
            },
            Claims {
                receipt_key: None,
                e2e_key: None,
                region: None,
                ..base.clone()
            },
            Claims {
                e2e_key: None,
                receipt_key: None,
                ..base.clone()
            },
            Claims {
                e2e_key: None,
                ..base.clone()
            },
            Claims {
                receipt_key: None,
                e2e_key: None,
                ..base.clone()
            },
            base.clone(),
            Claims {
                model_hash: None,
                ..base.clone()
            },
            Claims {
                receipt_key: None,
                ..base.clone()
            },
            Claims {
                model_hash: None,
                receipt_key: None,
                ..base.clone()
            },
        ] {
            assert_eq!(Claims::decode(&c.encode()).unwrap(), c);
        }
        let variants = [
            Claims {
                public_key: [9; 32],
                ..base.clone()
            },
            Claims {
                role: Role::Proxy,
                ..base.clone()
            },
            Claims {
                issued_at: 11,
                ..base.clone()
            },
            Claims {
                expires_at: 21,
                ..base.clone()
            },
            Claims {
                config_hash: [9; 32],
                ..base.clone()
            },
            Claims {
                model_hash: None,
                ..base.clone()
            },
            Claims {
                receipt_key: Some([5; 32]),
                ..base.clone()
            },
            Claims {
                receipt_key: None,
                ..base.clone()
            },
            Claims {
                e2e_key: Some([7; 32]),
                ..base.clone()
            },
            Claims {
                e2e_key: None,
                ..base.clone()
            },
            Claims {
                region: Some(Region::new("eu").unwrap()),
                ..base.clone()
            },
            Claims {
                region: None,
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.report_data(), base.report_data(), "{v:?}");
        }
        let mut junk = base.encode();
        junk.push(0);
        assert!(Claims::decode(&junk).is_err());
        // A receipt key's flag must be 1: 0 followed by a key is not canonical.
        let mut zero_flag = Claims {
            receipt_key: None,
            e2e_key: None,
            region: None,
            ..base.clone()
        }
        .encode();
        zero_flag.push(0);
        zero_flag.extend_from_slice(&[4; 32]);
        assert!(Claims::decode(&zero_flag).is_err());
        // Keys come in tag order, each once.
        let mut swapped = Claims {
            receipt_key: None,
            e2e_key: None,
            region: None,
            ..base.clone()
        }
        .encode();
        swapped.push(2);
        swapped.extend_from_slice(&[6; 32]);
        swapped.push(1);
        swapped.extend_from_slice(&[4; 32]);
        assert!(Claims::decode(&swapped).is_err());
        let mut short = base.encode();
        short.pop();
        assert!(Claims::decode(&short).is_err());
        // The region is well formed and last.
        let mut upper = base.encode();
        let n = upper.len();
        upper[n - 1] = b'T';
        assert!(Claims::decode(&upper).is_err());
    }
}
