//! A bounded, sharded cache of analyses, keyed by statement text and by statement shape.
//!
//! A lookup tries the exact text first (one hash, one short lock, an `Arc` clone). On a miss the
//! text is looked up by its [shape](super::shape): the tokens with literal values, and the text of
//! comments that cannot be optimizer hints, erased, so `... WHERE aid = 1` and `... WHERE aid = 2`
//! share an entry. The shape key of a plain statement is read straight from its bytes
//! ([`quick_key`](super::shape::quick_key)). On a miss there (or for any other statement) the text
//! is tokenized once, with the parser's own tokenizer, and looked up by the shape of those tokens.
//! On a second miss the statement is analysed from them and kept under its text, and
//! under its shape when the analysis provably holds for every text of the shape
//! ([`literal_independent`](super::shape::literal_independent)); otherwise (a literal that became a
//! name, `EXPLAIN` options with values, strings that only parse statement by statement) it is kept
//! under its exact text only. A shape hit does not add the text: literal variants do not crowd the
//! cache, at the price of finding the shape of each of them.
//!
//! Each shard holds two [`ClockMap`]s (texts and shapes), each `Mutex`-guarded with CLOCK eviction.
//! Analysis runs outside the lock, so two connections missing on the same text may both analyse it;
//! the second insert is a no-op. Errors are not cached (the caller denies, and a retry costs no more
//! than the first try). Statements longer than `max_entry_bytes` are analysed but not kept, nor are
//! shapes whose key is longer; memory stays bounded by `2 * capacity * max_entry_bytes` plus the
//! analyses.

mod clock;
#[cfg(test)]
mod tests;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{Analysis, AnalyzeConfig, AnalyzeError, analyze_lexed, analyze_with, check_size};
use super::{lex, shape};
use crate::carried::Carried;
use crate::mask::MaskedUseMemo;
use clock::ClockMap;

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    texts: ClockMap,
    shapes: ClockMap,
}

/// A thread-safe, bounded cache of [`Analysis`] per statement text and shape.
pub struct AnalysisCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    max_entry_bytes: usize,
    hasher: RandomState,
    config: AnalyzeConfig,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Hits found by the quick shape key, for the tests to see it used.
    #[cfg(test)]
    quick_hits: AtomicU64,
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
    /// A cache of about `capacity` statement texts and as many shapes (rounded up to a multiple of
    /// the shard count), with default analysis limits and entries up to 64 KiB.
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
            #[cfg(test)]
            quick_hits: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        let index = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        // A panic while holding the lock cannot leave a shard inconsistent in a harmful way: at worst
        // a ring slot and the map disagree, which `insert` tolerates.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The analysis of `sql`, from the cache or freshly computed (and then cached).
    pub fn analyze(&self, sql: &str) -> Result<Arc<Analysis>, AnalyzeError> {
        if sql.len() > self.max_entry_bytes {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return analyze_with(sql, &self.config).map(Arc::new);
        }
        if let Some(hit) = self.shard(sql).texts.get(sql) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        // What `analyze_with` does, with a look at the shape between tokenizing and parsing.
        check_size(sql, &self.config)?;
        let quick = shape::quick_key(sql, self.max_entry_bytes);
        if let Some(key) = &quick
            && let Some(hit) = self.shard(key).shapes.get(key)
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            #[cfg(test)]
            self.quick_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        let tokens = lex::tokenize(sql)?;
        let shape = shape::of(&tokens, self.max_entry_bytes);
        // Debug builds only: on a mismatch either key may hold text the other side took for a
        // literal.
        debug_assert!(
            quick.is_none() || quick.as_ref() == shape.as_ref().map(|shape| &shape.key),
            "quick shape key {quick:?} is not the parser's {:?}",
            shape.as_ref().map(|shape| &shape.key)
        );
        if quick.is_none()
            && let Some(shape) = &shape
            && let Some(hit) = self.shard(&shape.key).shapes.get(&shape.key)
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let (mut analysis, shared) = analyze_lexed(sql, tokens, &self.config, shape.as_ref())?;
        analysis.masked_use = Carried(MaskedUseMemo::enabled());
        let analysis = Arc::new(analysis);
        self.shard(sql)
            .texts
            .insert(sql, Arc::clone(&analysis), self.per_shard);
        if let Some(shape) = shape.filter(|_| shared) {
            self.shard(&shape.key)
                .shapes
                .insert(&shape.key, Arc::clone(&analysis), self.per_shard);
        }
        Ok(analysis)
    }

    /// Entries currently cached (texts and shapes).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let shard = s.lock().unwrap_or_else(PoisonError::into_inner);
                shard.texts.len() + shard.shapes.len()
            })
            .sum()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries the cache holds (texts and shapes).
    pub fn capacity(&self) -> usize {
        2 * self.per_shard * SHARDS
    }

    /// Lookups answered from the cache (by text or by shape).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that had to analyse.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}
