//! The sidecar's entry point: chain + spool + shipper behind one handle.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::chain::Chain;
use crate::event::Event;
use crate::recorder::{Recorder, Ticket};
use crate::render::Record;
use crate::ship::{ShipError, Shipper, ShipperConfig};
use crate::spool::{FailurePolicy, FsyncPolicy, Spool, SpoolConfig, SpoolError};
use crate::stats::{Stats, StatsSnapshot};

/// Everything the sidecar configures.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// This sidecar's chain id: unique for the life of the spool directory, e.g.
    /// `<pod name>.<pod uid>`. A restart on the same spool goes on with the same chain.
    pub instance: String,
    /// The on-disk spool.
    pub spool: SpoolConfig,
    /// The collector.
    pub shipper: ShipperConfig,
}

/// Errors opening the auditor.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The shipper could not be set up (URL, TLS).
    #[error(transparent)]
    Ship(#[from] ShipError),
    /// Not called from within a Tokio runtime (the auditor runs timers on it).
    #[error("the auditor must be opened from within a Tokio runtime")]
    NoRuntime,
    /// The instance id is empty or has characters that do not belong in an event id.
    #[error("audit instance id {0:?}: want 1-253 characters of [A-Za-z0-9._:-]")]
    Instance(String),
}

/// Errors recording an event.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The spool is full (policy `closed`) or could not be written.
    #[error("{source}")]
    Spool {
        /// The cause; [`SpoolError::Full`] displays as "audit spool full (...)".
        #[source]
        source: SpoolError,
        /// The failure policy in force.
        policy: FailurePolicy,
    },
    /// The event could not be serialized.
    #[error("audit event encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

impl RecordError {
    /// True when the statement must be refused (failure policy `closed`). Under `open` the
    /// event is already counted as dropped and logged, and the statement may run.
    pub fn must_refuse(&self) -> bool {
        match self {
            RecordError::Spool { policy, .. } => *policy == FailurePolicy::Closed,
            RecordError::Encode(_) => true,
        }
    }

    /// Bounded metric label.
    pub fn label(&self) -> &'static str {
        match self {
            RecordError::Spool {
                source: SpoolError::Full { .. },
                ..
            } => "spool_full",
            RecordError::Spool { .. } => "spool_io",
            RecordError::Encode(_) => "encode",
        }
    }
}

/// Records audit events and ships them. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Auditor {
    recorder: Arc<Recorder>,
    spool: Arc<Spool>,
    stats: Arc<Stats>,
    wake: Arc<Notify>,
    shipper: Mutex<Option<Shipper>>,
    syncer: Option<Syncer>,
    /// Writes deferred events no session's write took along.
    lingerer: tokio::task::JoinHandle<()>,
}

impl Drop for Auditor {
    fn drop(&mut self) {
        if let Some(syncer) = self.syncer.take() {
            syncer.task.abort();
        }
        self.lingerer.abort();
        // Deferred events waiting for their linger go to the spool now.
        self.recorder.flush();
    }
}

fn valid_instance(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

impl Auditor {
    /// Opens the spool (going on with the chain found there if it is this instance's) and
    /// starts the shipper on the current Tokio runtime.
    pub fn open(cfg: AuditConfig) -> Result<Auditor, OpenError> {
        if !valid_instance(&cfg.instance) {
            return Err(OpenError::Instance(cfg.instance));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(OpenError::NoRuntime);
        }
        let stats = Arc::new(Stats::default());
        let policy = cfg.spool.failure_policy;
        let (spool, head) = Spool::open(cfg.spool, stats.clone())?;
        let chain = match head {
            Some(h) if h.instance == cfg.instance => {
                tracing::info!(instance = %h.instance, seq = h.seq, "audit chain continues from the spool");
                Chain::resume(h.instance, h.seq, h.hash)
            }
            _ => Chain::new(cfg.instance),
        };
        let spool = Arc::new(spool);
        let wake = Arc::new(Notify::new());
        let shipper = Shipper::spawn(cfg.shipper, spool.clone(), stats.clone(), wake.clone())?;
        let syncer = match spool.config().fsync {
            FsyncPolicy::Interval(every) => {
                let stop = Arc::new(Notify::new());
                let task = tokio::spawn(sync_every(spool.clone(), every, stop.clone()));
                Some(Syncer { task, stop })
            }
            FsyncPolicy::EveryBatch | FsyncPolicy::Never => None,
        };
        let recorder = Arc::new(Recorder::new(
            chain,
            spool.clone(),
            stats.clone(),
            wake.clone(),
            policy,
        ));
        let lingerer = tokio::spawn(Recorder::write_deferred(Arc::downgrade(&recorder)));
        Ok(Auditor {
            recorder,
            spool,
            stats,
            wake,
            shipper: Mutex::new(Some(shipper)),
            syncer,
            lingerer,
        })
    }

    /// Stamps `event` into the chain and writes it to the spool before returning (one `write`,
    /// no await). Returns the event id. On `Err`, see [`RecordError::must_refuse`].
    pub fn record(&self, event: Event) -> Result<String, Arc<RecordError>> {
        let mut ids = self.record_all(vec![event])?;
        Ok(ids.pop().unwrap_or_default())
    }

    /// Records several events in one write (and one fsync under `EveryBatch`), with any events
    /// other sessions submitted before them. All or none.
    pub fn record_all(&self, events: Vec<Event>) -> Result<Vec<String>, Arc<RecordError>> {
        let mut ids = Vec::with_capacity(events.len());
        let ticket = self.recorder.submit(events, Some(&mut ids))?;
        ticket.settle_now()?;
        Ok(ids)
    }

    /// Stamps `events` into the chain (all or none) for a write shared with the other
    /// sessions of this scheduler turn: [`Ticket::settle`] before forwarding the statement
    /// they record. Under failure policy `closed` a full spool refuses them here.
    pub fn submit<E: Record>(
        &self,
        events: impl IntoIterator<Item = E>,
    ) -> Result<Ticket, RecordError> {
        self.recorder.submit(events, None)
    }

    /// Stamps `events` into the chain (all or none) without waiting for them to be written:
    /// they go out with the next write of any session, or a few milliseconds later alone. For
    /// records of what already happened, such as a statement's result. `Err` when they could
    /// not be sealed or (failure policy `closed`) the spool has no room for them.
    pub fn defer<E: Record>(&self, events: impl IntoIterator<Item = E>) -> Result<(), RecordError> {
        self.recorder.defer(events)
    }

    /// The seq the next recorded event gets (it goes on across restarts on the same spool).
    pub fn next_seq(&self) -> u64 {
        self.recorder.next_seq()
    }

    /// The live counters, for `/metrics`.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The spool directory.
    pub fn spool_dir(&self) -> PathBuf {
        self.spool.config().dir.clone()
    }

    /// Waits up to `timeout` until every recorded event was delivered. True if it was.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.spool.is_drained() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            self.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops shipping after delivering what it can within `drain_for`, fsyncs the spool and
    /// releases it. Undelivered events are sent by the next `open` on the same directory.
    pub async fn shutdown(mut self, drain_for: Duration) {
        self.recorder.flush();
        let shipper = self
            .shipper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(shipper) = shipper {
            self.wake.notify_one();
            shipper.shutdown(drain_for).await;
        }
        if let Some(syncer) = self.syncer.take() {
            // Not aborted: an fsync it has on the blocking pool finishes first, so none still
            // holds the spool (and its directory lock) once this returns.
            syncer.stop.notify_one();
            let _ = syncer.task.await;
        }
        if let Err(e) = self.spool.sync() {
            tracing::error!(error = %e, "audit spool fsync at shutdown failed");
        }
    }
}

/// The interval fsync task and what stops it between two fsyncs.
#[derive(Debug)]
struct Syncer {
    task: tokio::task::JoinHandle<()>,
    stop: Arc<Notify>,
}

/// Interval fsync, on the blocking pool so no runtime worker waits for the disk. Ends when
/// `stop` is notified, never in the middle of an fsync.
async fn sync_every(spool: Arc<Spool>, every: Duration, stop: Arc<Notify>) {
    let mut tick = tokio::time::interval((every / 2).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.notified() => return,
        }
        let spool = spool.clone();
        match tokio::task::spawn_blocking(move || spool.sync_if_due()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "audit spool fsync failed"),
            Err(e) => tracing::error!(error = %e, "audit spool fsync task failed"),
        }
    }
}
