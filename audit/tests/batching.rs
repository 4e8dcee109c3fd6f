//! Under a steady stream the shipper sends full or lingered batches, not one per round trip.
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
    for i in 0..5000u64 {
        if i % 5 == 0 {
            tick.tick().await;
        }
        auditor.record(common::statement(i)).unwrap();
    }
    assert!(auditor.flush(Duration::from_secs(10)).await);
    let snap = auditor.snapshot();
    assert_eq!(snap.shipped, 5000, "{snap:?}");
    assert!(
        snap.batches_ok <= 12,
        "1 s of events at a 200 ms linger took {} batches",
        snap.batches_ok
    );
    auditor.shutdown(Duration::from_secs(1)).await;
    assert_eq!(collector.lines().len(), 5000);
}
