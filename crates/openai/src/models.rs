use serde::Serialize;

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelList {
    /// `list`.
    pub object: &'static str,
    /// The models.
    pub data: Vec<Model>,
}

impl ModelList {
    /// A list of `data`.
    pub fn new(data: Vec<Model>) -> Self {
        ModelList {
            object: "list",
            data,
        }
    }

    /// The list as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        crate::answer::to_json(self)
    }
}

/// One model served by the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Model {
    /// Its name.
    pub id: String,
    /// `model`.
    pub object: &'static str,
    /// Always 0: the network does not know when a model was made.
    pub created: i64,
    /// `cocoon`.
    pub owned_by: &'static str,
    /// What the market offers for it (Cocoon's addition).
    pub cocoon: ModelMarket,
}

impl Model {
    /// The model `id` with its market.
    pub fn new(id: String, cocoon: ModelMarket) -> Self {
        Model {
            id,
            object: "model",
            created: 0,
            owned_by: "cocoon",
            cocoon,
        }
    }
}

/// Workers, prices and capacity for one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelMarket {
    /// Connected workers serving it.
    pub workers: u32,
    /// Their price coefficients.
    pub coefficient: CoefficientSpread,
    /// Requests they can run at once.
    pub capacity: u32,
    /// Requests they are running.
    pub running: u32,
    /// SHA-256 of the weights they serve, hex.
    pub model_hashes: Vec<String>,
    /// What comparing their answers showed.
    pub reputation: ModelReputation,
    /// What they offer a request's trust requirements, distinct values:
    /// TEE kinds (`open` for the open tier), attested GPUs, regions.
    pub trust: ModelTrust,
}

/// What a model's workers offer trust requirements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelTrust {
    /// TEE kinds, `open` for open-tier workers.
    pub tees: Vec<String>,
    /// Attested GPUs, e.g. `hopper GH100 A01`.
    pub gpus: Vec<String>,
    /// Declared regions.
    pub regions: Vec<String>,
}

/// The workers' reputation for a model, summarised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelReputation {
    /// Answers compared with other workers' (replicated requests).
    pub compared_answers: u64,
    /// Of those, answers that differed from the majority.
    pub dissenting_answers: u64,
    /// Workers that routing avoids for it.
    pub avoided_workers: u32,
    /// Requests sent to its workers in their current sessions.
    pub requests: u64,
    /// Of those, requests that failed on the worker.
    pub failed_requests: u64,
    /// Median over its workers of their average request duration,
    /// milliseconds; `None` before any answered.
    pub median_latency_ms: Option<u64>,
    /// Median over its workers of their average time to the first byte,
    /// milliseconds; `None` before any answered.
    pub median_ttft_ms: Option<u64>,
}

/// The spread of price coefficients, per-mille.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoefficientSpread {
    /// Cheapest.
    pub min: u32,
    /// Median.
    pub median: u32,
    /// Dearest.
    pub max: u32,
}
