//! The cancel registry: the keys the sidecar hands to clients, mapped to the upstream keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::backend::UpstreamTarget;
use crate::protocol::startup::CancelRequest;

/// Shared by every listener: client key -> (upstream target, upstream key).
#[derive(Debug, Default)]
pub struct CancelRegistry {
    entries: Mutex<HashMap<u32, Entry>>,
}

#[derive(Debug)]
struct Entry {
    secret: u32,
    upstream: CancelRequest,
    target: Arc<UpstreamTarget>,
    /// The session's held statement, if any (it never reached the database).
    held: Arc<HeldCancel>,
}

/// How a CancelRequest reaches a statement the session holds for a decision. A cancel that
/// takes a held statement is passed on to the database only while statements sent before it
/// still run there: otherwise the database would cancel whatever the client sends next.
#[derive(Debug, Default)]
pub struct HeldCancel {
    notify: Notify,
    /// True while a statement is held. A cancel and the end of the hold both take it, so
    /// exactly one of them decides the statement's fate.
    holding: AtomicBool,
    /// The session's counters, once it relays: whether the database still owes answers.
    progress: OnceLock<Arc<super::Progress>>,
}

impl HeldCancel {
    /// A future that completes when a cancel takes the held statement; a cancel only wakes
    /// futures that are waiting, so enable it, then see whether [`Self::taken`] already.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// A statement is held from now on.
    pub fn hold(&self) {
        self.holding.store(true, Ordering::Release);
    }

    /// True when a cancel took the held statement (or none is held).
    pub fn taken(&self) -> bool {
        !self.holding.load(Ordering::Acquire)
    }

    /// The hold ends; false when a cancel took the statement first (it must not run).
    pub fn release(&self) -> bool {
        self.holding.swap(false, Ordering::AcqRel)
    }

    /// Lets a cancel see whether the database still runs something of this session.
    pub(super) fn attach(&self, progress: Arc<super::Progress>) {
        let _ = self.progress.set(progress);
    }

    /// A cancel request: true when it took a held statement and nothing else of the session
    /// runs in the database (then it goes no further).
    fn cancel(&self) -> bool {
        let took = self.holding.swap(false, Ordering::AcqRel);
        if took {
            self.notify.notify_waiters();
        }
        // Nothing behind a held statement is sent while it is held: what runs came before it.
        took && self.progress.get().is_none_or(|p| p.idle())
    }
}

/// Where a client's cancel request goes.
#[derive(Debug)]
pub enum CancelTarget {
    /// It refused the session's held statement, and goes no further.
    Held,
    /// To the database, with the session's upstream key (having also refused a held
    /// statement, if statements sent before it still run).
    Upstream(Arc<UpstreamTarget>, CancelRequest),
}

/// A registered session; removes itself from the registry on drop.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<CancelRegistry>,
    /// The key handed to the client in BackendKeyData.
    pub key: CancelRequest,
    /// How a CancelRequest with this key reaches a held statement.
    pub cancelled: Arc<HeldCancel>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.key.pid);
    }
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // getrandom only fails when the OS has no entropy source; a fixed value then only makes
    // the key guessable, and the loop in `register` still avoids collisions.
    let _ = getrandom::fill(&mut b);
    u32::from_ne_bytes(b)
}

impl CancelRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes a fresh random client key for a session whose server key is `upstream`.
    pub fn register(
        self: &Arc<Self>,
        target: Arc<UpstreamTarget>,
        upstream: CancelRequest,
    ) -> Registration {
        let mut map = self.lock();
        let mut pid = random_u32();
        while pid == 0 || map.contains_key(&pid) {
            pid = pid.wrapping_add(random_u32() | 1);
        }
        let secret = random_u32();
        let cancelled = Arc::new(HeldCancel::default());
        map.insert(
            pid,
            Entry {
                secret,
                upstream,
                target,
                held: cancelled.clone(),
            },
        );
        Registration {
            registry: self.clone(),
            key: CancelRequest { pid, secret },
            cancelled,
        }
    }

    /// Where a client's cancel request goes: the session's held statement, if any, else its
    /// upstream; `None` unless pid and secret match.
    pub fn lookup(&self, key: CancelRequest) -> Option<CancelTarget> {
        let map = self.lock();
        let entry = map.get(&key.pid)?;
        if entry.secret != key.secret {
            return None;
        }
        if entry.held.cancel() {
            return Some(CancelTarget::Held);
        }
        Some(CancelTarget::Upstream(entry.target.clone(), entry.upstream))
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::HeldCancel;

    #[tokio::test]
    async fn a_cancel_takes_a_held_statement_once_and_nothing_else() {
        let held = HeldCancel::default();
        // Nothing held: the cancel goes on to the database.
        assert!(!held.cancel());

        // Held: the cancel takes it and wakes the waiting session; the hold's end then knows.
        let cancelled = held.notified();
        tokio::pin!(cancelled);
        cancelled.as_mut().enable();
        held.hold();
        assert!(held.cancel());
        tokio::time::timeout(std::time::Duration::from_secs(5), cancelled)
            .await
            .expect("the session was not woken");
        assert!(!held.release());
        // A second cancel, after the hold, goes to the database again.
        assert!(!held.cancel());

        // A hold the verdict ended first: the cancel that follows goes to the database.
        held.hold();
        assert!(held.release());
        assert!(!held.cancel());
    }
}
