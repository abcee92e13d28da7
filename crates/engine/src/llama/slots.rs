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

use llama_cpp_2::token::LlamaToken;

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
            clock: 0,
        }
    }

    /// Whether a slot is free.
    pub fn any_idle(&self) -> bool {
        !self.idle.is_empty()
    }

    /// Takes the idle slot sharing the longest prefix with `prompt`. At
    /// least one prompt token is always left to compute: its logits give
    /// the first answer token.
    pub fn take(&mut self, prompt: &[LlamaToken]) -> Option<Taken> {
        let best = self
            .idle
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    common_prefix(&s.cached, prompt),
                    std::cmp::Reverse(s.last_used),
                    i,
                )
            })
            .max()?;
        let idle = self.idle.swap_remove(best.2);
        Some(Taken {
            slot: idle.slot,
            reuse: best.0.min(prompt.len().saturating_sub(1)),
            held: idle.cached.len(),
        })
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
