//! The spool's own unit tests: what the public API cannot show (handles kept for the
//! interval fsync, an injected fsync failure).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;

fn spool(dir: &Path, failure_policy: FailurePolicy) -> Spool {
    let cfg = SpoolConfig {
        max_bytes: 8 << 10,
        segment_bytes: 1 << 10,
        fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
        failure_policy,
        ..SpoolConfig::new(dir)
    };
    Spool::open(cfg, Arc::default()).unwrap().0
}

thread_local! {
    /// Makes this thread's next `EveryBatch` fsync fail.
    pub(super) static FAIL_SYNC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Reads and acknowledges everything.
fn drain(spool: &Spool) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    while let Some(batch) = spool.read_batch(100, 1 << 20).unwrap() {
        lines.extend(batch.records().map(<[u8]>::to_vec));
        spool.ack(batch.end).unwrap();
    }
    lines
}

fn unsynced(spool: &Spool) -> Vec<u64> {
    spool.lock().unsynced.iter().map(|(id, _)| *id).collect()
}

#[test]
fn a_delivered_segment_is_not_left_for_the_interval_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path(), FailurePolicy::Closed);
    let record = [b'x'; 300];
    for _ in 0..12 {
        spool.append(&[&record]).unwrap();
    }
    // Three records per segment: the closed ones wait for the interval fsync.
    assert_eq!(unsynced(&spool), [0, 1, 2]);
    let batch = spool.read_batch(4, 1 << 20).unwrap().unwrap();
    spool.ack(batch.end).unwrap();
    // A batch stays within a segment: 0 is delivered, and let go unsynced.
    assert_eq!(unsynced(&spool), [1, 2]);
    drain(&spool);
    assert!(unsynced(&spool).is_empty());
}

#[test]
fn an_append_whose_fsync_failed_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        fsync: FsyncPolicy::EveryBatch,
        ..SpoolConfig::new(dir.path())
    };
    let spool = Spool::open(cfg, Arc::default()).unwrap().0;
    spool.append(&[b"a"]).unwrap();
    FAIL_SYNC.with(|fail| fail.set(true));
    assert!(matches!(
        spool.append(&[b"lost"]),
        Err(SpoolError::Io { op: "syncing", .. })
    ));
    spool.append(&[b"c"]).unwrap();
    let lines = drain(&spool);
    assert_eq!(lines, [b"a", b"c"]);
    // Nor is it in the file, where a restart would find it.
    drop(spool);
    let file = fs::read(files::segment_path(dir.path(), 0)).unwrap();
    assert_eq!(file, b"a\nc\n");
}

#[test]
fn appends_go_on_after_a_rotation_failed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path(), FailurePolicy::Closed);
    let record = [b'x'; 300];
    for _ in 0..3 {
        spool.append(&[&record]).unwrap();
    }
    // The next segment's file is in the way: the rotation the fourth append needs fails.
    let blocker = files::segment_path(dir.path(), 1);
    fs::write(&blocker, b"").unwrap();
    assert!(matches!(
        spool.append(&[&record]),
        Err(SpoolError::Io { op: "creating", .. })
    ));
    fs::remove_file(&blocker).unwrap();
    // A small append (no rotation needed by size) still gets a segment to go to.
    spool.append(&[b"y"]).unwrap();
    let lines = drain(&spool);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3], b"y");
}

#[test]
fn a_dropped_segment_is_not_left_for_the_interval_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path(), FailurePolicy::Open);
    let record = [b'x'; 300];
    // 8 KiB hold 27 records (nine segments of three): the 28th pushes out the oldest.
    for _ in 0..30 {
        spool.append(&[&record]).unwrap();
    }
    let oldest = spool.lock().segments.front().map(|s| s.id).unwrap();
    assert!(oldest > 0);
    let left = unsynced(&spool);
    assert_eq!(left.first(), Some(&oldest), "{left:?}");
}

#[test]
fn sizes_are_published_after_a_drop_whose_append_then_failed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path(), FailurePolicy::Open);
    let record = [b'x'; 300];
    // Full: nine segments of three records.
    for _ in 0..27 {
        spool.append(&[&record]).unwrap();
    }
    // The next append drops the oldest segment, then needs a new one, whose file is in the way.
    fs::write(files::segment_path(dir.path(), 9), b"").unwrap();
    assert!(matches!(
        spool.append(&[&record]),
        Err(SpoolError::Io { op: "creating", .. })
    ));
    let inner = spool.lock();
    assert_eq!(inner.segments.front().map(|s| s.id), Some(1));
    let pending = spool.pending(&inner);
    assert_eq!(spool.undelivered.load(Relaxed), pending);
    assert_eq!(spool.stats.snapshot().spool_bytes, pending);
}
