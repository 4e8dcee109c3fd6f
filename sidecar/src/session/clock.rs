//! `dbwarden_upstream_duration_seconds`: how long the database keeps a session busy, from the
//! first ReadyForQuery-producing message sent while idle to the ReadyForQuery that makes the
//! session idle again (a pipeline counts once). Two clock reads per round trip, none per row.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// No round trip in flight.
const IDLE: u64 = u64::MAX;

/// One session's round-trip clock.
#[derive(Debug)]
pub(super) struct UpstreamClock {
    metrics: Arc<Metrics>,
    origin: Instant,
    busy_since_us: AtomicU64,
}

impl UpstreamClock {
    pub(super) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            origin: Instant::now(),
            busy_since_us: AtomicU64::new(IDLE),
        }
    }

    /// The session goes from idle to waiting for the database.
    pub(super) fn busy(&self) {
        let now = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(IDLE - 1);
        self.busy_since_us.store(now, Ordering::Relaxed);
    }

    /// The session is idle again: observe the round trip, if one was timed.
    pub(super) fn idle(&self) {
        let since = self.busy_since_us.swap(IDLE, Ordering::Relaxed);
        if since != IDLE {
            let now = self.origin.elapsed();
            self.metrics
                .upstream_duration(now.saturating_sub(Duration::from_micros(since)));
        }
    }
}
