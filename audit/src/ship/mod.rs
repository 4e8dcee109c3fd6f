//! The shipper: a background task that reads batches from the spool in order, POSTs them to the
//! collector and acknowledges them only after a 2xx answer (at-least-once), retrying with
//! exponential backoff and jitter.
//!
//! It runs on a thread of its own (with a small runtime), not on the sessions' runtime: reading
//! the spool back, HTTP and acknowledging are background work, and on the sessions' thread they
//! would delay every statement queued behind them (the sidecar runs one thread by default).

mod config;
mod http;
pub mod otlp;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;

pub use config::{Backoff, Format, ShipperConfig, Token};
pub use http::{Sender, ShipError, without_userinfo};

use crate::spool::{Batch, Spool};
use crate::stats::Stats;

/// How often the idle shipper looks at the spool without being woken.
const IDLE_TICK: Duration = Duration::from_millis(250);

/// How often a lingering shipper looks whether a full batch is waiting.
const LINGER_CHECK: Duration = Duration::from_millis(10);

/// A running shipper. Dropping it stops it without draining (the spool stays consistent:
/// undelivered events are sent again after the next start); [`Shipper::shutdown`] drains first.
#[derive(Debug)]
pub struct Shipper {
    /// Signalled when the shipper's thread is done.
    done: Option<oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: watch::Sender<Option<Instant>>,
}

impl Drop for Shipper {
    fn drop(&mut self) {
        if self.done.is_some() {
            // Stop now: a request under way is abandoned (sent again after the next start).
            let _ = self.stop.send(Some(Instant::now()));
        }
        // Wait for the thread (milliseconds: it stops between steps), so the spool and its
        // directory lock are released when the shipper is gone.
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("audit shipper thread panicked");
        }
    }
}

impl Shipper {
    /// Starts the shipper on a thread of its own.
    pub fn spawn(
        cfg: ShipperConfig,
        spool: Arc<Spool>,
        stats: Arc<Stats>,
        wake: Arc<Notify>,
    ) -> Result<Shipper, ShipError> {
        let cfg = Arc::new(cfg);
        let sender = Sender::new(cfg.clone())?;
        let (stop, stop_rx) = watch::channel(None);
        let worker = Worker {
            cfg,
            sender,
            spool,
            stats,
            wake,
            stop: stop_rx,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ShipError::Start)?;
        let (done_tx, done) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("dbwarden-audit-shipper".into())
            .spawn(move || {
                runtime.block_on(worker.run());
                let _ = done_tx.send(());
            })
            .map_err(ShipError::Start)?;
        Ok(Shipper {
            done: Some(done),
            thread: Some(thread),
            stop,
        })
    }

    /// Stops the shipper: it keeps delivering until the spool is drained or `drain_for` has
    /// passed, then returns. Undelivered events stay in the spool for the next start.
    pub async fn shutdown(mut self, drain_for: Duration) {
        let _ = self.stop.send(Some(Instant::now() + drain_for));
        if let Some(done) = self.done.take()
            && done.await.is_err()
        {
            tracing::error!("audit shipper thread ended without finishing (it panicked)");
        }
    }
}

struct Worker {
    cfg: Arc<ShipperConfig>,
    sender: Sender,
    spool: Arc<Spool>,
    stats: Arc<Stats>,
    wake: Arc<Notify>,
    stop: watch::Receiver<Option<Instant>>,
}

impl Worker {
    fn deadline(&self) -> Option<Instant> {
        *self.stop.borrow()
    }

    async fn run(mut self) {
        let mut backoff = Backoff::new(self.cfg.backoff_initial, self.cfg.backoff_max);
        loop {
            if let Some(deadline) = self.deadline()
                && (self.spool.is_drained() || Instant::now() >= deadline)
            {
                break;
            }
            let batch = match self
                .spool
                .read_batch(self.cfg.batch_max_events, self.cfg.batch_max_bytes)
            {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    if self.deadline().is_some() {
                        break;
                    }
                    self.idle().await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit spool read failed");
                    self.stats.set_error(Some(e.to_string()));
                    if !self.sleep(backoff.next_delay()).await {
                        break;
                    }
                    continue;
                }
            };
            let more = batch.more;
            if !self.deliver(batch, &mut backoff).await {
                break;
            }
            if !more {
                // The spool had less than a batch: gather more before the next one, so a busy
                // sidecar sends a few full batches a second, not one per round trip.
                self.linger().await;
            }
        }
        if let Err(e) = self.spool.sync() {
            tracing::error!(error = %e, "audit spool fsync at shutdown failed");
        }
    }

    /// Waits for new events (then lingers to fill the batch), the idle tick, or a stop.
    async fn idle(&mut self) {
        tokio::select! {
            () = self.wake.notified() => self.linger().await,
            () = tokio::time::sleep(IDLE_TICK) => {}
            _ = self.stop.changed() => {}
        }
    }

    /// Waits for the batch to fill: `linger` at most, cut short once a full batch is waiting
    /// (looked at every [`LINGER_CHECK`]) or by a stop (which drains at once). Not waiting
    /// longer than a batch takes to fill keeps what is read in the spool's memory, and the
    /// batches full.
    async fn linger(&mut self) {
        if self.deadline().is_some() {
            return;
        }
        let until = Instant::now() + self.cfg.linger;
        loop {
            if self.spool.should_read(self.cfg.batch_max_bytes) {
                return;
            }
            let now = Instant::now();
            if now >= until {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until.min(now + LINGER_CHECK)) => {}
                _ = self.stop.changed() => return,
            }
        }
    }

    /// Sleeps `d`, cut short by a stop whose deadline passes first. False if the deadline passed.
    async fn sleep(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            let deadline = self.deadline();
            if let Some(dl) = deadline
                && dl <= until
            {
                tokio::time::sleep_until(dl).await;
                return false;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => return true,
                changed = self.stop.changed() => if changed.is_err() {
                    tokio::time::sleep_until(until).await;
                    return true;
                },
            }
        }
    }

    /// Delivers one batch, retrying until a 2xx or the stop deadline. False when stopping.
    async fn deliver(&mut self, batch: Batch, backoff: &mut Backoff) -> bool {
        let n = batch.count as u64;
        let body = match self.sender.encode(&batch) {
            Ok(body) => body,
            Err(e) => {
                // Records passed their hash check, so this is a bug, not data: keep them.
                tracing::error!(error = %e, events = n, "audit batch encoding failed; will retry");
                self.stats.set_error(Some(e.to_string()));
                self.spool.abandon(&batch);
                return self.sleep(backoff.next_delay()).await;
            }
        };
        loop {
            let mut stop = self.stop.clone();
            let attempt = tokio::select! {
                result = self.sender.post(body.clone()) => result,
                () = deadline_passed(&mut stop) => {
                    // Maybe delivered, maybe not: it is sent again after the next start.
                    self.spool.abandon(&batch);
                    return false;
                }
            };
            match attempt {
                Ok(()) => {
                    // The cursor's rename and the deletion of delivered segments wait for the
                    // device here, on the shipper's own thread, not the sessions'.
                    if let Err(e) = self.spool.ack(batch.end) {
                        tracing::error!(error = %e, "audit spool acknowledgement failed; events may be sent again");
                    }
                    Stats::add(&self.stats.shipped, n);
                    Stats::add(&self.stats.batches_ok, 1);
                    if backoff.attempts() > 0 {
                        tracing::info!(
                            events = n,
                            after_attempts = backoff.attempts(),
                            "audit collector reachable again"
                        );
                    }
                    self.stats.set_error(None);
                    backoff.reset();
                    return true;
                }
                Err(e) => {
                    Stats::add(&self.stats.batches_failed, 1);
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        error = %e,
                        kind = e.label(),
                        events = n,
                        attempt = backoff.attempts(),
                        retry_in_ms = delay.as_millis() as u64,
                        "audit batch not delivered; retrying"
                    );
                    self.stats.set_error(Some(e.to_string()));
                    if !self.sleep(delay).await {
                        self.spool.abandon(&batch);
                        return false;
                    }
                }
            }
        }
    }
}

/// Completes when a stop deadline has been set and has passed; never if the shipper is not
/// being stopped.
async fn deadline_passed(stop: &mut watch::Receiver<Option<Instant>>) {
    loop {
        let deadline = *stop.borrow_and_update();
        if let Some(deadline) = deadline {
            tokio::time::sleep_until(deadline).await;
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
