//! `/metrics` on the health server after real traffic: the counts a user checks, and the text
//! passes `promtool check metrics` (promtool is required: `hack/deps.sh` installs it).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dbwarden_testbed::{Collector, http_get};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::audit::{audit_config, audited_proxy};
use crate::common::{TestResult, start_pg, tables};

/// GET `path` from `addr`; the body of a 200 answer.
async fn get(
    addr: SocketAddr,
    path: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let answer = http_get(addr.port(), path).await?;
    let (head, body) = answer.split_once("\r\n\r\n").ok_or("no HTTP head")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    Ok(body.to_owned())
}

/// The value of the sample line `name{labels}` (exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_traffic_and_pass_promtool() -> TestResult {
    let pg = start_pg().await?;
    tables(&pg).await?;
    let collector = Collector::start().await?;
    let dir = tempfile::tempdir()?;
    let audit = audit_config(&collector, &dir.path().join("spool"), "api-0.metrics");
    let (mut p, _metrics) = audited_proxy(&pg, dir.path(), audit).await?;
    let health = p.handle.as_ref().unwrap().health_addr().unwrap();

    let client = p.connect().await?;
    for _ in 0..5 {
        client.simple_query("SELECT name FROM public.t").await?;
    }
    for _ in 0..2 {
        assert!(
            client
                .simple_query("SELECT id FROM audit.log")
                .await
                .is_err()
        );
    }
    client
        .simple_query("INSERT INTO public.t VALUES (3, 'cy')")
        .await?;

    let text = get(health, "/metrics").await?;
    let value =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(value("dbwarden_connections"), 1.0);
    assert_eq!(
        value("dbwarden_connections_total{outcome=\"session\"}"),
        1.0
    );
    assert_eq!(
        value("dbwarden_statements_total{decision=\"allowed\",operation=\"select\"}"),
        5.0
    );
    assert_eq!(
        value("dbwarden_statements_total{decision=\"allowed\",operation=\"insert\"}"),
        1.0
    );
    assert_eq!(
        value("dbwarden_statements_total{decision=\"denied\",operation=\"select\"}"),
        2.0
    );
    assert_eq!(
        value("dbwarden_denials_total{policy=\"shop/app-access\",rule=\"default-deny\"}"),
        2.0
    );
    assert_eq!(
        value("dbwarden_statement_check_duration_seconds_count"),
        8.0
    );
    // One connection.open, eight statements and the results of the six that ran, asked for
    // (the results are spooled with the next write or just after: see the loop below).
    assert_eq!(
        value("dbwarden_audit_events_recorded_total{kind=\"statement\"}"),
        8.0
    );
    assert_eq!(
        value("dbwarden_audit_events_recorded_total{kind=\"statement.result\"}"),
        6.0
    );
    assert_eq!(
        value("dbwarden_audit_events_recorded_total{kind=\"connection.open\"}"),
        1.0
    );
    assert!(value("dbwarden_policy_age_seconds") >= 0.0);
    assert_eq!(value("dbwarden_masked_values_total"), 0.0);

    // Shipped catches up once the collector has everything; the spool empties.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = get(health, "/metrics").await?;
        if sample(&text, "dbwarden_audit_events_spooled_total") == Some(15.0)
            && sample(&text, "dbwarden_audit_events_shipped_total") == Some(15.0)
            && sample(&text, "dbwarden_audit_spool_bytes") == Some(0.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never shipped everything:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    let text = get(health, "/metrics").await?;

    // promtool must be there: a missing tool fails the test rather than skipping it.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("promtool (Debian package prometheus, see hack/deps.sh): {e}"))?;
    let mut stdin = promtool.stdin.take().ok_or("no stdin")?;
    stdin.write_all(text.as_bytes()).await?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), promtool.wait_with_output()).await??;
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    p.handle.take().unwrap().shutdown().await;
    Ok(())
}
