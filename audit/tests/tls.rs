//! Shipping over HTTPS to a collector whose CA the sidecar is given, and refusing one it is not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use dbwarden_audit::{AuditConfig, Auditor, FailurePolicy, ShipperConfig, SpoolConfig, verify};

fn config(dir: &std::path::Path, url: String, ca_pem: Option<String>) -> AuditConfig {
    AuditConfig {
        instance: "tls-test.1".into(),
        spool: SpoolConfig {
            failure_policy: FailurePolicy::Closed,
            ..SpoolConfig::new(dir)
        },
        shipper: ShipperConfig {
            ca_pem: ca_pem.map(String::into_bytes),
            linger: Duration::from_millis(5),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            ..ShipperConfig::new(url)
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ships_over_https_with_a_private_ca() {
    let (collector, pem) = common::Collector::start_tls().await;
    let url = format!("https://localhost:{}/ingest", collector.addr.port());
    let dir = tempfile::tempdir().unwrap();
    let auditor = Auditor::open(config(dir.path(), url, Some(pem))).unwrap();
    for i in 0..50 {
        auditor.record(common::statement(i)).unwrap();
    }
    assert!(
        auditor.flush(Duration::from_secs(10)).await,
        "{:?}",
        auditor.snapshot()
    );
    auditor.shutdown(Duration::from_secs(1)).await;
    let report = verify(collector.lines().join("\n").as_bytes()).unwrap();
    assert!(report.is_ok());
    assert_eq!(report.instances["tls-test.1"].events, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_not_sent_to() {
    let (collector, _pem) = common::Collector::start_tls().await;
    let url = format!("https://localhost:{}/ingest", collector.addr.port());
    let dir = tempfile::tempdir().unwrap();
    let auditor = Auditor::open(config(dir.path(), url, None)).unwrap();
    auditor.record(common::statement(0)).unwrap();
    assert!(!auditor.flush(Duration::from_millis(500)).await);
    // The first attempt (a TLS handshake on a busy machine) may still be under way.
    let begun = std::time::Instant::now();
    let mut snap = auditor.snapshot();
    while snap.batches_failed == 0 && begun.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        snap = auditor.snapshot();
    }
    assert!(snap.batches_failed > 0 && snap.shipped == 0, "{snap:?}");
    assert!(
        snap.last_error
            .unwrap_or_default()
            .contains("sending to the collector")
    );
    assert!(collector.lines().is_empty());
    auditor.shutdown(Duration::ZERO).await;
}
