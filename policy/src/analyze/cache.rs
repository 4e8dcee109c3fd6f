//! A bounded, sharded cache of analyses keyed by statement text.
//!
//! Each shard is a `Mutex<HashMap>` with CLOCK eviction (a referenced bit per entry and a rotating
//! hand): a hit costs one hash, one short lock and an `Arc` clone. Analysis runs outside the lock,
//! so two connections missing on the same text may both analyse it; the second insert is a no-op.
//! Errors are not cached (the caller denies, and a retry costs no more than the first try).
//! Statements longer than `max_entry_bytes` are analysed but not kept, so memory stays bounded by
//! `capacity * max_entry_bytes` plus the analyses.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{Analysis, AnalyzeConfig, AnalyzeError, analyze_with};

const SHARDS: usize = 16;

struct Entry {
    analysis: Arc<Analysis>,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Arc<str>, Entry>,
    /// Keys in insertion order, walked by the clock hand.
    ring: Vec<Arc<str>>,
    hand: usize,
}

impl Shard {
    fn get(&mut self, sql: &str) -> Option<Arc<Analysis>> {
        let entry = self.map.get_mut(sql)?;
        entry.referenced = true;
        Some(Arc::clone(&entry.analysis))
    }

    fn insert(&mut self, sql: &str, analysis: Arc<Analysis>, capacity: usize) {
        if self.map.contains_key(sql) || capacity == 0 {
            return;
        }
        let key: Arc<str> = Arc::from(sql);
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

/// A thread-safe, bounded cache of [`Analysis`] per statement text.
pub struct AnalysisCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    max_entry_bytes: usize,
    hasher: RandomState,
    config: AnalyzeConfig,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for AnalysisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalysisCache")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl AnalysisCache {
    /// A cache of about `capacity` statements (rounded up to a multiple of the shard count), with
    /// default analysis limits and entries up to 64 KiB.
    pub fn new(capacity: usize) -> Self {
        Self::with_config(capacity, 64 * 1024, AnalyzeConfig::default())
    }

    /// A cache with explicit analysis limits and largest cached statement.
    pub fn with_config(capacity: usize, max_entry_bytes: usize, config: AnalyzeConfig) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            max_entry_bytes,
            hasher: RandomState::new(),
            config,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, sql: &str) -> std::sync::MutexGuard<'_, Shard> {
        let index = usize::try_from(self.hasher.hash_one(sql) % SHARDS as u64).unwrap_or(0);
        // A panic while holding the lock cannot leave a shard inconsistent in a harmful way: at worst
        // a ring slot and the map disagree, which `insert` tolerates.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The analysis of `sql`, from the cache or freshly computed (and then cached).
    pub fn analyze(&self, sql: &str) -> Result<Arc<Analysis>, AnalyzeError> {
        if let Some(hit) = self.shard(sql).get(sql) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let analysis = Arc::new(analyze_with(sql, &self.config)?);
        if sql.len() <= self.max_entry_bytes {
            self.shard(sql)
                .insert(sql, Arc::clone(&analysis), self.per_shard);
        }
        Ok(analysis)
    }

    /// Statements currently cached.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most statements the cache holds.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that had to analyse.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hit_returns_the_same_arc() {
        let cache = AnalysisCache::new(32);
        let a = cache.analyze("SELECT * FROM t").unwrap();
        let b = cache.analyze("SELECT * FROM t").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
    }

    #[test]
    fn stays_bounded_and_keeps_hot_entries() {
        let cache = AnalysisCache::new(SHARDS * 4);
        let hot = "SELECT 1 FROM hot";
        cache.analyze(hot).unwrap();
        for i in 0..1000 {
            cache.analyze(&format!("SELECT {i} FROM t{i}")).unwrap();
            cache.analyze(hot).unwrap();
        }
        assert!(cache.len() <= cache.capacity());
        let before = cache.hits();
        cache.analyze(hot).unwrap();
        assert_eq!(cache.hits(), before + 1, "a hot entry survives eviction");
    }

    #[test]
    fn errors_and_oversized_entries_are_not_kept() {
        let cache = AnalysisCache::with_config(64, 16, AnalyzeConfig::default());
        assert!(cache.analyze("SELEC nonsense").is_err());
        cache.analyze("SELECT * FROM a_long_table_name").unwrap();
        assert!(cache.is_empty());
    }

    #[test]
    fn shared_across_threads() {
        let cache = Arc::new(AnalysisCache::new(64));
        let handles: Vec<_> = (0..4)
            .map(|n| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for i in 0..50 {
                        cache
                            .analyze(&format!("SELECT {} FROM t", (i + n) % 10))
                            .unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(cache.len(), 10);
    }
}
