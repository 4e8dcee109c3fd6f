//! Grouping: sessions busy at once share a spool write, and under a steady stream the shipper
//! sends full or lingered batches, not one per round trip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Collector;
use dbwarden_audit::{AuditConfig, Auditor, ShipperConfig, SpoolConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_stream_goes_in_lingered_batches() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start().await;
    let auditor = Auditor::open(AuditConfig {
        instance: "batching-0".into(),
        spool: SpoolConfig::new(dir.path()),
        shipper: ShipperConfig {
            linger: Duration::from_millis(200),
            batch_max_events: 5000,
            ..collector.shipper()
        },
    })
    .unwrap();
    // Five events every millisecond for a second: the collector answers within about a
    // millisecond, so a shipper that sent whatever it found after each answer would send
    // hundreds of batches.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let begun = std::time::Instant::now();
    for i in 0..5000u64 {
        if i % 5 == 0 {
            tick.tick().await;
        }
        auditor.record(common::statement(i)).unwrap();
    }
    // A busy machine stretches the second: allow a batch per linger of the time it took.
    let streamed = begun.elapsed();
    let lingers = u64::try_from(streamed.as_millis() / 200).unwrap_or(u64::MAX);
    assert!(auditor.flush(Duration::from_secs(10)).await);
    let snap = auditor.snapshot();
    assert_eq!(snap.shipped, 5000, "{snap:?}");
    assert!(
        snap.batches_ok <= lingers * 3 / 2 + 5,
        "{streamed:?} of events at a 200 ms linger took {} batches",
        snap.batches_ok
    );
    auditor.shutdown(Duration::from_secs(1)).await;
    assert_eq!(collector.lines().len(), 5000);
}

fn open_spool_only(dir: &std::path::Path, collector: &Collector) -> Auditor {
    Auditor::open(AuditConfig {
        instance: "group-0".into(),
        spool: SpoolConfig::new(dir),
        shipper: collector.shipper(),
    })
    .unwrap()
}

/// Sessions that submit in the same scheduler turn share one spool write, and each still
/// learns its events were written before it goes on.
#[tokio::test(flavor = "current_thread")]
async fn sessions_of_one_turn_share_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start().await;
    let auditor = std::sync::Arc::new(open_spool_only(dir.path(), &collector));
    let tasks: Vec<_> = (0..8u64)
        .map(|i| {
            let auditor = auditor.clone();
            tokio::spawn(async move {
                let ticket = auditor.submit([common::statement(i)]).unwrap();
                ticket.settle().await.unwrap();
                // Written, whoever wrote it: all eight went in the same write.
                auditor.snapshot().recorded
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.unwrap(),
            8,
            "settled before its event was written"
        );
    }
    let snap = auditor.snapshot();
    assert_eq!((snap.recorded, snap.spool_writes), (8, 1), "{snap:?}");
    // The next event goes on the same chain.
    assert_eq!(auditor.next_seq(), 8);
    auditor.record(common::statement(8)).unwrap();
    assert!(auditor.flush(Duration::from_secs(10)).await);
    let lines = collector.lines();
    let report = dbwarden_audit::verify(lines.join("\n").as_bytes()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(lines.len(), 9);
}

/// A ticket dropped without settling (a session that ended) still gets its events written.
#[tokio::test(flavor = "current_thread")]
async fn an_unsettled_ticket_is_written_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start().await;
    let auditor = open_spool_only(dir.path(), &collector);
    let ticket = auditor
        .submit([common::statement(0), common::statement(1)])
        .unwrap();
    assert_eq!(auditor.snapshot().recorded, 0);
    drop(ticket);
    assert_eq!(auditor.snapshot().recorded, 2);
}

/// Deferred events (a statement's result) ride along with the next session's write, and
/// are written alone a few milliseconds later when no session writes; either way in chain
/// order and each with its seq known at once.
#[tokio::test(flavor = "current_thread")]
async fn deferred_events_go_with_the_next_write_or_alone_soon_after() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start().await;
    let auditor = open_spool_only(dir.path(), &collector);
    let ticket = auditor
        .submit([common::statement(0), common::statement(1)])
        .unwrap();
    assert_eq!(ticket.seqs(), 0..2);
    ticket.settle().await.unwrap();
    auditor.defer([common::statement(2)]).unwrap();
    assert_eq!(auditor.snapshot().recorded, 2, "a deferred event waits");
    // The next settled submit takes it along: one write for both.
    let ticket = auditor.submit([common::statement(3)]).unwrap();
    assert_eq!(ticket.seqs(), 3..4);
    ticket.settle().await.unwrap();
    let snap = auditor.snapshot();
    assert_eq!((snap.recorded, snap.spool_writes), (4, 2), "{snap:?}");
    // Alone, it is written within the linger.
    auditor.defer([common::statement(4)]).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let snap = auditor.snapshot();
    assert_eq!((snap.recorded, snap.spool_writes), (5, 3), "{snap:?}");
    assert!(auditor.flush(Duration::from_secs(10)).await);
    let lines = collector.lines();
    let report = dbwarden_audit::verify(lines.join("\n").as_bytes()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(lines.len(), 5);
}
