//! The spool on its own: order across restarts, a torn tail, a corrupt record, full-spool
//! policies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;

use dbwarden_audit::spool::{FailurePolicy, FsyncPolicy, Spool, SpoolConfig, SpoolError};
use dbwarden_audit::{Chain, Stats};

fn cfg(dir: &std::path::Path, max: u64, policy: FailurePolicy) -> SpoolConfig {
    SpoolConfig {
        max_bytes: max,
        segment_bytes: max / 4,
        fsync: FsyncPolicy::EveryBatch,
        failure_policy: policy,
        ..SpoolConfig::new(dir)
    }
}

fn lines(chain: &mut Chain, n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| chain.stamp(common::statement(i)).unwrap().line)
        .collect()
}

fn drain(spool: &Spool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(batch) = spool.read_batch(7, 4096).unwrap() {
        out.extend(batch.records().map(<[u8]>::to_vec));
        spool.ack(batch.end).unwrap();
    }
    out
}

#[test]
fn replays_in_order_after_a_restart_and_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |dir: &std::path::Path, _: u64, p| SpoolConfig {
        segment_bytes: 16 << 10,
        ..cfg(dir, 1 << 20, p)
    };
    let mut chain = Chain::new("pod-a");
    let all = lines(&mut chain, 200);
    let mut got = 0;
    {
        let (spool, head) = Spool::open(
            cfg(dir.path(), 64 << 10, FailurePolicy::Closed),
            Arc::default(),
        )
        .unwrap();
        assert!(head.is_none());
        for l in &all {
            spool.append(&[l]).unwrap();
        }
        // Deliver about 50 (a batch stays within a segment), then "crash".
        while got < 50 {
            let b = spool.read_batch(10, 1 << 20).unwrap().unwrap();
            got += b.count;
            spool.ack(b.end).unwrap();
        }
        // A second process cannot open the same spool while this one holds it.
        assert!(matches!(
            Spool::open(
                cfg(dir.path(), 64 << 10, FailurePolicy::Closed),
                Arc::default()
            ),
            Err(SpoolError::Locked { .. })
        ));
    }
    let stats = Arc::new(Stats::default());
    let (spool, head) = Spool::open(
        cfg(dir.path(), 64 << 10, FailurePolicy::Closed),
        stats.clone(),
    )
    .unwrap();
    let head = head.unwrap();
    assert_eq!((head.instance.as_str(), head.seq), ("pod-a", 199));
    assert!(
        stats.snapshot().spool_segments > 1,
        "the test should span segments"
    );
    assert_eq!(drain(&spool), all[got..].to_vec());
    assert!(spool.is_drained());
}

#[test]
fn a_torn_last_record_is_cut_and_the_chain_resumes_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new("pod-a");
    let all = lines(&mut chain, 5);
    {
        let (spool, _) = Spool::open(
            cfg(dir.path(), 1 << 20, FailurePolicy::Closed),
            Arc::default(),
        )
        .unwrap();
        for l in &all[..4] {
            spool.append(&[l]).unwrap();
        }
    }
    // A crash in the middle of writing the fifth record.
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .unwrap();
    OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&all[4][..40])
        .unwrap();
    let (spool, head) = Spool::open(
        cfg(dir.path(), 1 << 20, FailurePolicy::Closed),
        Arc::default(),
    )
    .unwrap();
    assert_eq!(head.unwrap().seq, 3);
    assert_eq!(drain(&spool), all[..4].to_vec());
}

#[test]
fn a_corrupt_record_is_skipped_counted_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new("pod-a");
    let all = lines(&mut chain, 6);
    let stats = Arc::new(Stats::default());
    {
        let (spool, _) = Spool::open(
            cfg(dir.path(), 1 << 20, FailurePolicy::Closed),
            Arc::default(),
        )
        .unwrap();
        let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
        spool.append(&refs).unwrap();
    }
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .unwrap();
    // Bit rot inside the third record.
    let mut bytes = std::fs::read(&seg).unwrap();
    let third = all[0].len() + all[1].len() + 2 + 30;
    bytes[third] ^= 0x20;
    std::fs::write(&seg, bytes).unwrap();
    let (spool, _) = Spool::open(
        cfg(dir.path(), 1 << 20, FailurePolicy::Closed),
        stats.clone(),
    )
    .unwrap();
    let got = drain(&spool);
    assert_eq!(got, [&all[..2], &all[3..]].concat());
    assert_eq!(stats.snapshot().corrupt, 1);
}

#[test]
fn full_spool_closed_refuses_until_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new("pod-a");
    let stats = Arc::new(Stats::default());
    let (spool, _) =
        Spool::open(cfg(dir.path(), 8192, FailurePolicy::Closed), stats.clone()).unwrap();
    let mut accepted = Vec::new();
    assert!(spool.check_room(8192).is_ok());
    let refused = loop {
        let l = chain.prepare(common::statement(0)).unwrap();
        // The room check the recorder makes before stamping agrees with the append.
        let room = spool.check_room(l.line.len() as u64 + 1);
        match spool.append(&[&l.line]) {
            Ok(()) => {
                assert!(room.is_ok());
                chain.commit(&l);
                accepted.push(l.line);
            }
            Err(e) => {
                assert!(matches!(room, Err(SpoolError::Full { max: 8192, .. })));
                break e;
            }
        }
    };
    assert!(matches!(refused, SpoolError::Full { max: 8192, .. }));
    assert!(
        refused.to_string().starts_with("audit spool full"),
        "{refused}"
    );
    assert!(stats.snapshot().spool_bytes <= 8192);
    // Delivering one batch makes room again.
    let b = spool.read_batch(5, 1 << 20).unwrap().unwrap();
    spool.ack(b.end).unwrap();
    let l = chain.prepare(common::statement(0)).unwrap();
    assert!(spool.check_room(l.line.len() as u64 + 1).is_ok());
    spool.append(&[&l.line]).unwrap();
    accepted.push(l.line);
    let first: Vec<Vec<u8>> = b.records().map(<[u8]>::to_vec).collect();
    assert_eq!([first, drain(&spool)].concat(), accepted);
    assert_eq!(stats.snapshot().dropped, 0);
}

#[test]
fn full_spool_open_drops_the_oldest_segment_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new("pod-a");
    let stats = Arc::new(Stats::default());
    let (spool, _) =
        Spool::open(cfg(dir.path(), 8192, FailurePolicy::Open), stats.clone()).unwrap();
    let all = lines(&mut chain, 100);
    for l in &all {
        spool.append(&[l]).unwrap();
    }
    let snap = stats.snapshot();
    assert!(snap.dropped > 0 && snap.spool_bytes <= 8192, "{snap:?}");
    let got = drain(&spool);
    // What is left is the newest events, in order, and nothing is unaccounted for.
    assert_eq!(got.len() as u64 + snap.dropped, 100);
    assert_eq!(got, all[all.len() - got.len()..].to_vec());
}

/// A batch in the shipper's hands is left out of a drop (it is still retried). If the shipper
/// then gives up on it, it is counted as dropped when its segment is gone, and read again when
/// it is not.
#[test]
fn an_abandoned_batch_is_counted_once_its_segment_was_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new("pod-a");
    let stats = Arc::new(Stats::default());
    let (spool, _) =
        Spool::open(cfg(dir.path(), 8192, FailurePolicy::Open), stats.clone()).unwrap();
    let all = lines(&mut chain, 100);
    spool.append(&[&all[0], &all[1]]).unwrap();
    // Not dropped: abandoning only rewinds.
    let b = spool.read_batch(1, 1 << 20).unwrap().unwrap();
    spool.abandon(&b);
    assert_eq!(stats.snapshot().dropped, 0);
    let b = spool.read_batch(1, 1 << 20).unwrap().unwrap();
    assert_eq!(b.records().collect::<Vec<_>>(), vec![all[0].as_slice()]);
    for l in &all[2..] {
        spool.append(&[l]).unwrap();
    }
    let before = stats.snapshot().dropped;
    assert!(before > 0);
    spool.abandon(&b);
    assert_eq!(stats.snapshot().dropped, before + 1);
    let got = drain(&spool);
    assert_eq!(got.len() as u64 + before + 1, 100);
    assert_eq!(got, all[all.len() - got.len()..].to_vec());
}

/// The shipper reads a segment outside the spool lock while appends under policy `open` drop
/// it. Whatever the interleaving, each event is either read (delivered) or counted as dropped:
/// never both, never neither.
#[test]
fn open_drops_racing_the_reader_count_each_event_once() {
    let mut chain = Chain::new("pod-a");
    let all = lines(&mut chain, 1500);
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let spool = Arc::new(
            Spool::open(
                SpoolConfig {
                    fsync: FsyncPolicy::Never,
                    ..cfg(dir.path(), 8192, FailurePolicy::Open)
                },
                stats.clone(),
            )
            .unwrap()
            .0,
        );
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (spool, done) = (spool.clone(), done.clone());
            std::thread::spawn(move || {
                let mut got = std::collections::HashSet::new();
                loop {
                    // Read the flag first: once it is set, every append happened before this
                    // pass, so an empty read means drained.
                    let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                    match spool.read_batch(3, 1024).unwrap() {
                        Some(batch) => {
                            got.extend(batch.records().map(<[u8]>::to_vec));
                            spool.ack(batch.end).unwrap();
                        }
                        None if finished => return got,
                        None => std::thread::yield_now(),
                    }
                }
            })
        };
        for l in &all {
            spool.append(&[l]).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let got = reader.join().unwrap();
        let snap = stats.snapshot();
        assert!(snap.corrupt == 0 && snap.dropped > 0, "{snap:?}");
        assert_eq!(
            got.len() as u64 + snap.dropped,
            all.len() as u64,
            "round {round}: {} read + {} dropped",
            got.len(),
            snap.dropped
        );
    }
}

#[test]
fn garbage_in_the_spool_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new("pod-a");
    let good = lines(&mut chain, 3);
    // Segments full of junk (with and without newlines), a bad cursor, stray files.
    let mut junk = Vec::new();
    let mut x: u32 = 12345;
    for _ in 0..5000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        junk.push((x >> 16) as u8);
    }
    std::fs::write(dir.path().join("00000000000000000000.ndjson"), &junk).unwrap();
    let mut second = good.join(&b'\n');
    second.extend_from_slice(b"\n{\"hash\":\"zz\"}\n\n");
    std::fs::write(
        dir.path().join("00000000000000000001.ndjson"),
        [&junk[..100], b"\n", &second].concat(),
    )
    .unwrap();
    std::fs::write(dir.path().join("acked"), b"banana").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    let stats = Arc::new(Stats::default());
    let (spool, head) = Spool::open(
        cfg(dir.path(), 1 << 20, FailurePolicy::Closed),
        stats.clone(),
    )
    .unwrap();
    assert_eq!(
        head.unwrap().seq,
        2,
        "the chain resumes after the last valid record"
    );
    // The valid records come through, in order; the junk is skipped and counted.
    assert_eq!(drain(&spool), good);
    assert!(stats.snapshot().corrupt > 0);
    // The spool still works afterwards.
    let l = chain.stamp(common::statement(9)).unwrap().line;
    spool.append(&[&l]).unwrap();
    assert_eq!(drain(&spool), vec![l]);
}

#[test]
fn delivered_segments_are_deleted_by_the_acknowledgement_and_interval_fsync_covers_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let segments = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".ndjson")
            })
            .count()
    };
    let cfg = SpoolConfig {
        segment_bytes: 16 << 10,
        fsync: FsyncPolicy::Interval(std::time::Duration::ZERO),
        ..cfg(dir.path(), 1 << 20, FailurePolicy::Closed)
    };
    let (spool, _) = Spool::open(cfg, Arc::default()).unwrap();
    let mut chain = Chain::new("pod-a");
    for l in &lines(&mut chain, 300) {
        spool.append(&[l]).unwrap();
    }
    let written = segments(dir.path());
    assert!(written > 3, "rotated into {written} segments");
    // Rotations left the closed segments' data for the interval fsync, which takes them all.
    spool.sync_if_due().unwrap();
    assert_eq!(drain(&spool).len(), 300);
    // Everything delivered: only the active segment is left.
    assert_eq!(segments(dir.path()), 1);
}

#[test]
fn a_backlog_larger_than_memory_keeps_is_read_from_the_file_then_from_memory() {
    // Appends are kept in memory for the shipper up to a few MiB; a longer backlog (a collector
    // outage) starts in the file. Both must give the same lines, in order, once each.
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new("pod-a");
    let all = lines(&mut chain, 8000);
    let total: usize = all.iter().map(|l| l.len() + 1).sum();
    assert!(
        total > 4 << 20,
        "the backlog should exceed what memory keeps"
    );
    let (spool, _) = Spool::open(
        SpoolConfig {
            fsync: FsyncPolicy::Never,
            ..cfg(dir.path(), 64 << 20, FailurePolicy::Closed)
        },
        Arc::default(),
    )
    .unwrap();
    for batch in all.chunks(9) {
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        spool.append(&refs).unwrap();
    }
    let mut got = Vec::new();
    while let Some(batch) = spool.read_batch(1000, 1 << 20).unwrap() {
        assert!(batch.count <= 1000);
        got.extend(batch.records().map(<[u8]>::to_vec));
        spool.ack(batch.end).unwrap();
    }
    assert_eq!(got.len(), all.len());
    assert!(got == all, "lines differ or are out of order");
    assert!(spool.is_drained());
}
