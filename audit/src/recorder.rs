//! Group commit: events are stamped into the chain and sealed at once, then written to the spool
//! together with the other sessions' events of the same scheduler turn, in one `write(2)`.
//!
//! [`Recorder::submit`] seals events into a pending buffer and returns a [`Ticket`];
//! [`Ticket::settle`] gives the other ready tasks one turn to add theirs, then writes the
//! buffer (unless one of them already did) and reports how that write went. A statement is
//! forwarded only after its ticket settled, so its event is in the spool file before the
//! statement reaches the database, as with one write per event, at a fraction of the system
//! calls when many sessions are busy.

use std::collections::VecDeque;
use std::mem;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::sync::Notify;

use crate::auditor::RecordError;
use crate::chain::Chain;
use crate::render::Record;
use crate::spool::{FailurePolicy, Spool};
use crate::stats::Stats;

/// Most bytes a fresh pending buffer is sized for.
const LINES_CAPACITY: usize = 64 << 10;

/// Failed writes remembered for tickets that have not settled yet.
const FAILURES_KEPT: usize = 64;

#[derive(Debug)]
struct Pending {
    /// The chain's head after every sealed event, written or not.
    chain: Chain,
    /// The head before the events being sealed (kept between seals to reuse its strings).
    before: Chain,
    /// The head before the first pending event: where a refused write rolls back to.
    rollback: Option<Chain>,
    /// Sealed lines, newline-terminated, in chain order.
    lines: Vec<u8>,
    events: u64,
    /// How many of `events` were deferred (records of what already happened).
    deferred: u64,
    /// The number of the write `lines` will go out in; every earlier write is done.
    write: u64,
    /// Recent failed writes, oldest first.
    failed: VecDeque<(u64, Arc<RecordError>)>,
    /// The newest failure no longer in `failed`: a ticket from before it counts it as its own.
    forgotten: Option<(u64, Arc<RecordError>)>,
}

impl Pending {
    /// The first failure among writes `first..=last`.
    fn failure(&self, first: u64, last: u64) -> Option<Arc<RecordError>> {
        if let Some((w, e)) = &self.forgotten
            && first <= *w
        {
            return Some(Arc::clone(e));
        }
        self.failed
            .iter()
            .find(|(w, _)| (first..=last).contains(w))
            .map(|(_, e)| Arc::clone(e))
    }
}

/// Seals events and writes them to the spool in groups.
#[derive(Debug)]
pub(crate) struct Recorder {
    pending: Mutex<Pending>,
    spool: Arc<Spool>,
    stats: Arc<Stats>,
    /// Wakes the shipper after a write.
    wake: Arc<Notify>,
    policy: FailurePolicy,
    /// Signalled when deferred events wait for a write.
    deferred: Arc<Notify>,
}

/// How long deferred events may wait for a session's write before they are written alone.
pub(crate) const DEFER_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// Events sealed but perhaps not written yet; [`Ticket::settle`] before acting on them.
/// Dropping an unsettled ticket writes the pending events at once, so none is left behind.
#[must_use = "settle the ticket before forwarding what its events record"]
#[derive(Debug)]
pub struct Ticket {
    recorder: Arc<Recorder>,
    /// The writes the events went into (several when tickets were merged).
    first: u64,
    last: u64,
    /// False once merged into another ticket or settled.
    armed: bool,
    /// The seqs the submit that made this ticket sealed (kept through merges).
    seqs: Range<u64>,
}

impl Ticket {
    /// The chain positions of the events sealed by the submit that returned this ticket, in
    /// the order they were given (a merge does not change them).
    pub fn seqs(&self) -> Range<u64> {
        self.seqs.clone()
    }

    /// Takes on `other`'s events: settling this ticket then settles both.
    pub fn merge(&mut self, mut other: Ticket) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        other.armed = false;
    }

    /// Waits one scheduler turn (other ready sessions add their events to the same write),
    /// then makes sure the events are written. `Err` only when the statement must not run:
    /// failure policy `closed` and a write failed (under `open` the events were counted as
    /// dropped and logged).
    pub async fn settle(mut self) -> Result<(), Arc<RecordError>> {
        self.armed = false;
        if !self.recorder.written(self.last) {
            BackOfTheQueue(false).await;
            self.recorder.flush();
        }
        match self.recorder.lock().failure(self.first, self.last) {
            Some(e) if e.must_refuse() => Err(e),
            _ => Ok(()),
        }
    }

    /// Writes now, without waiting for others. `Err` when any of its writes failed.
    pub fn settle_now(mut self) -> Result<(), Arc<RecordError>> {
        self.armed = false;
        self.recorder.flush();
        match self.recorder.lock().failure(self.first, self.last) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Pending once, after waking itself: the task goes to the back of the run queue, behind the
/// sessions already woken in this turn. (`tokio::task::yield_now` would also wait for a poll
/// of the I/O driver, an extra `epoll_wait` per statement on a busy single-threaded runtime.)
struct BackOfTheQueue(bool);

impl Future for BackOfTheQueue {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.armed && !self.recorder.written(self.last) {
            self.recorder.flush();
        }
    }
}

impl Recorder {
    pub(crate) fn new(
        chain: Chain,
        spool: Arc<Spool>,
        stats: Arc<Stats>,
        wake: Arc<Notify>,
        policy: FailurePolicy,
    ) -> Self {
        Recorder {
            pending: Mutex::new(Pending {
                before: chain.clone(),
                chain,
                rollback: None,
                lines: Vec::new(),
                events: 0,
                deferred: 0,
                write: 0,
                failed: VecDeque::new(),
                forgotten: None,
            }),
            spool,
            stats,
            wake,
            policy,
            deferred: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Every field is consistent between statements: a panic cannot leave half an update.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when write `write` is done (it may have failed).
    fn written(&self, write: u64) -> bool {
        self.lock().write > write
    }

    /// The seq the next sealed event gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.lock().chain.next_seq()
    }

    /// Seals `events` (all or none) into the pending write. Under failure policy `closed` a
    /// spool without room for them refuses them here, unstamped. `ids` receives their ids.
    pub(crate) fn submit<E: Record>(
        self: &Arc<Self>,
        events: impl IntoIterator<Item = E>,
        ids: Option<&mut Vec<String>>,
    ) -> Result<Ticket, RecordError> {
        self.seal(events, ids, false)
    }

    /// [`Self::submit`]; `deferred` marks the events as records of what already happened.
    fn seal<E: Record>(
        self: &Arc<Self>,
        events: impl IntoIterator<Item = E>,
        mut ids: Option<&mut Vec<String>>,
        deferred: bool,
    ) -> Result<Ticket, RecordError> {
        let mut guard = self.lock();
        let p = &mut *guard;
        let (start, start_events) = (p.lines.len(), p.events);
        p.before.clone_from(&p.chain);
        for event in events {
            match p.chain.seal_into(&event, &mut p.lines) {
                Ok(seq) => {
                    p.events += 1;
                    if let Some(ids) = ids.as_deref_mut() {
                        ids.push(format!("{}-{seq}", p.chain.instance()));
                    }
                }
                Err(e) => {
                    p.lines.truncate(start);
                    p.events = start_events;
                    p.chain.clone_from(&p.before);
                    return Err(RecordError::Encode(e));
                }
            }
        }
        if self.policy == FailurePolicy::Closed
            && let Err(full) = self.spool.check_room(p.lines.len() as u64)
        {
            Stats::add(&self.stats.refused, p.events - start_events);
            p.lines.truncate(start);
            p.events = start_events;
            p.chain.clone_from(&p.before);
            return Err(RecordError::Spool {
                source: full,
                policy: self.policy,
            });
        }
        if start_events == 0 && p.events > 0 {
            p.rollback = Some(p.before.clone());
        }
        if deferred {
            p.deferred += p.events - start_events;
        }
        Ok(Ticket {
            recorder: Arc::clone(self),
            first: p.write,
            last: p.write,
            armed: true,
            seqs: p.before.next_seq()..p.chain.next_seq(),
        })
    }

    /// Seals `events` into the pending write without waiting for it: they go out with the next
    /// session's write, or within [`DEFER_LINGER`] when no session writes. For records of
    /// what already happened (a statement's result), which nothing waits on.
    pub(crate) fn defer<E: Record>(
        self: &Arc<Self>,
        events: impl IntoIterator<Item = E>,
    ) -> Result<(), RecordError> {
        let mut ticket = self.seal(events, None, true)?;
        ticket.armed = false;
        self.deferred.notify_one();
        Ok(())
    }

    /// Writes deferred events that no session's write took along, [`DEFER_LINGER`] after the
    /// first of them; runs until the recorder is dropped (or the task aborted).
    pub(crate) async fn write_deferred(recorder: std::sync::Weak<Self>) {
        let Some(notify) = recorder.upgrade().map(|r| Arc::clone(&r.deferred)) else {
            return;
        };
        loop {
            notify.notified().await;
            tokio::time::sleep(DEFER_LINGER).await;
            match recorder.upgrade() {
                Some(r) => r.flush(),
                None => return,
            }
        }
    }

    /// Writes the pending events, if any, in one append.
    pub(crate) fn flush(&self) {
        let mut p = self.lock();
        if p.events == 0 {
            return;
        }
        // The spool keeps the lines for the shipper: hand them over rather than copy them. The
        // next buffer starts no larger than a typical write (a burst's size is not kept).
        let next = Vec::with_capacity(p.lines.len().min(LINES_CAPACITY));
        let lines = mem::replace(&mut p.lines, next);
        let result = self.spool.append_lines(lines, p.events);
        let n = mem::take(&mut p.events);
        let deferred = mem::take(&mut p.deferred);
        let rollback = p.rollback.take();
        let write = p.write;
        p.write += 1;
        let e = match result {
            Ok(()) => {
                Stats::add(&self.stats.recorded, n);
                Stats::add(&self.stats.spool_writes, 1);
                self.wake.notify_one();
                return;
            }
            Err(e) => e,
        };
        // (`Full` only happens under `closed`: `open` makes room by dropping.)
        if self.policy == FailurePolicy::Closed && deferred == 0 {
            // Not stored, and the statements will not run: no gap in the chain.
            if let Some(chain) = rollback {
                p.chain = chain;
            }
            Stats::add(&self.stats.refused, n);
        } else if self.policy == FailurePolicy::Closed {
            // The write also held records of what already ran: they are lost, so the chain
            // keeps their seqs and the loss shows as a gap (the statements are still refused).
            Stats::add(&self.stats.refused, n - deferred);
            Stats::add(&self.stats.dropped, deferred);
        } else {
            // The statements go ahead without their events: the seqs stay used, so the loss
            // shows as a gap in the chain too.
            Stats::add(&self.stats.dropped, n);
        }
        tracing::error!(error = %e, events = n, "audit events could not be spooled");
        if p.failed.len() == FAILURES_KEPT {
            p.forgotten = p.failed.pop_front();
        }
        let error = Arc::new(RecordError::Spool {
            source: e,
            policy: self.policy,
        });
        p.failed.push_back((write, error));
    }
}
