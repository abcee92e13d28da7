//! Image hashes allowed per role, from a source that changes while a node
//! runs: the root registry on chain. When a verifier has one, it decides
//! which images are accepted, not the policy file's `[images]`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;
use std::time::Instant;

use crate::image::ImageHash;
use cocoon_core::Role;

/// Image hashes per role.
pub type ImagesByRole = BTreeMap<Role, BTreeSet<ImageHash>>;

/// The images allowed per role, replaced whole on each read of its source.
#[derive(Debug)]
pub struct ImageAllowList {
    source: String,
    /// The sets and when they were read.
    sets: RwLock<(ImagesByRole, Option<Instant>)>,
    /// How the last reading was confirmed (which endpoints agreed).
    note: RwLock<String>,
}

/// An image the list does not allow for a role.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not among the images allowed: {allowed}")]
pub struct NotListed {
    /// The images the list allows for the role, and where the list is from.
    pub allowed: String,
}

impl ImageAllowList {
    /// An empty list (nothing allowed until the first [`Self::replace`]),
    /// named after its source for errors and stats.
    pub fn new(source: impl Into<String>) -> Self {
        ImageAllowList {
            source: source.into(),
            sets: RwLock::new((BTreeMap::new(), None)),
            note: RwLock::new(String::new()),
        }
    }

    /// Records how the last reading was confirmed, for `/stats`.
    pub fn note(&self, text: String) {
        *self.note.write().unwrap_or_else(|p| p.into_inner()) = text;
    }

    /// The last reading's confirmation.
    pub fn note_text(&self) -> String {
        self.note.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Where the list comes from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Replaces every role's images.
    pub fn replace(&self, sets: ImagesByRole) {
        *self.sets.write().unwrap_or_else(|p| p.into_inner()) = (sets, Some(Instant::now()));
    }

    /// Whether `image` is allowed for `role`; a refusal carries the role's
    /// list.
    pub fn check(&self, role: Role, image: &ImageHash) -> Result<(), NotListed> {
        let sets = self.sets.read().unwrap_or_else(|p| p.into_inner());
        let set = sets.0.get(&role);
        if set.is_some_and(|s| s.contains(image)) {
            return Ok(());
        }
        let list = set
            .map(|s| {
                s.iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        Err(NotListed {
            allowed: format!("{list} (per {})", self.source),
        })
    }

    /// How many images each role has, and the age of the list.
    pub fn describe(&self) -> String {
        let sets = self.sets.read().unwrap_or_else(|p| p.into_inner());
        let counts: Vec<String> = sets
            .0
            .iter()
            .map(|(r, s)| format!("{r:?}: {}", s.len()))
            .collect();
        let age = sets
            .1
            .map(|t| format!("read {:.0?} ago", t.elapsed()))
            .unwrap_or_else(|| "never read".into());
        let note = self.note_text();
        let note = if note.is_empty() {
            String::new()
        } else {
            format!("; {note}")
        };
        format!("{} ({}; {age}{note})", self.source, counts.join(", "))
    }
}
