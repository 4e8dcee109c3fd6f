//! Spool settings and errors.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// When appended records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every append call (each call is one batch of one or more events).
    EveryBatch,
    /// At most this long after an append (checked by appends and the shipper's timer).
    Interval(Duration),
    /// Left to the operating system.
    Never,
}

/// What a full spool does (the policy's `audit.failurePolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Drop the oldest segment, count the lost events and log an error.
    Open,
    /// Refuse appends until the collector has taken enough.
    Closed,
}

/// Spool settings.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Directory of the spool (created if missing); one process at a time.
    pub dir: PathBuf,
    /// Most undelivered bytes kept. Disk use stays below this plus one segment.
    pub max_bytes: u64,
    /// Size at which a segment is closed and a new one started (at most `max_bytes / 4`).
    pub segment_bytes: u64,
    /// When writes are forced to disk.
    pub fsync: FsyncPolicy,
    /// What a full spool does.
    pub failure_policy: FailurePolicy,
}

impl SpoolConfig {
    /// Defaults: 256 MiB, 8 MiB segments, fsync every second, policy `closed`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolConfig {
            dir: dir.into(),
            max_bytes: 256 << 20,
            segment_bytes: 8 << 20,
            fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
            failure_policy: FailurePolicy::Closed,
        }
    }
}

/// Spool errors.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Failure policy `closed` and no room: the sidecar refuses the statement.
    #[error("audit spool full ({pending} of {max} bytes undelivered)")]
    Full {
        /// Undelivered bytes.
        pending: u64,
        /// The limit.
        max: u64,
    },
    /// Another process holds the spool directory.
    #[error("audit spool {dir} is in use by another process")]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("audit spool {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Invalid settings.
    #[error("audit spool config: {0}")]
    Config(String),
}
