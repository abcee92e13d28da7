//! Which peers a node accepts: TEE kinds, image hashes per role, minimum
//! TCB, certificate age, required claims. Loaded from TOML for now; the
//! on-chain registry will supply the allow-lists later.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cocoon_core::Role;
use serde::Deserialize;

use crate::nvidia::GpuPolicy;
use crate::{ImageHash, TcbStatus, TeeKind};

/// A claim a policy can require a peer's certificate to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequiredClaim {
    /// Workers must name the weights they serve.
    ModelHash,
}

/// An attestation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// TEE kinds accepted.
    pub kinds: BTreeSet<TeeKind>,
    /// Image hashes accepted, per role. A role with no entry is refused.
    pub images: BTreeMap<Role, BTreeSet<ImageHash>>,
    /// Lowest TCB status accepted.
    pub min_tcb: TcbStatus,
    /// Oldest certificate accepted, seconds since it was issued.
    pub max_cert_age_secs: u64,
    /// Claims a certificate must carry.
    pub required_claims: BTreeSet<RequiredClaim>,
    /// Roots of the sim TEE that are trusted (only used when `kinds` has sim).
    pub sim_roots: Vec<[u8; 32]>,
    /// What GPU evidence must show to count. Without this section a peer's
    /// GPU evidence is not trusted, and no request demanding an attested GPU
    /// is routed to it.
    pub gpu: Option<GpuPolicy>,
    /// The open tier: whether workers without a TEE are accepted (only
    /// with this section, never by a kind in `kinds`), and how often the
    /// proxy spot-checks their answers.
    pub open: Option<OpenTier>,
}

/// `[open]`: workers without a TEE may connect. They only ever serve
/// requests that accept the open tier, and their operator must be listed
/// for it in the root registry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenTier {
    /// Share of open-tier answers the proxy re-runs or scores, 0 to 1.
    pub spot_check_rate: f64,
}

impl Eq for OpenTier {}

/// Default share of open-tier answers checked.
pub const DEFAULT_OPEN_SPOT_CHECK_RATE: f64 = 0.25;

/// Default maximum certificate age: certificates live one hour and are
/// rotated at two thirds of that, so anything older is a replay.
pub const DEFAULT_MAX_CERT_AGE_SECS: u64 = 2 * 3600;

/// The policy file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    kinds: Vec<String>,
    #[serde(default)]
    min_tcb: Option<String>,
    #[serde(default)]
    max_cert_age_secs: Option<u64>,
    #[serde(default)]
    required_claims: Vec<String>,
    #[serde(default)]
    sim_roots: Vec<String>,
    #[serde(default)]
    images: ImagesFile,
    #[serde(default)]
    gpu: Option<GpuFile>,
    #[serde(default)]
    open: Option<OpenFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenFile {
    #[serde(default)]
    spot_check_rate: Option<f64>,
}

/// `[gpu]`: golden measurements (index → accepted hex values), or an
/// explicit `unpinned = true`; accepted drivers and VBIOS versions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuFile {
    #[serde(default)]
    unpinned: bool,
    #[serde(default)]
    golden: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    drivers: Vec<String>,
    #[serde(default)]
    vbios: Vec<String>,
}

/// The accepted TEE kinds: at least one, never "none" (the open tier has
/// its own section).
fn kinds(names: &[String]) -> Result<BTreeSet<TeeKind>, PolicyError> {
    let kinds = names
        .iter()
        .map(|k| k.parse::<TeeKind>())
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|e| PolicyError::Value {
            field: "kinds",
            reason: e.to_string(),
        })?;
    if kinds.contains(&TeeKind::None) {
        return Err(PolicyError::Value {
            field: "kinds",
            reason:
                "\"none\" is not a TEE: workers without one are accepted only by an [open] section"
                    .into(),
        });
    }
    if kinds.is_empty() {
        return Err(PolicyError::Value {
            field: "kinds",
            reason: "no TEE kind is accepted, so no peer could ever connect".into(),
        });
    }
    Ok(kinds)
}

fn open_tier(f: OpenFile) -> Result<OpenTier, PolicyError> {
    let rate = f.spot_check_rate.unwrap_or(DEFAULT_OPEN_SPOT_CHECK_RATE);
    if !(0.0..=1.0).contains(&rate) || rate.is_nan() {
        return Err(PolicyError::Value {
            field: "open",
            reason: format!("spot_check_rate must be 0 to 1, found {rate}"),
        });
    }
    Ok(OpenTier {
        spot_check_rate: rate,
    })
}

impl GpuFile {
    fn into_policy(self) -> Result<GpuPolicy, PolicyError> {
        let bad = |reason: String| PolicyError::Value {
            field: "gpu",
            reason,
        };
        if self.golden.is_empty() != self.unpinned {
            return Err(bad(if self.unpinned {
                "unpinned = true and golden measurements contradict each other".into()
            } else {
                "no golden measurements: list them under [gpu.golden], or say unpinned = true \
                 to accept any firmware NVIDIA signed"
                    .into()
            }));
        }
        let mut measurements = BTreeMap::new();
        for (index, values) in self.golden {
            let i: u8 = index
                .parse()
                .map_err(|_| bad(format!("golden index {index:?} is not 1 to 255")))?;
            let decoded = values
                .iter()
                .map(|v| hex::decode(v).map_err(|_| bad(format!("golden {i}: {v:?} is not hex"))))
                .collect::<Result<Vec<_>, _>>()?;
            if decoded.is_empty() {
                return Err(bad(format!("golden {i} lists no value")));
            }
            measurements.insert(i, decoded);
        }
        Ok(GpuPolicy {
            measurements,
            drivers: self.drivers,
            vbios: self.vbios,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImagesFile {
    #[serde(default)]
    client: Vec<String>,
    #[serde(default)]
    proxy: Vec<String>,
    #[serde(default)]
    worker: Vec<String>,
}

/// A policy file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("policy: {0}")]
    Syntax(String),
    /// A value is not acceptable.
    #[error("policy {field}: {reason}")]
    Value {
        /// The key.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl Policy {
    /// Parses a policy from TOML text:
    ///
    /// ```toml
    /// kinds = ["tdx", "sev-snp"]            # or ["sim"] for development
    /// min_tcb = "UpToDate"                  # Intel's status names
    /// max_cert_age_secs = 7200
    /// required_claims = ["model_hash"]
    /// sim_roots = []                        # hex Ed25519 keys, sim only
    /// [images]
    /// proxy = ["<64 hex digits>"]
    /// worker = ["<64 hex digits>"]
    /// client = ["<64 hex digits>"]
    /// [open]                                # workers without a TEE, if at all
    /// spot_check_rate = 0.25
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.message().to_owned()))?;
        let kinds = kinds(&file.kinds)?;
        let min_tcb = match file.min_tcb.as_deref() {
            None => TcbStatus::UpToDate,
            Some(s) => match TcbStatus::parse(s) {
                TcbStatus::Unknown => {
                    return Err(PolicyError::Value {
                        field: "min_tcb",
                        reason: format!("{s:?} is not an Intel TCB status"),
                    })
                }
                t => t,
            },
        };
        let mut images = BTreeMap::new();
        for (role, list) in [
            (Role::Client, &file.images.client),
            (Role::Proxy, &file.images.proxy),
            (Role::Worker, &file.images.worker),
        ] {
            let set = list
                .iter()
                .map(|h| h.parse::<ImageHash>())
                .collect::<Result<BTreeSet<_>, _>>()
                .map_err(|e| PolicyError::Value {
                    field: "images",
                    reason: format!("{role}: {e}"),
                })?;
            if !set.is_empty() {
                images.insert(role, set);
            }
        }
        let required_claims = file
            .required_claims
            .iter()
            .map(|c| match c.as_str() {
                "model_hash" => Ok(RequiredClaim::ModelHash),
                other => Err(PolicyError::Value {
                    field: "required_claims",
                    reason: format!("unknown claim {other:?}; known: model_hash"),
                }),
            })
            .collect::<Result<_, _>>()?;
        let sim_roots = file
            .sim_roots
            .iter()
            .map(|r| {
                let mut k = [0u8; 32];
                hex::decode_to_slice(r, &mut k)
                    .map(|()| k)
                    .map_err(|_| PolicyError::Value {
                        field: "sim_roots",
                        reason: format!("{r:?} is not 64 hex digits"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if kinds.contains(&TeeKind::Sim) && sim_roots.is_empty() {
            return Err(PolicyError::Value {
                field: "sim_roots",
                reason: "the policy accepts sim evidence but trusts no sim root".into(),
            });
        }
        Ok(Policy {
            kinds,
            images,
            min_tcb,
            max_cert_age_secs: file.max_cert_age_secs.unwrap_or(DEFAULT_MAX_CERT_AGE_SECS),
            required_claims,
            sim_roots,
            gpu: file.gpu.map(GpuFile::into_policy).transpose()?,
            open: file.open.map(open_tier).transpose()?,
        })
    }

    /// Reads a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text)
    }

    /// Whether the policy accepts simulated evidence (never in production).
    pub fn accepts_sim(&self) -> bool {
        self.kinds.contains(&TeeKind::Sim)
    }

    /// The policy as TOML, in the form [`Policy::from_toml`] reads.
    pub fn to_toml(&self) -> String {
        let list = |items: Vec<String>| {
            items
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = format!(
            "kinds = [{}]\nmin_tcb = {:?}\nmax_cert_age_secs = {}\nrequired_claims = [{}]\nsim_roots = [{}]\n[images]\n",
            list(self.kinds.iter().map(|k| k.to_string()).collect()),
            self.min_tcb.as_str(),
            self.max_cert_age_secs,
            list(self.required_claims.iter().map(|_| "model_hash".to_owned()).collect()),
            list(self.sim_roots.iter().map(hex::encode).collect()),
        );
        for (role, set) in &self.images {
            out.push_str(&format!(
                "{role} = [{}]\n",
                list(set.iter().map(|h| h.to_string()).collect())
            ));
        }
        if let Some(open) = &self.open {
            out.push_str(&format!(
                "[open]\nspot_check_rate = {:?}\n",
                open.spot_check_rate
            ));
        }
        if let Some(gpu) = &self.gpu {
            out.push_str(&format!(
                "[gpu]\nunpinned = {}\ndrivers = [{}]\nvbios = [{}]\n[gpu.golden]\n",
                gpu.measurements.is_empty(),
                list(gpu.drivers.clone()),
                list(gpu.vbios.clone()),
            ));
            for (i, values) in &gpu.measurements {
                out.push_str(&format!(
                    "\"{i}\" = [{}]\n",
                    list(values.iter().map(hex::encode).collect())
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_round_trips_through_toml_and_bad_values_are_named() {
        let text = format!(
            "kinds = [\"sim\", \"tdx\"]\nrequired_claims = [\"model_hash\"]\nsim_roots = [\"{}\"]\n[images]\nworker = [\"{}\"]\n",
            "11".repeat(32),
            "22".repeat(32)
        );
        let p = Policy::from_toml(&text).unwrap();
        assert!(p.accepts_sim());
        assert_eq!(p.min_tcb, TcbStatus::UpToDate);
        assert_eq!(p.max_cert_age_secs, DEFAULT_MAX_CERT_AGE_SECS);
        assert_eq!(Policy::from_toml(&p.to_toml()).unwrap(), p);

        for (bad, field) in [
            ("kinds = []", "kinds"),
            ("kinds = [\"sgx\"]", "kinds"),
            ("kinds = [\"sim\"]", "sim_roots"),
            ("kinds = [\"tdx\"]\nmin_tcb = \"Fine\"", "min_tcb"),
            (
                "kinds = [\"tdx\"]\nrequired_claims = [\"name\"]",
                "required_claims",
            ),
            ("kinds = [\"tdx\"]\n[images]\nproxy = [\"zz\"]", "images"),
        ] {
            let err = Policy::from_toml(bad).unwrap_err();
            assert!(err.to_string().contains(field), "{bad}: {err}");
        }
        let open = Policy::from_toml("kinds = [\"tdx\"]\n[open]\n").unwrap();
        assert_eq!(
            open.open.map(|o| o.spot_check_rate),
            Some(DEFAULT_OPEN_SPOT_CHECK_RATE)
        );
        assert_eq!(Policy::from_toml(&open.to_toml()).unwrap(), open);
        assert!(Policy::from_toml("kinds = [\"tdx\"]\n[open]\nspot_check_rate = 2.0\n").is_err());
        // "none" among the kinds is not how the open tier is allowed.
        assert!(Policy::from_toml("kinds = [\"none\"]").is_err());
        let gpu = "kinds = [\"tdx\"]\n[gpu]\ndrivers = [\"550.54.15\"]\n[gpu.golden]\n\"2\" = [\"ab\", \"cd\"]\n";
        let p = Policy::from_toml(gpu).unwrap();
        let g = p.gpu.as_ref().unwrap();
        assert_eq!(g.measurements[&2], vec![vec![0xab], vec![0xcd]]);
        assert_eq!(Policy::from_toml(&p.to_toml()).unwrap(), p);
        for bad in [
            "kinds = [\"tdx\"]\n[gpu]\n",
            "kinds = [\"tdx\"]\n[gpu]\nunpinned = true\n[gpu.golden]\n\"1\" = [\"ab\"]",
            "kinds = [\"tdx\"]\n[gpu.golden]\n\"x\" = [\"ab\"]",
            "kinds = [\"tdx\"]\n[gpu.golden]\n\"1\" = [\"zz\"]",
        ] {
            let err = Policy::from_toml(bad).unwrap_err();
            assert!(err.to_string().contains("gpu"), "{bad}: {err}");
        }
        assert!(matches!(
            Policy::from_toml("kinds = [\"tdx\"]\nimage = 1"),
            Err(PolicyError::Syntax(_))
        ));
    }
}
