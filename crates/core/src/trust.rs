//! Trust tiers: what a request demands of the worker that runs it, what a
//! worker offers, and how an app's defaults constrain its requests.

use std::collections::BTreeSet;
use std::fmt;

use crate::tee::{TcbStatus, TeeKind};
use crate::Region;

/// Most runs one request may ask for.
pub const MAX_REPLICAS: u32 = 5;

/// What a request demands. Every field is optional: absent means the
/// request does not constrain it (the proxy's own policy still applies).
/// In JSON: `{"tee": ["tdx", "sev-snp"], "tcb": "up_to_date", "gpu": true,
/// "regions": ["eu"], "replicas": 2, "open": false}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRequirements {
    /// TEE kinds accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee: Option<BTreeSet<TeeKind>>,
    /// Lowest TCB status accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcb: Option<TcbStatus>,
    /// Whether the worker must have an attested GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<bool>,
    /// Regions accepted; a worker's region must lie within one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<BTreeSet<Region>>,
    /// Workers of distinct owners to run the request on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Whether workers without a TEE (the open tier) are accepted too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<bool>,
}

/// What a worker offers, as its attestation and registration proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustOffer {
    /// Whether it joined the open tier: no TEE, admitted by an explicit
    /// policy section, served only requests that opted in.
    pub open: bool,
    /// Its TEE as attestation proved it; `None` for an open-tier worker or
    /// on an unattested development proxy.
    pub tee: Option<TeeKind>,
    /// Its platform's TCB status (`Unknown` without a TEE).
    pub tcb: TcbStatus,
    /// Its attested GPU, described for people; `None` without one.
    pub gpu: Option<String>,
    /// The region it declared; `None` if it declared none.
    pub region: Option<Region>,
}

impl TrustOffer {
    /// Whether it is an open-tier worker (no TEE).
    pub fn is_open(&self) -> bool {
        self.open
    }
}

impl fmt::Display for TrustOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.open, self.tee) {
            (true, _) => f.write_str("the open tier (no TEE)")?,
            (false, Some(kind)) => write!(f, "{kind} (tcb {})", self.tcb.snake_name())?,
            (false, None) => f.write_str("no attested TEE")?,
        }
        match &self.gpu {
            Some(gpu) => write!(f, ", attested GPU {gpu}")?,
            None => f.write_str(", no attested GPU")?,
        }
        match &self.region {
            Some(r) => write!(f, ", region {r}"),
            None => f.write_str(", no declared region"),
        }
    }
}

/// A requirement a worker does not meet, and what it has instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unmet {
    /// An open-tier worker, for a request that did not opt in.
    #[error(
        "open: the worker has no TEE and the request did not accept the open tier (\"open\": true)"
    )]
    Open,
    /// Another TEE kind.
    #[error("tee: the request accepts {wanted}, the worker runs {found}")]
    Tee {
        /// Kinds accepted.
        wanted: String,
        /// The worker's, or "no attested TEE".
        found: String,
    },
    /// A TCB below the minimum.
    #[error("tcb: the request demands {min} or better, the worker's is {found}")]
    Tcb {
        /// The minimum, snake_case.
        min: &'static str,
        /// The worker's, snake_case.
        found: &'static str,
    },
    /// No attested GPU.
    #[error("gpu: the request demands an attested GPU, the worker has none")]
    Gpu,
    /// Outside the accepted regions.
    #[error("regions: the request accepts {allowed}, the worker declared {found}")]
    Region {
        /// Regions accepted.
        allowed: String,
        /// The worker's region, or "none".
        found: String,
    },
}

/// Why no worker of a model meets a request's requirements: what the best
/// of them (fewest requirements unmet, then cheapest) lacks, and offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// The model asked for.
    pub model: String,
    /// What the best worker does not meet.
    pub unmet: Vec<Unmet>,
    /// What it offers.
    pub best: TrustOffer,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no worker for model {:?} meets the request's trust requirements: ",
            self.model
        )?;
        for (i, u) in self.unmet.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{u}")?;
        }
        write!(f, "; the best available worker offers {}", self.best)
    }
}

impl std::error::Error for Shortfall {}

/// A request that would loosen what its app's defaults demand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trust.{field}: the app demands {app}, the request asks for {request}; a request may only tighten its app's trust requirements")]
pub struct Loosened {
    /// The field.
    pub field: &'static str,
    /// What the app's defaults say.
    pub app: String,
    /// What the request says.
    pub request: String,
}

/// Requirements that contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trust: {0}")]
pub struct Contradiction(pub String);

fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("[{}]", v.join(", "))
}

impl TrustRequirements {
    /// Whether it demands nothing.
    pub fn is_empty(&self) -> bool {
        *self == TrustRequirements::default()
    }

    /// Whether open-tier workers are acceptable.
    pub fn accepts_open(&self) -> bool {
        self.open == Some(true)
    }

    /// Refuses requirements no worker could meet by construction: an open
    /// worker has no TEE, so no TCB and no GPU bound to attested code.
    pub fn check(&self) -> Result<(), Contradiction> {
        if self.accepts_open() {
            for (field, set) in [
                ("tee", self.tee.is_some()),
                ("tcb", self.tcb.is_some()),
                ("gpu", self.gpu == Some(true)),
            ] {
                if set {
                    return Err(Contradiction(format!(
                        "\"open\": true accepts workers without a TEE, so \"{field}\" cannot be demanded with it"
                    )));
                }
            }
        }
        if self.tee.as_ref().is_some_and(BTreeSet::is_empty) {
            return Err(Contradiction("\"tee\" lists no TEE kind".into()));
        }
        if self.regions.as_ref().is_some_and(BTreeSet::is_empty) {
            return Err(Contradiction("\"regions\" lists no region".into()));
        }
        match self.replicas {
            Some(n) if n == 0 || n > MAX_REPLICAS => Err(Contradiction(format!(
                "\"replicas\" is {n}; 1 to {MAX_REPLICAS} runs are accepted"
            ))),
            _ => Ok(()),
        }
    }

    /// Every requirement `offer` does not meet, in the order open, tee,
    /// tcb, gpu, regions; empty if it meets them all.
    pub fn unmet(&self, offer: &TrustOffer) -> Vec<Unmet> {
        let mut out = Vec::new();
        if offer.is_open() && !self.accepts_open() {
            out.push(Unmet::Open);
        }
        if let Some(wanted) = &self.tee {
            if !offer.tee.is_some_and(|k| wanted.contains(&k)) {
                out.push(Unmet::Tee {
                    wanted: list(wanted),
                    found: offer
                        .tee
                        .map_or_else(|| "no attested TEE".to_owned(), |k| k.to_string()),
                });
            }
        }
        if let Some(min) = self.tcb {
            if offer.tcb < min {
                out.push(Unmet::Tcb {
                    min: min.snake_name(),
                    found: offer.tcb.snake_name(),
                });
            }
        }
        if self.gpu == Some(true) && offer.gpu.is_none() {
            out.push(Unmet::Gpu);
        }
        if let Some(allowed) = &self.regions {
            let inside = offer
                .region
                .as_ref()
                .is_some_and(|r| allowed.iter().any(|a| r.within(a)));
            if !inside {
                out.push(Unmet::Region {
                    allowed: list(allowed),
                    found: offer
                        .region
                        .as_ref()
                        .map_or_else(|| "none".to_owned(), Region::to_string),
                });
            }
        }
        out
    }

    /// Keeps the workers in `workers` whose offer meets these requirements
    /// (`offer` gives each one's offer and price, the tie-break); when none
    /// does, the shortfall of the best of them.
    pub fn keep_meeting<T>(
        &self,
        model: &str,
        workers: &mut Vec<T>,
        offer: impl Fn(&T) -> (&TrustOffer, u32),
    ) -> Result<(), Shortfall> {
        let mut best: Option<((usize, u32), Vec<Unmet>, TrustOffer)> = None;
        workers.retain(|w| {
            let (o, price) = offer(w);
            let unmet = self.unmet(o);
            if unmet.is_empty() {
                return true;
            }
            let rank = (unmet.len(), price);
            if best.as_ref().is_none_or(|b| rank < b.0) {
                best = Some((rank, unmet, o.clone()));
            }
            false
        });
        match best {
            Some((_, unmet, best)) if workers.is_empty() => Err(Shortfall {
                model: model.to_owned(),
                unmet,
                best,
            }),
            _ => Ok(()),
        }
    }

    /// The requirements of a request sent under these app defaults: the
    /// request may tighten each field, never loosen one.
    pub fn tightened_by(&self, request: &TrustRequirements) -> Result<Self, Loosened> {
        let loosened = |field, app: String, request: String| Loosened {
            field,
            app,
            request,
        };
        let tee = match (&self.tee, &request.tee) {
            (Some(app), Some(req)) if !req.is_subset(app) => {
                return Err(loosened("tee", list(app), list(req)))
            }
            (app, req) => req.clone().or_else(|| app.clone()),
        };
        let tcb = match (self.tcb, request.tcb) {
            (Some(app), Some(req)) if req < app => {
                return Err(loosened(
                    "tcb",
                    app.snake_name().into(),
                    req.snake_name().into(),
                ))
            }
            (app, req) => req.or(app),
        };
        let gpu = match (self.gpu, request.gpu) {
            (Some(true), Some(false)) => {
                return Err(loosened("gpu", "true".into(), "false".into()))
            }
            (app, req) => req.or(app),
        };
        let regions = match (&self.regions, &request.regions) {
            (Some(app), Some(req)) if !req.iter().all(|r| app.iter().any(|a| r.within(a))) => {
                return Err(loosened("regions", list(app), list(req)))
            }
            (app, req) => req.clone().or_else(|| app.clone()),
        };
        let replicas = match (self.replicas, request.replicas) {
            (Some(app), Some(req)) if req < app => {
                return Err(loosened("replicas", app.to_string(), req.to_string()))
            }
            (app, req) => req.or(app),
        };
        let open = match (self.open, request.open) {
            (Some(false), Some(true)) => {
                return Err(loosened("open", "false".into(), "true".into()))
            }
            (app, req) => req.or(app),
        };
        Ok(TrustRequirements {
            tee,
            tcb,
            gpu,
            regions,
            replicas,
            open,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(s: &str) -> Region {
        Region::new(s).unwrap()
    }

    fn tdx_eu() -> TrustOffer {
        TrustOffer {
            open: false,
            tee: Some(TeeKind::Tdx),
            tcb: TcbStatus::UpToDate,
            gpu: Some("hopper GH100 A01".into()),
            region: Some(region("eu-west")),
        }
    }

    #[test]
    fn each_requirement_filters_and_is_named() {
        let demand = TrustRequirements {
            tee: Some([TeeKind::Tdx, TeeKind::SevSnp].into()),
            tcb: Some(TcbStatus::UpToDate),
            gpu: Some(true),
            regions: Some([region("eu")].into()),
            replicas: Some(2),
            open: None,
        };
        demand.check().unwrap();
        assert!(demand.unmet(&tdx_eu()).is_empty());
        let cases = [
            (
                TrustOffer {
                    tee: Some(TeeKind::Sim),
                    ..tdx_eu()
                },
                "tee: the request accepts [tdx, sev-snp], the worker runs sim",
            ),
            (
                TrustOffer {
                    tcb: TcbStatus::OutOfDate,
                    ..tdx_eu()
                },
                "tcb: the request demands up_to_date or better, the worker's is out_of_date",
            ),
            (
                TrustOffer {
                    gpu: None,
                    ..tdx_eu()
                },
                "gpu: the request demands an attested GPU, the worker has none",
            ),
            (
                TrustOffer {
                    region: Some(region("us-east")),
                    ..tdx_eu()
                },
                "regions: the request accepts [eu], the worker declared us-east",
            ),
            (
                TrustOffer {
                    region: None,
                    ..tdx_eu()
                },
                "regions: the request accepts [eu], the worker declared none",
            ),
        ];
        for (offer, says) in cases {
            let unmet = demand.unmet(&offer);
            assert_eq!(unmet.len(), 1, "{offer}: {unmet:?}");
            assert_eq!(unmet[0].to_string(), says);
        }
    }

    #[test]
    fn open_workers_serve_only_requests_that_opted_in() {
        let open = TrustOffer {
            open: true,
            tee: None,
            tcb: TcbStatus::Unknown,
            gpu: None,
            region: Some(region("us")),
        };
        let plain = TrustRequirements::default();
        assert_eq!(plain.unmet(&open), vec![Unmet::Open]);
        let opted = TrustRequirements {
            open: Some(true),
            ..Default::default()
        };
        assert!(opted.unmet(&open).is_empty());
        // TEE workers still serve opted-in requests.
        assert!(opted.unmet(&tdx_eu()).is_empty());
        // An unattested development worker is not the open tier, but has no
        // TEE to show either.
        let unattested = TrustOffer {
            open: false,
            ..open.clone()
        };
        assert!(plain.unmet(&unattested).is_empty());
        let tdx = TrustRequirements {
            tee: Some([TeeKind::Tdx].into()),
            ..Default::default()
        };
        assert_eq!(
            tdx.unmet(&unattested)[0].to_string(),
            "tee: the request accepts [tdx], the worker runs no attested TEE"
        );
        for bad in [
            TrustRequirements {
                tee: Some([TeeKind::Tdx].into()),
                ..opted.clone()
            },
            TrustRequirements {
                gpu: Some(true),
                ..opted.clone()
            },
            TrustRequirements {
                tcb: Some(TcbStatus::UpToDate),
                ..opted.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn requirements_read_from_json_and_refuse_what_they_do_not_know() {
        let t: TrustRequirements = serde_json::from_str(
            r#"{"tee": ["tdx", "sev-snp"], "tcb": "up_to_date", "gpu": true, "regions": ["eu"], "replicas": 2}"#,
        )
        .unwrap();
        assert_eq!(t.tcb, Some(TcbStatus::UpToDate));
        assert_eq!(t.tee.as_ref().map(BTreeSet::len), Some(2));
        assert_eq!(
            serde_json::from_value::<TrustRequirements>(serde_json::to_value(&t).unwrap()).unwrap(),
            t
        );
        for bad in [
            r#"{"tee": ["sgx"]}"#,
            r#"{"tcb": "fine"}"#,
            r#"{"regions": ["EU"]}"#,
            r#"{"gpu": "yes"}"#,
            r#"{"colour": 1}"#,
        ] {
            assert!(
                serde_json::from_str::<TrustRequirements>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn requests_may_tighten_app_defaults_but_never_loosen_them() {
        let app = TrustRequirements {
            tee: Some([TeeKind::Tdx, TeeKind::SevSnp].into()),
            tcb: Some(TcbStatus::SWHardeningNeeded),
            gpu: Some(true),
            regions: Some([region("eu")].into()),
            replicas: Some(2),
            open: Some(false),
        };
        let tighter = TrustRequirements {
            tee: Some([TeeKind::Tdx].into()),
            tcb: Some(TcbStatus::UpToDate),
            gpu: Some(true),
            regions: Some([region("eu-west")].into()),
            replicas: Some(3),
            open: Some(false),
        };
        assert_eq!(app.tightened_by(&tighter).unwrap(), tighter);
        assert_eq!(
            app.tightened_by(&TrustRequirements::default()).unwrap(),
            app
        );
        let looser = [
            (
                "tee",
                TrustRequirements {
                    tee: Some([TeeKind::Sim].into()),
                    ..Default::default()
                },
            ),
            (
                "tcb",
                TrustRequirements {
                    tcb: Some(TcbStatus::OutOfDate),
                    ..Default::default()
                },
            ),
            (
                "gpu",
                TrustRequirements {
                    gpu: Some(false),
                    ..Default::default()
                },
            ),
            (
                "regions",
                TrustRequirements {
                    regions: Some([region("us")].into()),
                    ..Default::default()
                },
            ),
            (
                "replicas",
                TrustRequirements {
                    replicas: Some(1),
                    ..Default::default()
                },
            ),
            (
                "open",
                TrustRequirements {
                    open: Some(true),
                    ..Default::default()
                },
            ),
        ];
        for (field, req) in looser {
            let err = app.tightened_by(&req).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }
}
