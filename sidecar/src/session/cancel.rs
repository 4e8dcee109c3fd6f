//! The cancel registry: the keys the sidecar hands to clients, mapped to the upstream keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

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
    /// Wakes the session's held statement, if any (it never reached the database).
    held: Arc<Notify>,
}

/// A registered session; removes itself from the registry on drop.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<CancelRegistry>,
    /// The key handed to the client in BackendKeyData.
    pub key: CancelRequest,
    /// Notified when a CancelRequest with this key arrives.
    pub cancelled: Arc<Notify>,
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
        let cancelled = Arc::new(Notify::new());
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

    /// Finds the upstream for a client's cancel request and wakes the session's held statement,
    /// if any; `None` unless pid and secret match.
    pub fn lookup(&self, key: CancelRequest) -> Option<(Arc<UpstreamTarget>, CancelRequest)> {
        let map = self.lock();
        let entry = map.get(&key.pid)?;
        if entry.secret != key.secret {
            return None;
        }
        entry.held.notify_waiters();
        Some((entry.target.clone(), entry.upstream))
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
