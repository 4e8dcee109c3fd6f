//! What a client hears when the sidecar refuses a result midway (maxRows, a value it cannot
//! mask) and discards the rest: a COPY behind it is failed rather than left waiting, and the
//! database's own news (ending the session, warning that it will) still comes, without the
//! text the refusal withholds.

use std::time::Duration;

use bytes::BytesMut;
use dbwarden_sidecar::config::LimitsConfig;
use dbwarden_testbed::APP;
use postgres_protocol::message::frontend as fe;
use serde_json::Value;

use crate::audit::{events, wait_for};
use crate::common::{Proxy, Raw, TestResult, error_codes, error_field, fatal_at_end, tags};
use crate::extended::bind;
use crate::results::{audited, finish, results_of};

/// A pipeline whose first result maxRows refuses, a COPY FROM STDIN, then `behind`.
fn copy_pipeline(behind: &[&str], out: &mut BytesMut) -> TestResult {
    for sql in ["SELECT id FROM public.big", "COPY public.big FROM STDIN"]
        .iter()
        .chain(behind)
    {
        fe::parse("", sql, [], out)?;
        bind("", "", &[], out)?;
        fe::execute("", 0, out)?;
    }
    Ok(())
}

/// Sends [`copy_pipeline`] with `behind` and a Sync in a new session, which the database must
/// end with its FATAL 08P01 (a message other than copy data in COPY mode), relayed.
async fn fatal_behind_copy(p: &Proxy, behind: &[&str]) -> TestResult {
    let mut raw = Raw::session(p.addr).await?;
    let mut out = BytesMut::new();
    copy_pipeline(behind, &mut out)?;
    fe::sync(&mut out);
    raw.send(&out).await?;
    let (code, message) = fatal_at_end(&mut raw)
        .await?
        .ok_or("the session ended without a word")?;
    assert_eq!(code.as_deref(), Some("08P01"), "{message:?}");
    Ok(())
}

/// A COPY FROM STDIN behind a refused result: the client never sees its CopyInResponse, so
/// the sidecar fails the COPY itself. The database would otherwise wait for data that never
/// comes, and the client for an answer.
#[tokio::test]
async fn a_copy_behind_a_refused_result_is_failed_not_left_waiting() -> TestResult {
    let (_pg, collector, _dir, p) = audited("api-0.copy", LimitsConfig::default()).await?;
    drop(Raw::session(p.addr).await?);
    let mut raw = Raw::session(p.addr).await?;
    // One query string, where maxRows refuses the first result; then a pipeline, with the
    // Sync a driver sends behind the COPY's Execute (the database ignores it while it waits
    // for data; the client is owed its ReadyForQuery all the same).
    let mut string = BytesMut::new();
    fe::query(
        "SELECT id FROM public.big; COPY public.big FROM STDIN",
        &mut string,
    )?;
    let mut pipeline = BytesMut::new();
    copy_pipeline(&[], &mut pipeline)?;
    fe::sync(&mut pipeline);
    for exchange in [string, pipeline] {
        raw.send(&exchange).await?;
        let answer = raw.until_ready().await?;
        assert_eq!(error_codes(&answer), ["42501"], "{}", tags(&answer));
    }

    // The session goes on, and neither COPY took anything in.
    let mut out = BytesMut::new();
    fe::query("SELECT count(*) FROM public.big", &mut out)?;
    raw.send(&out).await?;
    let answer = raw.until_ready().await?;
    assert_eq!(tags(&answer), "T D C Z");
    let (_, row) = &answer[1];
    assert!(row.ends_with(b"10"), "{row:?}");

    let evs = finish(raw, &collector, p, Duration::from_secs(30)).await?;
    let copies = results_of(&evs, "COPY public.big FROM STDIN");
    assert_eq!(copies.len(), 2, "{copies:#?}");
    for result in copies {
        // query_canceled: the database's code for a COPY its client failed.
        assert_eq!(result["sqlstate"], "57014", "{result}");
    }
    Ok(())
}

/// The COPY behind a refused result, with more behind it: a client that sends a Flush and its
/// Sync only later is still answered. A statement pipelined behind the COPY makes PostgreSQL
/// end the connection (a message other than copy data, Sync or Flush in COPY mode); the client
/// must hear that from the database, not find its connection closed.
#[tokio::test]
async fn a_copy_behind_a_refused_result_with_more_behind_it() -> TestResult {
    let (_pg, collector, _dir, p) = audited("api-0.copy-more", LimitsConfig::default()).await?;
    // Flush, wait for the refusal, then Sync.
    let mut raw = Raw::session(p.addr).await?;
    let mut out = BytesMut::new();
    copy_pipeline(&[], &mut out)?;
    fe::flush(&mut out);
    raw.send(&out).await?;
    loop {
        let (tag, body) = raw.recv().await?.ok_or("closed before the refusal")?;
        if tag == b'E' {
            assert_eq!(error_field(&body, b'C').as_deref(), Some("42501"));
            break;
        }
    }
    out.clear();
    fe::sync(&mut out);
    fe::query("SELECT count(*) FROM public.big", &mut out)?;
    raw.send(&out).await?;
    assert_eq!(tags(&raw.until_ready().await?), "Z");
    assert_eq!(tags(&raw.until_ready().await?), "T D C Z");

    // A statement behind the COPY, before the Sync.
    fatal_behind_copy(&p, &["SELECT 1"]).await?;
    // The database's FATAL is no statement's result: the one it swallowed never ran.
    let swallowed = |evs: &[Value]| {
        results_of(evs, "SELECT ?")
            .first()
            .map(|result| (*result).clone())
    };
    wait_for(&collector, Duration::from_secs(30), |evs| {
        evs.iter()
            .any(|e| e["kind"] == "statement" && e["statement"] == "SELECT ?")
            && swallowed(evs).is_some()
    })
    .await;
    let result = swallowed(&events(&collector.lines())).ok_or("no result")?;
    assert!(result.get("sqlstate").is_none(), "{result}");
    assert!(
        result["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no result") && e.contains("SQLSTATE 08P01")),
        "{result}"
    );

    // So many statements behind the COPY that the database exits with most of them unread,
    // which resets the connection under the sidecar's write: what it said first still comes.
    fatal_behind_copy(&p, &["SELECT 2"; 4000]).await?;

    // Others are served, and no COPY took anything in.
    let client = p.connect().await?;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM public.big", &[])
        .await?
        .get(0);
    assert_eq!(rows, 10);
    Ok(())
}

/// News of the session raised inside a refused result still reaches the client, since the
/// database may be about to end the session; but PL/pgSQL can raise it with any text and code,
/// here carrying a PIN the refusal withholds: only its severity and a code the server itself
/// uses pass. A WARNING of class 57P (once), then a FATAL (any error is one under
/// `exit_on_error`, which any user may set).
#[tokio::test]
async fn news_inside_a_refused_result_keeps_its_code_not_its_text() -> TestResult {
    let (pg, collector, _dir, p) = audited("api-0.news", LimitsConfig::default()).await?;
    pg.psql(
        &APP,
        "CREATE FUNCTION public.leak(i int, fail bool) RETURNS int LANGUAGE plpgsql AS $$
         DECLARE
           pin text := 'pin ' || (SELECT pin FROM public.users WHERE id = 1);
         BEGIN
           IF i > 4 AND fail THEN
             RAISE EXCEPTION USING ERRCODE = 'P' || right(pin, 4), MESSAGE = pin, DETAIL = pin;
           ELSIF i > 4 THEN
             RAISE WARNING USING ERRCODE = '57P01', MESSAGE = pin, DETAIL = pin;
           END IF;
           RETURN i;
         END $$;",
    )
    .await?
    .ok("create function")?;
    let leaked = |body: &[u8]| String::from_utf8_lossy(body).contains("1234");
    let mut raw = Raw::session(p.addr).await?;
    let mut out = BytesMut::new();
    // maxRows (3) refuses the result at its fourth row; rows 5 to 10 warn, and the first
    // warning passes.
    fe::query(
        "SELECT public.leak(id, false) FROM public.big ORDER BY id",
        &mut out,
    )?;
    raw.send(&out).await?;
    let answer = raw.until_ready().await?;
    assert_eq!(error_codes(&answer), ["42501"], "{}", tags(&answer));
    let warnings: Vec<_> = answer.iter().filter(|(t, _)| *t == b'N').collect();
    assert_eq!(warnings.len(), 1, "{}", tags(&answer));
    for (_, body) in warnings {
        assert_eq!(error_field(body, b'C').as_deref(), Some("57P01"));
        assert_eq!(error_field(body, b'V').as_deref(), Some("WARNING"));
        assert!(!leaked(body), "{body:?}");
    }

    // The session goes on.
    out.clear();
    fe::query("SELECT 1", &mut out)?;
    raw.send(&out).await?;
    assert_eq!(tags(&raw.until_ready().await?), "T D C Z");

    // Row 5 raises an error, which exit_on_error makes the session's end.
    pg.psql(&APP, "ALTER ROLE CURRENT_USER SET exit_on_error = on")
        .await?
        .ok("set exit_on_error")?;
    let mut raw = Raw::session(p.addr).await?;
    out.clear();
    fe::query(
        "SELECT public.leak(id, true) FROM public.big ORDER BY id",
        &mut out,
    )?;
    raw.send(&out).await?;
    let said = raw.until_closed().await?;
    assert_eq!(error_codes(&said), ["42501", "XX000"], "{}", tags(&said));
    let (_, fatal) = said.last().ok_or("nothing said")?;
    assert_eq!(error_field(fatal, b'V').as_deref(), Some("FATAL"));
    assert!(!said.iter().any(|(_, body)| leaked(body)), "{said:?}");

    // Both results are recorded as refused: the second too, although the session ended
    // before the database finished it.
    let refused = |evs: &[Value]| {
        // results_of wants the statement events there.
        let statements = evs.iter().filter(|e| {
            e["kind"] == "statement" && e["statement"].as_str().is_some_and(|s| s.contains("leak"))
        });
        if statements.count() < 2 {
            return None;
        }
        let results = results_of(evs, "public.leak");
        (results.len() == 2).then(|| results.into_iter().cloned().collect::<Vec<_>>())
    };
    wait_for(&collector, Duration::from_secs(30), |evs| {
        refused(evs).is_some()
    })
    .await;
    for result in refused(&events(&collector.lines())).ok_or("no results")? {
        assert_eq!(result["decision"], "denied", "{result}");
        assert!(
            result["error"]
                .as_str()
                .is_some_and(|e| e.contains("maxRows")),
            "{result}"
        );
        assert_eq!(result["rows"], 3, "{result}");
    }
    Ok(())
}
