/// Token counts of one answer, as reported by the engine. Prices are applied
/// per kind, so the kinds are kept apart: `cached` is the part of `prompt`
/// served from the prefix cache, `reasoning` the part of `completion` spent
/// on hidden reasoning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub prompt: u64,
    /// Prompt tokens served from cache.
    pub cached: u64,
    /// Completion tokens, reasoning ones included.
    pub completion: u64,
    /// Completion tokens spent on reasoning.
    pub reasoning: u64,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total(&self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }
}
