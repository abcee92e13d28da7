//! The context's sequence slots and what each idle slot's KV cells still
//! hold: prompt (prefix) caching.
//!
//! A sequence that ends leaves its KV cells in place. The next request goes
//! to the idle slot whose cells share the longest prefix with its prompt
//! (the chat template, a system prompt, the earlier turns of a
//! conversation) and computes only the rest. Each slot has its own share of
//! the context (llama.cpp's per-sequence KV streams), so a cached prefix
//! costs no memory that a running request could use; among slots with
//! nothing in common with the prompt the least recently used is taken, so
//! the caches most likely to be reused live longest.
//!
//! With a KV stream per slot, llama.cpp decodes together only sequences
//! whose ids are consecutive; every separate run of busy slots costs one
//! more pass over the weights per step, for as long as the request runs.
//! A slot next to a busy one is therefore worth [`RUN_COST_TOKENS`] tokens
//! of cached prefix: a short shared prefix (the chat template) does not
//! outweigh keeping the busy slots together, a cached conversation does.

use llama_cpp_2::token::LlamaToken;

/// What starting a new run of busy slots is worth, in prompt tokens: about
/// what an extra micro-batch per step costs over a 128-token answer
/// against computing that many more prompt tokens once (CPU figures; the
/// ratio is similar on a GPU, where both are bound by reading weights).
pub(super) const RUN_COST_TOKENS: usize = 128;

/// An idle slot and the tokens its KV cells hold, positions 0.. in order.
#[derive(Debug)]
struct Idle {
    slot: i32,
    cached: Vec<LlamaToken>,
    last_used: u64,
}

/// A slot handed to a new sequence.
#[derive(Debug)]
pub(super) struct Taken {
    /// The sequence id.
    pub slot: i32,
    /// Tokens of the prompt already in the slot's KV cells.
    pub reuse: usize,
    /// How many tokens the slot's cells held (cells from `reuse` on must be
    /// removed before the prompt's rest is fed).
    pub held: usize,
}

/// Every slot not running a sequence.
#[derive(Debug)]
pub(super) struct Slots {
    idle: Vec<Idle>,
    /// Slots in all, busy or idle: ids 0..total.
    total: i32,
    clock: u64,
}

impl Slots {
    /// `n` empty slots.
    pub fn new(n: u32) -> Self {
        Slots {
            idle: (0..n as i32)
                .map(|slot| Idle {
                    slot,
                    cached: Vec::new(),
                    last_used: 0,
                })
                .collect(),
            total: n as i32,
            clock: 0,
        }
    }

    /// Whether a slot is free.
    pub fn any_idle(&self) -> bool {
        !self.idle.is_empty()
    }

    /// Takes the idle slot sharing the longest prefix with `prompt`,
    /// counting a slot away from every busy one as [`RUN_COST_TOKENS`]
    /// shorter. At least one prompt token is always left to compute: its
    /// logits give the first answer token.
    pub fn take(&mut self, prompt: &[LlamaToken]) -> Option<Taken> {
        let any_busy = self.idle.len() < self.total as usize;
        let best = self
            .idle
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let shared = common_prefix(&s.cached, prompt);
                let apart = any_busy && !self.next_to_busy(s.slot);
                let worth = shared as i64 - if apart { RUN_COST_TOKENS as i64 } else { 0 };
                (worth, std::cmp::Reverse(s.last_used), i, shared)
            })
            .max()?;
        let idle = self.idle.swap_remove(best.2);
        Some(Taken {
            slot: idle.slot,
            reuse: best.3.min(prompt.len().saturating_sub(1)),
            held: idle.cached.len(),
        })
    }

    fn is_busy(&self, slot: i32) -> bool {
        (0..self.total).contains(&slot) && !self.idle.iter().any(|s| s.slot == slot)
    }

    fn next_to_busy(&self, slot: i32) -> bool {
        self.is_busy(slot - 1) || self.is_busy(slot + 1)
    }

    /// Returns a slot whose KV cells hold `cached` (positions 0.. in order).
    pub fn put(&mut self, slot: i32, cached: Vec<LlamaToken>) {
        self.clock += 1;
        self.idle.push(Idle {
            slot,
            cached,
            last_used: self.clock,
        });
    }
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(v: &[i32]) -> Vec<LlamaToken> {
        v.iter().map(|&t| LlamaToken(t)).collect()
    }

    #[test]
    fn the_longest_shared_prefix_wins_and_one_token_is_always_computed() {
        let mut s = Slots::new(3);
        let a = s.take(&toks(&[1, 2, 3])).unwrap();
        let b = s.take(&toks(&[1, 2, 3])).unwrap();
        assert_eq!((a.reuse, b.reuse), (0, 0), "empty slots hold nothing");
        s.put(a.slot, toks(&[1, 2, 3, 4, 5]));
        s.put(b.slot, toks(&[1, 9]));
        let t = s.take(&toks(&[1, 2, 3, 4, 7, 8])).unwrap();
        assert_eq!((t.slot, t.reuse, t.held), (a.slot, 4, 5));
        // The whole prompt is cached: its last token is still computed.
        s.put(t.slot, toks(&[1, 2, 3, 4, 7, 8, 10]));
        let t = s.take(&toks(&[1, 2, 3])).unwrap();
        assert_eq!((t.slot, t.reuse), (a.slot, 2));
    }

    #[test]
    fn busy_slots_stay_together_unless_a_long_prefix_is_cached_elsewhere() {
        let mut s = Slots::new(8);
        for _ in 0..8 {
            s.take(&[]).unwrap();
        }
        // Slot 2 stays busy; every other slot caches the same short
        // template, slot 6 the longest unused.
        let template = toks(&[1, 2, 3]);
        for slot in [6, 0, 1, 3, 4, 5, 7] {
            s.put(slot, template.clone());
        }
        let t = s.take(&toks(&[1, 2, 3, 5])).unwrap();
        assert!(
            t.slot == 1 || t.slot == 3,
            "took {} rather than a neighbour of 2",
            t.slot
        );
        assert_eq!(t.reuse, 3);
        // A long cached conversation is worth a separate run.
        let long: Vec<_> = (0..300).map(LlamaToken).collect();
        s.idle.iter_mut().find(|i| i.slot == 6).unwrap().cached = long.clone();
        let mut prompt = long;
        prompt.push(LlamaToken(7));
        let t = s.take(&prompt).unwrap();
        assert_eq!((t.slot, t.reuse), (6, 300));
    }

    #[test]
    fn without_a_shared_prefix_the_least_recently_used_slot_is_taken() {
        let mut s = Slots::new(2);
        let a = s.take(&[]).unwrap();
        let b = s.take(&[]).unwrap();
        assert!(!s.any_idle());
        s.put(a.slot, toks(&[5, 5]));
        s.put(b.slot, toks(&[6, 6]));
        let t = s.take(&toks(&[7])).unwrap();
        assert_eq!(t.slot, a.slot, "a's cache is the older one");
        assert_eq!(t.reuse, 0);
    }
}
