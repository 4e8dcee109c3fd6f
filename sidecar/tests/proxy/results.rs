//! `statement.result` events: for every statement that reached the database, what it returned
//! (rows, masked values and columns, the database's time and error), recorded against its
//! `statement` event, through the real sidecar and a real PostgreSQL.

use std::time::Duration;

use bytes::BytesMut;
use dbwarden_sidecar::config::LimitsConfig;
use dbwarden_testbed::{APP, Collector, Postgres};
use postgres_protocol::message::frontend as fe;
use serde_json::Value;

use crate::audit::{audit_config, events, verified, wait_for};
use crate::common::{Enforce, Proxy, Raw, Setup, TestResult, fatal_at_end, proxy, start_pg, tags};
use crate::extended::bind;

/// `shop/api` may read and write everything; e-mail addresses are masked; at most 3 rows.
const POLICY: &str = "apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata: {name: app-access, namespace: shop}
spec:
  database: {host: db.shop.svc, name: app, environment: dev, credentialsSecretRef: {name: app-db}}
  workloadSelector: {matchLabels: {app: api}}
  rules:
    - name: api-crud
      subjects: {serviceAccounts: [api]}
      operations: [select, insert, update, delete, copy, call]
      tables: ['*']
  guardrails: {maxRows: 3}
  masking:
    columns:
      - {columns: [public.users.email], strategy: email}
";

async fn users(pg: &Postgres) -> TestResult {
    pg.psql(
        &APP,
        "CREATE TABLE public.users (id int, email text, pin text);
         INSERT INTO public.users VALUES (1, 'ada@example.com', '1234'), (2, 'bob@corp.io', '9876');
         CREATE TABLE public.big AS SELECT g AS id FROM generate_series(1, 10) g;",
    )
    .await?
    .ok("create tables")?;
    Ok(())
}

/// PostgreSQL with the tables, a collector, and the sidecar enforcing [`POLICY`] as `shop/api`
/// with audit (chain `instance`) to the collector; the folder holds the policy and the spool.
pub(crate) async fn audited(
    instance: &str,
    limits: LimitsConfig,
) -> Result<(Postgres, Collector, tempfile::TempDir, Proxy), Box<dyn std::error::Error + Send + Sync>>
{
    let pg = start_pg().await?;
    users(&pg).await?;
    let collector = Collector::start().await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("policy.yaml"), POLICY)?;
    let p = proxy(
        &pg,
        Setup {
            enforce: Some(Enforce {
                policies: vec![dir.path().join("policy.yaml")],
                service_account: "shop/api".into(),
                secrets_dir: None,
            }),
            audit: Some(audit_config(
                &collector,
                &dir.path().join("spool"),
                instance,
            )),
            limits,
            ..Setup::default()
        },
    )
    .await?;
    Ok((pg, collector, dir, p))
}

/// Says goodbye on `raw`, waits (up to `limit`) until both sessions' `connection.close` reached
/// the collector, stops the sidecar, checks the chain and returns the events.
pub(crate) async fn finish(
    mut raw: Raw,
    collector: &Collector,
    mut p: Proxy,
    limit: Duration,
) -> Result<Vec<Value>, Box<dyn std::error::Error + Send + Sync>> {
    let mut out = BytesMut::new();
    fe::terminate(&mut out);
    raw.send(&out).await?;
    drop(raw);
    wait_for(collector, limit, |evs| {
        evs.iter()
            .filter(|e| e["kind"] == "connection.close")
            .count()
            == 2
    })
    .await;
    p.handle
        .take()
        .ok_or("the sidecar was stopped already")?
        .shutdown()
        .await;
    let lines = collector.lines();
    verified(&lines);
    Ok(events(&lines))
}

/// The `statement.result` events of the statement events whose text contains `needle`.
pub(crate) fn results_of<'a>(evs: &'a [Value], needle: &str) -> Vec<&'a Value> {
    let ids: Vec<&str> = evs
        .iter()
        .filter(|e| {
            e["kind"] == "statement" && e["statement"].as_str().is_some_and(|s| s.contains(needle))
        })
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert!(!ids.is_empty(), "no statement event with {needle:?}");
    evs.iter()
        .filter(|e| {
            e["kind"] == "statement.result"
                && e["statement_id"]
                    .as_str()
                    .is_some_and(|id| ids.contains(&id))
        })
        .collect()
}

fn one<'a>(evs: &'a [Value], needle: &str) -> &'a Value {
    let results = results_of(evs, needle);
    assert_eq!(results.len(), 1, "one result for {needle:?}: {results:#?}");
    results[0]
}

#[tokio::test]
async fn every_statement_that_ran_has_a_result_with_what_it_returned() -> TestResult {
    let (pg, collector, _dir, p) = audited("api-0.results", LimitsConfig::default()).await?;

    let client = p.connect().await?;
    // Extended protocol: masked values, counted per column.
    let rows = client
        .query("SELECT id, email FROM public.users ORDER BY id", &[])
        .await?;
    assert_eq!(rows[0].get::<_, &str>(1), "a***@example.com");
    // A write: the rows it affected.
    client
        .simple_query("INSERT INTO public.big VALUES (11), (12)")
        .await?;
    // A result refused by maxRows after three rows were sent.
    // The client is told the statement ran: the error is not the database's rollback.
    let refused = client
        .simple_query("SELECT id FROM public.big")
        .await
        .expect_err("past maxRows");
    let detail = refused.as_db_error().and_then(|e| e.detail()).unwrap_or("");
    assert!(
        detail.contains("may have run, and nothing was undone"),
        "{refused:?}"
    );
    // A failing statement, and the one after it in the same string that therefore never ran.
    let failed = client
        .simple_query(
            "SELECT 1/0 FROM public.users; UPDATE public.users SET pin = 'x' WHERE id = 1",
        )
        .await;
    assert!(failed.is_err());
    // Refused before it ran: a statement event, no result.
    assert!(client.simple_query("DROP TABLE public.big").await.is_err());
    drop(client);

    // A pipeline whose first result the sidecar refuses: the database still runs the UPDATE
    // behind it (it knows nothing of the refusal), and the audit says so.
    let mut raw = Raw::session(p.addr).await?;
    let mut out = BytesMut::new();
    fe::parse("", "SELECT big.id FROM public.big", [], &mut out)?;
    bind("", "", &[], &mut out)?;
    fe::describe(b'P', "", &mut out)?;
    fe::execute("", 0, &mut out)?;
    fe::parse(
        "",
        "UPDATE public.users SET id = id WHERE id = 2",
        [],
        &mut out,
    )?;
    bind("", "", &[], &mut out)?;
    fe::execute("", 0, &mut out)?;
    fe::sync(&mut out);
    raw.send(&out).await?;
    let answer = tags(&raw.until_ready().await?);
    assert!(
        answer.ends_with("E Z"),
        "the client sees the refusal: {answer}"
    );
    let evs = finish(raw, &collector, p, Duration::from_secs(20)).await?;

    let masked = one(&evs, "email FROM public.users");
    assert_eq!(masked["decision"], "masked", "{masked}");
    assert_eq!(masked["rows"], 2);
    assert_eq!(
        masked["masked"]["columns"],
        serde_json::json!(["public.users.email"])
    );
    assert_eq!(masked["masked"]["values"], 2);
    assert!(masked["durations"]["upstream_us"].as_u64().unwrap() > 0);
    assert_eq!(masked["identity"]["service_account"], "api");
    assert_eq!(masked["database"], "app");
    assert!(masked.get("error").is_none(), "{masked}");

    let insert = one(&evs, "INSERT INTO public.big");
    assert_eq!(
        (insert["decision"].as_str(), insert["rows"].as_u64()),
        (Some("allowed"), Some(2))
    );

    let over = one(&evs, "SELECT id FROM public.big");
    assert_eq!(over["decision"], "denied", "{over}");
    assert_eq!(
        over["rows"], 3,
        "three rows were sent before the refusal: {over}"
    );
    assert!(
        over["error"]
            .as_str()
            .unwrap()
            .contains("guardrails.maxRows"),
        "{over}"
    );

    let division = one(&evs, "/");
    assert_eq!(division["sqlstate"], "22012", "{division}");
    assert!(division.get("rows").is_none());
    let skipped = one(&evs, "SET pin");
    assert!(
        skipped["error"].as_str().unwrap().starts_with("not run"),
        "{skipped}"
    );
    let pin: String = pg
        .psql(&APP, "SELECT pin FROM public.users WHERE id = 1")
        .await?
        .ok("read pin")?
        .trim()
        .to_owned();
    assert_eq!(pin, "1234", "the skipped UPDATE did not run");

    assert!(
        results_of(&evs, "DROP TABLE").is_empty(),
        "a refused statement never ran, so it has no result"
    );

    // The pipeline: the first Execute is the one refused by maxRows...
    assert_eq!(one(&evs, "SELECT big.id")["decision"], "denied");
    // ...and the UPDATE behind it ran: the client was told only that it may have.
    let behind = one(&evs, "SET id = id");
    assert_eq!(behind["rows"], 1, "{behind}");
    assert!(
        behind["error"]
            .as_str()
            .unwrap()
            .contains("result was not sent"),
        "{behind}"
    );

    // Every result names a statement event of the same connection, recorded before it.
    for result in evs.iter().filter(|e| e["kind"] == "statement.result") {
        let statement = evs
            .iter()
            .find(|e| e["id"] == result["statement_id"])
            .expect("its statement event");
        assert_eq!(statement["kind"], "statement");
        assert_eq!(statement["connection"], result["connection"]);
        assert!(statement["seq"].as_u64() < result["seq"].as_u64());
    }
    Ok(())
}

/// Answers are matched to the statements they end even where the counts are large or where
/// some statements have no event: a string of 5000 statements, a pipeline of 5000 Executes and
/// a burst of 3000 refused statements in one write all go through, and an empty statement in a
/// pipeline does not take the next statement's result.
#[tokio::test]
async fn long_strings_pipelines_and_empty_statements_keep_results_in_step() -> TestResult {
    let (_pg, collector, _dir, p) = audited("api-0.long", LimitsConfig::default()).await?;
    const N: usize = 5000;

    let client = p.connect().await?;
    let string = "SELECT id FROM public.big WHERE id = 1;".repeat(N);
    let answers = tokio::time::timeout(Duration::from_secs(60), client.simple_query(&string))
        .await
        .map_err(|_| "a string of 5000 statements never finished")??;
    let completed = answers
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(1)))
        .count();
    assert_eq!(completed, N, "every statement answered, one row each");
    drop(client);

    let mut raw = Raw::session(p.addr).await?;
    let mut out = BytesMut::new();
    // An empty statement first: it has no event, and its EmptyQueryResponse must not end the
    // next statement's run.
    fe::parse("", "", [], &mut out)?;
    bind("", "", &[], &mut out)?;
    fe::execute("", 0, &mut out)?;
    fe::parse("", "SELECT id FROM public.big WHERE id <= 2", [], &mut out)?;
    bind("", "", &[], &mut out)?;
    fe::execute("", 0, &mut out)?;
    fe::sync(&mut out);
    fe::parse(
        "pipelined",
        "SELECT id, pin FROM public.users WHERE id = 1",
        [],
        &mut out,
    )?;
    for _ in 0..N {
        bind("", "pipelined", &[], &mut out)?;
        fe::execute("", 0, &mut out)?;
    }
    fe::sync(&mut out);
    raw.send(&out).await?;
    let first = tags(&raw.until_ready().await?);
    assert_eq!(first, "1 2 I 1 2 D D C Z", "{first}");
    let second = raw.until_ready().await?;
    assert_eq!(second.iter().filter(|(t, _)| *t == b'C').count(), N);
    // A burst of refused statements in one write: each gets its error and ReadyForQuery (the
    // notes of a batch are all queued before it is written, so none may wait for room).
    out.clear();
    for _ in 0..3000 {
        fe::query("VACUUM", &mut out)?;
    }
    raw.send(&out).await?;
    let mut errors = 0;
    for _ in 0..3000 {
        let answer = raw.until_ready().await?;
        errors += answer.iter().filter(|(t, _)| *t == b'E').count();
    }
    assert_eq!(errors, 3000);
    let evs = finish(raw, &collector, p, Duration::from_secs(60)).await?;
    // (results, results of exactly one row) of the statements whose text holds `needle`
    let counts = |needle: &str| -> (usize, usize) {
        let results = results_of(&evs, needle);
        let one_row = results.iter().filter(|r| r["rows"] == 1).count();
        (results.len(), one_row)
    };
    assert_eq!(
        counts("big WHERE id = ?"),
        (N, N),
        "one result of one row per statement"
    );
    assert_eq!(
        one(&evs, "WHERE id <= ?")["rows"],
        2,
        "not the empty statement's answer"
    );
    assert_eq!(counts("pin FROM public.users"), (N, N), "one per Execute");
    Ok(())
}

#[tokio::test]
async fn stray_copy_messages_refused_results_and_floods_keep_session_and_record_straight()
-> TestResult {
    // A low limit of unanswered messages, for the flood below.
    let limits = LimitsConfig {
        max_unanswered_messages: 1024,
        ..LimitsConfig::default()
    };
    let (_pg, collector, _dir, p) = audited("api-0.stray", limits).await?;

    // Copy messages outside a COPY: PostgreSQL drops them. They used to move the count of
    // answers owed, so the query behind them was recorded as not run and its result as no
    // statement's.
    let mut raw = Raw::session(p.addr).await?;
    let mut out = BytesMut::new();
    fe::sync(&mut out);
    fe::copy_done(&mut out);
    fe::copy_fail("stray", &mut out)?;
    fe::query("SELECT id FROM public.big WHERE id <= 2", &mut out)?;
    raw.send(&out).await?;
    assert_eq!(tags(&raw.until_ready().await?), "Z");
    let answer = tags(&raw.until_ready().await?);
    assert_eq!(answer, "T D D C Z", "{answer}");

    // A result refused (maxRows) withholds the rest of its exchange, but not the session's
    // news: a setting changed behind it still reaches the client.
    out.clear();
    fe::query(
        "SELECT id FROM public.big; SET application_name = 'after_refusal'",
        &mut out,
    )?;
    raw.send(&out).await?;
    let answer = raw.until_ready().await?;
    let status: Vec<&[u8]> = answer
        .iter()
        .filter(|(t, _)| *t == b'S')
        .map(|(_, b)| &b[..])
        .collect();
    assert_eq!(
        status,
        [&b"application_name\0after_refusal\0"[..]],
        "{}",
        tags(&answer)
    );

    // After a failed Bind the database skips every message up to a Sync without answering:
    // a client that never sends one is cut off at the sidecar's limit of notes, not held in
    // memory without end.
    let mut flood = Raw::session(p.addr).await?;
    out.clear();
    fe::parse("f", "SELECT id FROM public.big WHERE id = 1", [], &mut out)?;
    fe::sync(&mut out);
    flood.send(&out).await?;
    assert_eq!(tags(&flood.until_ready().await?), "1 Z");
    // Failing cycles that do end with a Sync leave nothing behind: in batches below the limit,
    // more of them than the limit go through (the Describe the sidecar adds to each Execute
    // is never answered).
    for _ in 0..3 {
        out.clear();
        for _ in 0..400 {
            bind("", "f", &["1"], &mut out)?;
            fe::execute("", 0, &mut out)?;
            fe::sync(&mut out);
        }
        flood.send(&out).await?;
        for _ in 0..400 {
            assert_eq!(tags(&flood.until_ready().await?), "E Z");
        }
    }
    out.clear();
    // One parameter for a statement that takes none: the database refuses the Bind.
    bind("", "f", &["1"], &mut out)?;
    for _ in 0..2000 {
        fe::execute("", 0, &mut out)?;
    }
    flood.send(&out).await?;
    let (code, message) = fatal_at_end(&mut flood)
        .await?
        .ok_or("the flood was not cut off")?;
    assert_eq!(code.as_deref(), Some("08P01"), "{message:?}");
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("send a Sync")),
        "{message:?}"
    );

    let evs = finish(raw, &collector, p, Duration::from_secs(30)).await?;
    let result = one(&evs, "WHERE id <= ?");
    assert_eq!(result["rows"], 2, "{result}");
    assert!(result.get("error").is_none(), "{result}");
    Ok(())
}

/// PostgreSQL tells statement names apart by their first 63 bytes; the sidecar must too, or it
/// would follow (and record) another statement than the one the server runs.
#[tokio::test]
async fn long_statement_names_are_told_apart_as_postgresql_does() -> TestResult {
    let (_pg, collector, _dir, p) = audited("api-0.names", LimitsConfig::default()).await?;
    drop(Raw::session(p.addr).await?);
    let mut raw = Raw::session(p.addr).await?;
    let (prepared, bound) = ("n".repeat(63) + "a", "n".repeat(63) + "b");
    let mut out = BytesMut::new();
    fe::parse(
        &prepared,
        "SELECT id FROM public.big WHERE id = 7",
        [],
        &mut out,
    )?;
    fe::sync(&mut out);
    // For the server the same statement: it compares 63 bytes.
    bind("", &bound, &[], &mut out)?;
    fe::execute("", 0, &mut out)?;
    fe::sync(&mut out);
    raw.send(&out).await?;
    assert_eq!(tags(&raw.until_ready().await?), "1 Z");
    let answer = tags(&raw.until_ready().await?);
    assert_eq!(answer, "2 D C Z", "{answer}");
    let evs = finish(raw, &collector, p, Duration::from_secs(30)).await?;
    assert_eq!(one(&evs, "WHERE id = ?")["rows"], 1);
    Ok(())
}
