//! Counters the sidecar exports on `/metrics` (`dbwarden_audit_*`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared by the recorder, the spool and the shipper.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) recorded: AtomicU64,
    pub(crate) spool_writes: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) shipped: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) corrupt: AtomicU64,
    pub(crate) spool_bytes: AtomicU64,
    pub(crate) spool_segments: AtomicU64,
    pub(crate) batches_ok: AtomicU64,
    pub(crate) batches_failed: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Events stamped and written to the spool (`dbwarden_audit_events_spooled_total`).
    pub recorded: u64,
    /// Writes to the spool: several sessions' events share one when they arrive together
    /// (`dbwarden_audit_spool_writes_total`).
    pub spool_writes: u64,
    /// Events refused under failure policy `closed` (spool full or not writable): the
    /// sidecar refused their statements.
    pub refused: u64,
    /// Events the collector accepted with a 2xx (`dbwarden_audit_events_shipped_total`).
    pub shipped: u64,
    /// Events lost under policy `open`: dropped with the oldest segment, or not writable
    /// (`dbwarden_audit_events_dropped_total`).
    pub dropped: u64,
    /// Spool records skipped because they failed their hash check.
    pub corrupt: u64,
    /// Bytes in the spool not yet delivered (`dbwarden_audit_spool_bytes`).
    pub spool_bytes: u64,
    /// Segment files in the spool.
    pub spool_segments: u64,
    /// Batches the collector accepted.
    pub batches_ok: u64,
    /// Failed delivery attempts (connection errors, timeouts, non-2xx answers).
    pub batches_failed: u64,
    /// The last delivery or spool error, if the last attempt failed.
    pub last_error: Option<String>,
}

impl Stats {
    /// Copies every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            recorded: get(&self.recorded),
            spool_writes: get(&self.spool_writes),
            refused: get(&self.refused),
            shipped: get(&self.shipped),
            dropped: get(&self.dropped),
            corrupt: get(&self.corrupt),
            spool_bytes: get(&self.spool_bytes),
            spool_segments: get(&self.spool_segments),
            batches_ok: get(&self.batches_ok),
            batches_failed: get(&self.batches_failed),
            last_error: self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}
