use cocoon_core::Usage;
use serde::{Deserialize, Serialize};

/// OpenAI's `usage` object. Read leniently (engines omit the detail objects
/// and sometimes the total); written complete, with `cost_nanoton` when the
/// request was charged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageObject {
    /// Prompt tokens, cached ones included.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Completion tokens, reasoning ones included.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Their sum.
    #[serde(default)]
    pub total_tokens: u64,
    /// Prompt tokens served from the prefix cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Completion tokens spent on reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// What the answer cost the client (Cocoon's addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_nanoton: Option<u64>,
    /// How that cost was made: the worker's coefficient, the tier factors,
    /// the coefficient charged (Cocoon's addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_breakdown: Option<serde_json::Value>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from cache.
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    /// Completion tokens spent on reasoning.
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

impl From<Usage> for UsageObject {
    fn from(u: Usage) -> Self {
        UsageObject {
            prompt_tokens: u.prompt,
            completion_tokens: u.completion,
            total_tokens: u.total(),
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: Some(u.cached),
            }),
            completion_tokens_details: Some(CompletionTokensDetails {
                reasoning_tokens: Some(u.reasoning),
            }),
            cost_nanoton: None,
            cost_breakdown: None,
        }
    }
}

impl UsageObject {
    /// The counts, a missing detail read as zero.
    pub fn usage(&self) -> Usage {
        Usage {
            prompt: self.prompt_tokens,
            cached: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            completion: self.completion_tokens,
            reasoning: self
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }

    /// The same, with what it cost.
    pub fn with_cost(mut self, cost_nanoton: Option<u64>) -> Self {
        self.cost_nanoton = cost_nanoton;
        self
    }

    /// The same usage, with how its cost was made when it was charged.
    pub fn with_breakdown(mut self, breakdown: Option<serde_json::Value>) -> Self {
        if self.cost_nanoton.is_some() {
            self.cost_breakdown = breakdown;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_complete_and_read_back() {
        let u = Usage {
            prompt: 10,
            cached: 4,
            completion: 7,
            reasoning: 2,
        };
        let v = serde_json::to_value(UsageObject::from(u)).unwrap();
        assert_eq!(v["prompt_tokens"], 10);
        assert_eq!(v["completion_tokens"], 7);
        assert_eq!(v["total_tokens"], 17);
        assert_eq!(v["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(v["completion_tokens_details"]["reasoning_tokens"], 2);
        assert!(v.get("cost_nanoton").is_none(), "not charged: no cost");
        let back: UsageObject = serde_json::from_value(v).unwrap();
        assert_eq!(back.usage(), u);
        let charged = serde_json::to_value(UsageObject::from(u).with_cost(Some(5))).unwrap();
        assert_eq!(charged["cost_nanoton"], 5);
    }

    #[test]
    fn an_engines_sparse_usage_reads_as_zeros() {
        let u: UsageObject =
            serde_json::from_str(r#"{"prompt_tokens":4,"completion_tokens":9}"#).unwrap();
        assert_eq!(
            u.usage(),
            Usage {
                prompt: 4,
                completion: 9,
                ..Usage::default()
            }
        );
    }
}
