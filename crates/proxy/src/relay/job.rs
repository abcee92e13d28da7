//! A request as the proxy runs it, read and checked once, where it enters:
//! every later stage (selection, reservation, dispatch, replication,
//! spot-checks) reads these typed fields and never the body again.

use cocoon_core::trust::TrustRequirements;
use cocoon_core::{Endpoint, ModelName, RequestId};
use cocoon_proto::InferRequest;
use cocoon_receipt::digest::Sampling;
use tokio::time::Instant;
use tycho_types::models::StdAddr;

use super::RelayError;
use crate::registry::Demand;
use crate::Shared;

pub(crate) use cocoon_core::trust::MAX_REPLICAS;

/// One request to relay.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) id: RequestId,
    pub(crate) model: ModelName,
    pub(crate) endpoint: Endpoint,
    /// When the whole request must be over.
    pub(crate) deadline: Instant,
    /// Who pays, when the proxy charges.
    pub(crate) payer: Option<StdAddr>,
    /// How its answer is sampled: whether a replay must agree.
    pub(crate) sampling: Sampling,
    /// Workers of distinct owners to run it on (1 for a plain request).
    pub(crate) replicas: u32,
    /// The request as the client sent it: the body the workers run, its
    /// limits and the payer's proof.
    pub(crate) wire: InferRequest,
    /// For a sealed request: the workers' keys it was sealed to, the only
    /// ones that may run it.
    pub(crate) sealed_to: Option<SealedTo>,
    /// What the worker must offer.
    pub(crate) trust: TrustRequirements,
}

impl Job {
    /// Reads `req`; every refusal names what was wrong.
    pub(crate) fn parse(shared: &Shared, req: InferRequest) -> Result<Job, RelayError> {
        let bad =
            |what: &str, e: &dyn std::fmt::Display| RelayError::BadRequest(format!("{what}: {e}"));
        let id = RequestId::parse(&req.request_id).map_err(|e| bad("request_id", &e))?;
        let model = ModelName::new(&req.model).map_err(|e| bad("model", &e))?;
        let endpoint =
            cocoon_proto::convert::endpoint(req.endpoint).map_err(|e| bad("endpoint", &e))?;
        let (sampling, sealed_to) = match &req.sealed {
            None => (
                Sampling::of(&req.body)
                    .map_err(|e| bad("the request body is not a JSON object", &e))?,
                None,
            ),
            Some(s) => sealed(&req, s)?,
        };
        let replicas = req.replicas.max(1);
        if replicas > MAX_REPLICAS {
            return Err(RelayError::BadRequest(format!(
                "replicas: at most {MAX_REPLICAS} runs per request, asked for {replicas}"
            )));
        }
        let trust = cocoon_proto::convert::trust(req.trust.as_ref(), replicas)
            .map_err(|e| bad("trust", &e))?;
        trust.check().map_err(|e| bad("trust", &e))?;
        let timeout = match req.timeout_ms {
            0 => shared.config.default_timeout,
            ms => std::time::Duration::from_millis(ms),
        };
        Ok(Job {
            id,
            model,
            endpoint,
            deadline: Instant::now() + timeout,
            payer: payer(shared, &req)?,
            sampling,
            replicas,
            wire: req,
            sealed_to,
            trust,
        })
    }

    /// The coefficient a run on `worker` is charged at, and the tier
    /// factors that took its own there.
    pub(crate) fn charged(
        &self,
        worker: &crate::registry::WorkerHandle,
        tiers: &cocoon_core::tier_prices::TierPrices,
    ) -> Result<
        (
            cocoon_core::Coefficient,
            cocoon_core::tier_prices::CostFactors,
        ),
        RelayError,
    > {
        let factors = tiers.factors(
            &worker.offer,
            worker.model_hash.as_ref(),
            &self.trust,
            self.replicas,
        );
        let k = factors
            .apply(worker.coefficient())
            .map_err(|e| RelayError::BadRequest(e.to_string()))?;
        Ok((k, factors))
    }

    /// What the request asks of a worker, excluding `tried` owners.
    pub(crate) fn demand<'a>(&'a self, tried: &'a [crate::worker_id::Owner]) -> Demand<'a> {
        Demand {
            model: self.model.as_str(),
            max_coefficient: self.wire.max_coefficient,
            exclude: tried,
            sealed_to: self.sealed_to.as_deref(),
            trust: &self.trust,
        }
    }

    /// How many bytes the request body has, sealed or not: what its hold
    /// is computed from.
    pub(crate) fn body_len(&self) -> usize {
        match &self.wire.sealed {
            Some(s) => s.ciphertext.len(),
            None => self.wire.body.len(),
        }
    }
}

/// The end-to-end keys of the workers a sealed request may run on.
type SealedTo = Vec<[u8; 32]>;

/// Most workers a request may be sealed to.
const MAX_SEALED_TO: usize = 64;

/// Checks a sealed request's clear facts: what the proxy routes it by, and
/// which workers may run it.
fn sealed(
    req: &InferRequest,
    s: &cocoon_proto::SealedBody,
) -> Result<(Sampling, Option<SealedTo>), RelayError> {
    let bad = |m: String| Err(RelayError::BadRequest(format!("sealed request: {m}")));
    if !req.body.is_empty() {
        return bad("the body must travel only sealed, but a clear body came too".into());
    }
    if s.model != req.model || s.max_tokens != req.max_tokens {
        return bad(format!(
            "its sealed facts (model {:?}, max_tokens {}) differ from the request's ({:?}, {})",
            s.model, s.max_tokens, req.model, req.max_tokens
        ));
    }
    if s.keys.is_empty() || s.keys.len() > MAX_SEALED_TO {
        return bad(format!(
            "sealed to {} workers; 1 to {MAX_SEALED_TO} are accepted",
            s.keys.len()
        ));
    }
    let mut keys = Vec::with_capacity(s.keys.len());
    for k in &s.keys {
        match <[u8; 32]>::try_from(k.worker_key.as_ref()) {
            Ok(key) => keys.push(key),
            Err(_) => {
                return bad(format!(
                    "a worker key is {} bytes, not 32",
                    k.worker_key.len()
                ))
            }
        }
    }
    if s.ephemeral_key.len() != 32 || s.ciphertext.is_empty() {
        return bad("the ephemeral key must be 32 bytes and the ciphertext not empty".into());
    }
    let sampling = Sampling {
        temperature: None,
        seeded: s.deterministic,
    };
    Ok((sampling, Some(keys)))
}

/// Who pays, when the proxy charges.
fn payer(shared: &Shared, req: &InferRequest) -> Result<Option<StdAddr>, RelayError> {
    if shared.config.charging.payments().is_none() {
        return Ok(None);
    }
    crate::client_gateway::parse_address(&req.client_address)
        .map(Some)
        .map_err(|status| {
            RelayError::BadRequest(format!(
                "this proxy charges for requests and needs the payer's address: {}",
                status.message()
            ))
        })
}
