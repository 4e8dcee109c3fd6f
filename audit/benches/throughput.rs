//! Events per second through chain + spool + shipper to a local collector.
//!
//! `cargo bench -p dbwarden-audit --bench throughput` (EVENTS=n to change the count).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dbwarden_audit::{
    AuditConfig, Auditor, FailurePolicy, FsyncPolicy, ShipperConfig, SpoolConfig,
};

fn main() {
    let events: u64 = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let collector = common::Collector::start().await;
        let dir = tempfile::tempdir().unwrap();
        let auditor = Arc::new(
            Auditor::open(AuditConfig {
                instance: "bench-0.0".into(),
                spool: SpoolConfig {
                    max_bytes: 1 << 30,
                    fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
                    failure_policy: FailurePolicy::Closed,
                    ..SpoolConfig::new(dir.path())
                },
                shipper: ShipperConfig {
                    linger: Duration::from_millis(20),
                    ..ShipperConfig::new(collector.url("/ingest"))
                },
            })
            .unwrap(),
        );
        let start = Instant::now();
        // 16 producers, like 16 client connections.
        let mut tasks = Vec::new();
        for p in 0..16u64 {
            let auditor = auditor.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..events / 16 {
                    auditor
                        .record(common::statement(p * 1_000_000 + i))
                        .unwrap();
                    if i % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let recorded = start.elapsed();
        assert!(
            auditor.flush(Duration::from_secs(300)).await,
            "{:?}",
            auditor.snapshot()
        );
        let total = start.elapsed();
        let snap = auditor.snapshot();
        let n = snap.recorded as f64;
        println!(
            "audit throughput: {} events ({} B spooled lines avg), recorded in {:.2?} ({:.0}/s), \
             delivered to the collector in {:.2?} ({:.0} events/s end to end), {} batches",
            snap.recorded,
            collector.lines().iter().map(String::len).sum::<usize>()
                / collector.lines().len().max(1),
            recorded,
            n / recorded.as_secs_f64(),
            total,
            n / total.as_secs_f64(),
            snap.batches_ok,
        );
    });
}
