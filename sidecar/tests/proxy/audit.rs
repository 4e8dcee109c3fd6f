//! Audit events from the sidecar to a real collector: content, ids, the hash chain, a collector
//! outage with the sidecar binary restarted mid-stream, and failure policy `closed`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbwarden_policy::ServiceAccount;
use dbwarden_sidecar::config::{AuditFileConfig, AuditFormat, FailureMode, FsyncMode, TextMode};
use dbwarden_sidecar::enforce::EnforcingHooks;
use dbwarden_sidecar::metrics::Metrics;
use dbwarden_testbed::{APP, Collector, Postgres, free_port};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::common::{POLICY, Proxy, Raw, Setup, TestResult, proxy, start_pg, tables};

/// An `audit:` section sending to `collector`, spooling in `spool`.
pub fn audit_config(collector: &Collector, spool: &Path, instance: &str) -> AuditFileConfig {
    AuditFileConfig {
        collector_url: collector.url(),
        format: AuditFormat::Ndjson,
        spool_dir: spool.to_owned(),
        spool_max_bytes: 16 << 20,
        fsync: FsyncMode::Never,
        fsync_interval_ms: 1000,
        failure_policy: FailureMode::Closed,
        statement_text: TextMode::Redacted,
        bearer_token_file: None,
        ca_file: None,
        instance: Some(instance.into()),
        retry_max_ms: 200,
        drain_secs: 2,
    }
}

/// The sidecar in-process with the policy, the audit section and shared metrics.
pub async fn audited_proxy(
    pg: &Postgres,
    dir: &Path,
    audit: AuditFileConfig,
) -> Result<(Proxy, Arc<Metrics>), Box<dyn std::error::Error + Send + Sync>> {
    let file = dir.join("policy.yaml");
    std::fs::write(&file, POLICY)?;
    let metrics = Arc::new(Metrics::new()?);
    let hooks = EnforcingHooks::load(vec![file], ServiceAccount::new("shop", "api"), None)?
        .with_metrics(metrics.clone());
    let p = proxy(
        pg,
        Setup {
            hooks: Some(Arc::new(hooks)),
            audit: Some(audit),
            metrics: Some(metrics.clone()),
            health: true,
            ..Setup::default()
        },
    )
    .await?;
    Ok((p, metrics))
}

/// Parsed event lines.
pub(crate) fn events(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until `done` holds for the collector's lines (up to `limit`).
pub(crate) async fn wait_for(
    collector: &Collector,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        if done(&events(&collector.lines())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "collector did not get the expected events in {limit:?}: {:#?}",
            collector.lines()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks the chain with the audit crate's own verifier; returns the distinct ids.
pub(crate) fn verified(lines: &[String]) -> HashSet<String> {
    let export = lines.join("\n");
    let report = dbwarden_audit::verify(export.as_bytes()).unwrap();
    assert!(report.is_ok(), "chain problems: {:?}", report.problems);
    events(lines)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn statements_through_a_policy_become_a_verified_chain_at_the_collector() -> TestResult {
    let pg = start_pg().await?;
    tables(&pg).await?;
    let collector = Collector::start().await?;
    let dir = tempfile::tempdir()?;
    let audit = audit_config(&collector, &dir.path().join("spool"), "api-0.test");
    let (mut p, _metrics) = audited_proxy(&pg, dir.path(), audit).await?;

    // A refused startup (replication) is an auth.failure, recorded before anything else.
    let mut raw = Raw::connect(p.addr).await?;
    let mut out = bytes::BytesMut::new();
    postgres_protocol::message::frontend::startup_message(
        [
            ("user", "app"),
            ("database", "app"),
            ("replication", "true"),
        ],
        &mut out,
    )?;
    raw.send(&out).await?;
    let (tag, _) = raw.recv().await?.ok_or("closed without an error")?;
    assert_eq!(tag, b'E');
    wait_for(&collector, Duration::from_secs(20), |evs| !evs.is_empty()).await;

    let client = p.connect().await?;
    let rows = client
        .query("SELECT name FROM public.t WHERE id = 1", &[])
        .await?;
    assert_eq!(rows.len(), 1);
    let refused = client
        .simple_query("SELECT id FROM audit.log")
        .await
        .unwrap_err();
    let message = refused.as_db_error().map(|e| e.message()).unwrap_or("");
    assert!(message.contains("default deny"), "{refused:?}");
    let stmt = client
        .prepare("UPDATE public.t SET name = $1 WHERE id = $2")
        .await?;
    client.execute(&stmt, &[&"eve", &2i32]).await?;
    client.execute(&stmt, &[&"fay", &1i32]).await?;
    // Prepared and never run: nothing ran, nothing to record.
    client.prepare("DELETE FROM public.t WHERE id = $1").await?;
    // A portal fetched in chunks is one run.
    let mut client = client;
    let tx = client.transaction().await?;
    let portal = tx.bind("SELECT id FROM public.t ORDER BY id", &[]).await?;
    assert_eq!(tx.query_portal(&portal, 1).await?.len(), 1);
    assert_eq!(tx.query_portal(&portal, 10).await?.len(), 1);
    tx.commit().await?;
    drop(client);

    wait_for(&collector, Duration::from_secs(20), |evs| {
        evs.iter().any(|e| e["kind"] == "connection.close")
    })
    .await;
    p.handle.take().unwrap().shutdown().await;

    let lines = collector.lines();
    let evs = events(&lines);
    let ids = verified(&lines);
    assert_eq!(ids.len(), evs.len(), "ids are unique: {lines:#?}");
    let failure = &evs[0];
    assert_eq!(failure["kind"], "auth.failure");
    assert!(failure["error"].as_str().unwrap().contains("replication"));
    assert!(failure["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let evs = &evs[1..];
    let kinds: Vec<&str> = evs.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"connection.open"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"connection.close"), "{kinds:?}");
    assert_eq!(evs.last().unwrap()["reason"], "terminated");
    for e in evs {
        assert_eq!(e["instance"], "api-0.test");
        assert_eq!(e["identity"]["service_account"], "api");
        assert_eq!(e["identity"]["namespace"], "shop");
        assert_eq!(e["identity"]["pod"], "api-0");
        assert_eq!(e["database"], "app");
        assert_eq!(e["connection"], evs[0]["connection"]);
    }
    assert!(evs[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(
        evs.last().unwrap()["durations"]["session_us"]
            .as_u64()
            .unwrap()
            > 0
    );

    let statements: Vec<&Value> = evs.iter().filter(|e| e["kind"] == "statement").collect();
    let select = statements
        .iter()
        .find(|e| e["operation"] == "select" && e["decision"] == "allowed")
        .expect("the allowed select");
    assert_eq!(select["rule"], "api-crud");
    assert_eq!(select["tables"], serde_json::json!(["public.t"]));
    let text = select["statement"].as_str().unwrap();
    assert!(
        text.contains("public.t") && !text.contains('1'),
        "literals redacted: {text}"
    );
    assert_eq!(select["fingerprint"].as_str().unwrap().len(), 64);
    for statement in &statements {
        assert!(
            statement["durations"]["proxy_us"].is_u64(),
            "the proxy's decision time: {statement}"
        );
    }

    let denied = statements
        .iter()
        .find(|e| e["decision"] == "denied")
        .expect("the refused select");
    assert_eq!(denied["rule"], "default-deny");
    assert_eq!(denied["tables"], serde_json::json!(["audit.log"]));
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .contains("shop/app-access")
    );

    // The prepared UPDATE is recorded each time it runs, with its text and no parameter values.
    let updates: Vec<&&Value> = statements
        .iter()
        .filter(|e| e["operation"] == "update")
        .collect();
    assert_eq!(updates.len(), 2, "one event per execution: {updates:#?}");
    for update in &updates {
        assert_eq!(update["decision"], "allowed");
        assert_eq!(update["rule"], "api-crud");
        assert_eq!(update["tables"], serde_json::json!(["public.t"]));
        assert_eq!(update["fingerprint"], updates[0]["fingerprint"]);
    }
    assert!(
        !statements.iter().any(|e| e["operation"] == "delete"),
        "a statement never executed has no event"
    );
    let ordered = statements
        .iter()
        .filter(|e| {
            e["statement"]
                .as_str()
                .is_some_and(|s| s.contains("ORDER BY"))
        })
        .count();
    assert_eq!(ordered, 1, "a portal fetched in two chunks ran once");

    // What each statement that ran returned, against its `statement` event.
    let results_of = |statement: &Value| -> Vec<&Value> {
        evs.iter()
            .filter(|e| e["kind"] == "statement.result" && e["statement_id"] == statement["id"])
            .collect()
    };
    let rows = |results: &[&Value]| -> Vec<u64> {
        results
            .iter()
            .map(|r| r["rows"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(rows(&results_of(select)), [1]);
    assert!(results_of(denied).is_empty(), "refused, so it never ran");
    for update in &updates {
        let results = results_of(update);
        assert_eq!(rows(&results), [1], "UPDATE 1 each time: {results:#?}");
        assert_eq!(results[0]["decision"], "allowed");
        assert!(results[0]["durations"]["upstream_us"].is_u64());
    }
    let portal = statements
        .iter()
        .find(|e| {
            e["statement"]
                .as_str()
                .is_some_and(|s| s.contains("ORDER BY"))
        })
        .unwrap();
    assert_eq!(
        rows(&results_of(portal)),
        [1, 1],
        "one result per fetch of the portal, under its one statement event"
    );
    assert!(
        !lines.join("\n").contains("eve") && !lines.join("\n").contains("fay"),
        "parameter values never recorded"
    );
    Ok(())
}

/// The binary on `config`.
fn spawn_binary(config: &Path) -> std::io::Result<Child> {
    Command::new(env!("CARGO_BIN_EXE_dbwarden-sidecar"))
        .arg("--config")
        .arg(config)
        .env("DBWARDEN_TEST_PASSWORD", APP.password)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
}

/// Runs one INSERT through the sidecar at `port` with a fresh connection; true when it ran.
async fn insert(port: u16, n: i32) -> bool {
    let conninfo =
        format!("host=127.0.0.1 port={port} user=app dbname=app password=t sslmode=disable");
    let Ok(Ok((client, conn))) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&conninfo, tokio_postgres::NoTls),
    )
    .await
    else {
        return false;
    };
    tokio::spawn(conn);
    client
        .execute("INSERT INTO public.t VALUES ($1, 'x')", &[&n])
        .await
        .is_ok()
}

#[tokio::test]
async fn collector_outage_and_a_sidecar_restart_lose_no_event() -> TestResult {
    let pg = start_pg().await?;
    tables(&pg).await?;
    let mut collector = Collector::start().await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("policy.yaml"), POLICY)?;
    let port = free_port()?;
    let config = dir.path().join("sidecar.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:
  - name: app
    listen: 127.0.0.1:{port}
    upstream:
      host: 127.0.0.1
      port: {pg_port}
      database: app
      tls: {{mode: verify-full, ca_file: {ca}}}
      credentials: {{username: app, password_env: DBWARDEN_TEST_PASSWORD}}
policies: [{policy}]
identity: {{service_account: shop/api, pod: api-0}}
audit:
  collector_url: {url}
  spool_dir: {spool}
  fsync: every-batch
  retry_max_ms: 200
  drain_secs: 1
",
            pg_port = pg.port(),
            ca = pg.ca_cert_path().display(),
            policy = dir.path().join("policy.yaml").display(),
            url = collector.url(),
            spool = dir.path().join("spool").display(),
        ),
    )?;

    // A steady stream of statements; phases: collector up, down, sidecar killed and restarted
    // while it is down, collector back.
    let mut child = spawn_binary(&config)?;
    let stream = |for_: Duration| async move {
        let until = Instant::now() + for_;
        let mut ok = 0u32;
        while Instant::now() < until {
            if insert(port, 7).await {
                ok += 1;
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        ok
    };
    let mut ran = stream(Duration::from_secs(2)).await;
    collector.stop().await;
    ran += stream(Duration::from_secs(1)).await;
    // SIGKILL: no drain, no goodbye; the spool must hold everything the process accepted.
    child.start_kill()?;
    child.wait().await?;
    child = spawn_binary(&config)?;
    ran += stream(Duration::from_secs(2)).await;
    collector.restart().await?;
    ran += stream(Duration::from_secs(1)).await;
    assert!(ran > 10, "only {ran} statements ran");

    // Every insert that ran has its event; the chain continues across the restart.
    wait_for(&collector, Duration::from_secs(30), |evs| {
        evs.iter()
            .filter(|e| e["kind"] == "statement" && e["operation"] == "insert")
            .map(|e| e["id"].as_str().unwrap_or(""))
            .collect::<HashSet<_>>()
            .len()
            >= ran as usize
    })
    .await;
    child.start_kill()?;
    child.wait().await?;
    let lines = collector.lines();
    let ids = verified(&lines);
    let evs = events(&lines);
    // Ids are 0..=max without a hole, and first arrivals follow the sequence.
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let max = seqs.iter().copied().max().unwrap();
    assert_eq!(
        ids.len() as u64,
        max + 1,
        "every id from 0 to {max} arrived"
    );
    let mut seen = HashSet::new();
    let firsts: Vec<u64> = seqs.into_iter().filter(|s| seen.insert(*s)).collect();
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "order follows the sequence: {firsts:?}"
    );
    assert!(evs.iter().all(|e| e["instance"] == "api-0"));
    // Connection numbers stay unique across the restart (each tied to one open and one close).
    let mut opens = HashSet::new();
    let mut seen_ids = HashSet::new();
    for e in &evs {
        if e["kind"] == "connection.open" && seen_ids.insert(e["id"].as_str().unwrap()) {
            assert!(
                opens.insert(e["connection"].as_u64().unwrap()),
                "connection number reused: {e}"
            );
        }
    }
    assert!(opens.len() as u32 >= ran);
    Ok(())
}

#[tokio::test]
async fn failure_policy_closed_refuses_statements_while_the_spool_is_full() -> TestResult {
    let pg = start_pg().await?;
    tables(&pg).await?;
    let mut collector = Collector::start().await?;
    collector.stop().await;
    let dir = tempfile::tempdir()?;
    let mut audit = audit_config(&collector, &dir.path().join("spool"), "api-0.closed");
    audit.spool_max_bytes = 4096;
    let (mut p, metrics) = audited_proxy(&pg, dir.path(), audit).await?;
    let client = p.connect().await?;

    let mut ran = 0;
    let refusal = loop {
        match client.simple_query("SELECT name FROM public.t").await {
            Ok(_) => ran += 1,
            Err(e) => break e,
        }
        assert!(ran < 100, "a 4 KiB spool never filled");
    };
    assert!(ran > 0);
    let db = refusal.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "42501");
    assert!(
        db.message().contains("audit spool full"),
        "{}",
        db.message()
    );
    // Still full: refused again, and the session stays usable.
    let again = client
        .simple_query("SELECT name FROM public.t")
        .await
        .unwrap_err();
    let message = again.as_db_error().map(|e| e.message()).unwrap_or("");
    assert!(message.contains("audit spool full"), "{again:?}");

    let text = metrics.encode()?;
    assert!(
        text.contains(
            "dbwarden_statements_total{decision=\"audit_refused\",operation=\"select\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains("dbwarden_audit_events_refused_total 2"),
        "{text}"
    );

    collector.restart().await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .simple_query("SELECT name FROM public.t")
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "statements never ran again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ran += 1;
    // Let the spool drain before the session ends: its connection.close needs room too.
    wait_for(&collector, Duration::from_secs(20), |evs| {
        evs.iter().filter(|e| e["decision"] == "allowed").count() >= ran
    })
    .await;
    drop(client);
    wait_for(&collector, Duration::from_secs(20), |evs| {
        evs.iter().any(|e| e["kind"] == "connection.close")
    })
    .await;
    p.handle.take().unwrap().shutdown().await;

    // Everything recorded arrived, without a gap; every statement that ran has its event.
    let lines = collector.lines();
    verified(&lines);
    let allowed = events(&lines)
        .iter()
        .filter(|e| e["kind"] == "statement" && e["decision"] == "allowed")
        .count();
    assert_eq!(allowed, ran, "one event per statement that ran");
    Ok(())
}
