//! One shard's map: CLOCK eviction (a referenced bit per entry and a rotating hand).

use std::collections::HashMap;
use std::sync::Arc;

use crate::analyze::Analysis;

struct Entry {
    analysis: Arc<Analysis>,
    referenced: bool,
}

/// A bounded map from keys to analyses; the bound is given on each insert.
#[derive(Default)]
pub(super) struct ClockMap {
    map: HashMap<Arc<str>, Entry>,
    /// Keys in insertion order, walked by the clock hand.
    ring: Vec<Arc<str>>,
    hand: usize,
}

impl ClockMap {
    pub(super) fn get(&mut self, key: &str) -> Option<Arc<Analysis>> {
        let entry = self.map.get_mut(key)?;
        entry.referenced = true;
        Some(Arc::clone(&entry.analysis))
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn insert(&mut self, key: &str, analysis: Arc<Analysis>, capacity: usize) {
        if self.map.contains_key(key) || capacity == 0 {
            return;
        }
        let key: Arc<str> = Arc::from(key);
        let entry = Entry {
            analysis,
            referenced: false,
        };
        if self.ring.len() < capacity {
            self.ring.push(Arc::clone(&key));
            self.map.insert(key, entry);
            return;
        }
        // Second chance: clear referenced bits until an unreferenced victim comes round (at most
        // two turns of the ring).
        loop {
            let slot = self.hand % self.ring.len();
            self.hand = (slot + 1) % self.ring.len();
            let Some(victim) = self.map.get_mut(&self.ring[slot]) else {
                break;
            };
            if victim.referenced {
                victim.referenced = false;
                continue;
            }
            self.map.remove(&self.ring[slot]);
            self.ring[slot] = Arc::clone(&key);
            self.map.insert(key, entry);
            return;
        }
    }
}
