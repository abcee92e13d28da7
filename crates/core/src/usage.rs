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

    /// OpenAI's `usage` object for this count.
    pub fn to_openai_json(&self) -> String {
        format!(
            "{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{},\
             \"prompt_tokens_details\":{{\"cached_tokens\":{}}},\
             \"completion_tokens_details\":{{\"reasoning_tokens\":{}}}}}",
            self.prompt,
            self.completion,
            self.total(),
            self.cached,
            self.reasoning
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_json_is_valid_and_complete() {
        let u = Usage {
            prompt: 10,
            cached: 4,
            completion: 7,
            reasoning: 2,
        };
        let v: serde_json::Value = serde_json::from_str(&u.to_openai_json()).unwrap();
        assert_eq!(v["prompt_tokens"], 10);
        assert_eq!(v["completion_tokens"], 7);
        assert_eq!(v["total_tokens"], 17);
        assert_eq!(v["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(v["completion_tokens_details"]["reasoning_tokens"], 2);
    }
}
