//! End to end through a real local collector: the collector goes away and comes back, answers
//! 500s, and the auditor (the sidecar) restarts mid-stream; nothing accepted is lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Collector;
use dbwarden_audit::spool::SpoolError;
use dbwarden_audit::{
    AuditConfig, Auditor, FailurePolicy, Format, FsyncPolicy, OpenError, ShipperConfig,
    SpoolConfig, Token, verify,
};

fn open(dir: &Path, shipper: ShipperConfig, max_bytes: u64, policy: FailurePolicy) -> Auditor {
    Auditor::open(AuditConfig {
        instance: "reporting-7d9f-abcde.4c1f".into(),
        spool: SpoolConfig {
            max_bytes,
            segment_bytes: max_bytes / 8,
            fsync: FsyncPolicy::Interval(Duration::from_millis(50)),
            failure_policy: policy,
            ..SpoolConfig::new(dir)
        },
        shipper,
    })
    .unwrap()
}

/// Opens again once the killed instance's task has let go of the spool lock.
async fn reopen(
    dir: &Path,
    shipper: ShipperConfig,
    max_bytes: u64,
    policy: FailurePolicy,
) -> Auditor {
    for _ in 0..100 {
        let cfg = AuditConfig {
            instance: "reporting-7d9f-abcde.4c1f".into(),
            spool: SpoolConfig {
                max_bytes,
                segment_bytes: max_bytes / 8,
                fsync: FsyncPolicy::Interval(Duration::from_millis(50)),
                failure_policy: policy,
                ..SpoolConfig::new(dir)
            },
            shipper: shipper.clone(),
        };
        match Auditor::open(cfg) {
            Ok(a) => return a,
            Err(OpenError::Spool(SpoolError::Locked { .. })) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the spool stayed locked");
}

/// Every expected id arrived, first arrivals follow seq, and the export verifies.
fn check_delivery(collector: &Collector, expected: &[String]) {
    let lines = collector.lines();
    let report = verify(lines.join("\n").as_bytes()).unwrap();
    assert!(report.is_ok(), "verify: {:?}", report.problems);
    let mut seen = HashSet::new();
    let mut last_seq = None;
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = v["id"].as_str().unwrap().to_owned();
        if seen.insert(id) {
            let seq = v["seq"].as_u64().unwrap();
            assert!(
                last_seq.is_none_or(|l| seq > l),
                "seq {seq} arrived after {last_seq:?}"
            );
            last_seq = Some(seq);
        }
    }
    let expected: HashSet<String> = expected.iter().cloned().collect();
    let missing: Vec<_> = expected.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "{} ids never arrived, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(seen.len(), expected.len(), "unexpected ids arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_and_restart_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start().await;
    let shipper = ShipperConfig {
        gzip: true,
        bearer_token: Some(Token("t0ken".into())),
        ..collector.shipper()
    };
    let mut auditor = Some(open(
        dir.path(),
        shipper.clone(),
        8 << 20,
        FailurePolicy::Open,
    ));
    let mut ids = Vec::new();
    for i in 0..600u64 {
        match i {
            100 => collector.stop().await,
            // The sidecar is killed while the collector is away: no drain, no goodbye.
            250 => {
                drop(auditor.take());
                auditor =
                    Some(reopen(dir.path(), shipper.clone(), 8 << 20, FailurePolicy::Open).await);
            }
            350 => collector.restart().await,
            450 => collector.status.store(500, Ordering::SeqCst),
            500 => collector.status.store(200, Ordering::SeqCst),
            _ => {}
        }
        ids.push(
            auditor
                .as_ref()
                .unwrap()
                .record(common::statement(i))
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let auditor = auditor.unwrap();
    assert!(
        auditor.flush(Duration::from_secs(20)).await,
        "not drained: {:?}",
        auditor.snapshot()
    );
    let snap = auditor.snapshot();
    assert_eq!(snap.dropped, 0);
    assert_eq!(snap.spool_bytes, 0);
    assert!(
        snap.batches_failed > 0,
        "the outage should have caused failed attempts"
    );
    assert!(
        collector.seen.rejected.load(Ordering::SeqCst) > 0,
        "the 500s should have been seen"
    );
    assert!(
        collector
            .seen
            .auth
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer t0ken")
    );
    auditor.shutdown(Duration::from_secs(1)).await;
    check_delivery(&collector, &ids);
    // One chain across the restart: seq 0..599 of one instance.
    let report = verify(collector.lines().join("\n").as_bytes()).unwrap();
    assert_eq!(report.instances.len(), 1);
    assert_eq!(report.instances.values().next().unwrap().last_seq, 599);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_policy_refuses_when_full_and_loses_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start().await;
    let shipper = ShipperConfig {
        format: Format::Otlp,
        ..collector.shipper()
    };
    let max = 32 << 10;
    let mut auditor = Some(open(
        dir.path(),
        shipper.clone(),
        max,
        FailurePolicy::Closed,
    ));
    let mut ids = Vec::new();
    let mut refused_since_restart = 0u64;
    let mut refused_while_down = false;
    for i in 0..400u64 {
        match i {
            20 => collector.stop().await,
            // Restart the sidecar while the spool is full.
            200 => {
                auditor.take().unwrap().shutdown(Duration::ZERO).await;
                auditor = Some(open(
                    dir.path(),
                    shipper.clone(),
                    max,
                    FailurePolicy::Closed,
                ));
            }
            300 => collector.restart().await,
            _ => {}
        }
        match auditor.as_ref().unwrap().record(common::statement(i)) {
            Ok(id) => ids.push(id),
            Err(e) => {
                assert!(e.must_refuse() && e.label() == "spool_full", "{e}");
                assert!(e.to_string().starts_with("audit spool full"), "{e}");
                refused_since_restart += u64::from(i >= 200);
                refused_while_down |= (20..300).contains(&i);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        refused_while_down,
        "the spool should have filled while the collector was away"
    );
    // Once the collector is back, statements are accepted again.
    let auditor = auditor.unwrap();
    assert!(
        auditor.flush(Duration::from_secs(20)).await,
        "not drained: {:?}",
        auditor.snapshot()
    );
    for i in 0..20 {
        ids.push(auditor.record(common::statement(1000 + i)).unwrap());
    }
    assert!(auditor.flush(Duration::from_secs(20)).await);
    let snap = auditor.snapshot();
    assert_eq!(snap.dropped, 0);
    assert_eq!(snap.refused, refused_since_restart, "{snap:?}");
    auditor.shutdown(Duration::from_secs(1)).await;
    check_delivery(&collector, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_policy_drops_the_oldest_but_never_silently() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start().await;
    collector.stop().await;
    let auditor = open(
        dir.path(),
        collector.shipper(),
        16 << 10,
        FailurePolicy::Open,
    );
    let mut ids = Vec::new();
    for i in 0..300u64 {
        // Under `open` a full spool never refuses.
        ids.push(auditor.record(common::statement(i)).unwrap());
    }
    let dropped = auditor.snapshot().dropped;
    assert!(dropped > 0, "{:?}", auditor.snapshot());
    collector.restart().await;
    assert!(
        auditor.flush(Duration::from_secs(20)).await,
        "{:?}",
        auditor.snapshot()
    );
    auditor.shutdown(Duration::from_secs(1)).await;
    let lines = collector.lines();
    let delivered: HashSet<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // Every event is either delivered or counted as dropped ...
    assert_eq!(delivered.len() as u64 + dropped, ids.len() as u64);
    // ... and the loss shows in the chain as a gap that verify reports.
    let report = verify(lines.join("\n").as_bytes()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, dbwarden_audit::Problem::Gap { .. })),
        "{:?}",
        report.problems
    );
}

/// A shutdown with everything delivered ends at once and leaves the spool free for the next
/// process (it used to wait a second for a reference it held itself, every time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_promptly_and_frees_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start().await;
    // Shutdown ends with an fsync, which a busy disk can stretch: the fastest of three counts.
    let mut times = Vec::new();
    for n in 0..3 {
        // Each open takes the spool the previous shutdown left.
        let auditor = open(
            dir.path(),
            collector.shipper(),
            1 << 20,
            FailurePolicy::Closed,
        );
        assert_eq!(auditor.next_seq(), n);
        auditor.record(common::statement(n)).unwrap();
        assert!(auditor.flush(Duration::from_secs(10)).await);
        // Let the interval fsync run at least once.
        tokio::time::sleep(Duration::from_millis(120)).await;
        let begun = std::time::Instant::now();
        auditor.shutdown(Duration::from_secs(5)).await;
        times.push(begun.elapsed());
    }
    let fastest = times.iter().min().copied().unwrap_or_default();
    assert!(
        fastest < Duration::from_millis(900),
        "shutdowns took {times:?}"
    );
    let again = open(
        dir.path(),
        collector.shipper(),
        1 << 20,
        FailurePolicy::Closed,
    );
    assert_eq!(again.next_seq(), 3);
    again.shutdown(Duration::ZERO).await;
}
