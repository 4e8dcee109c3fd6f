//! Held statements (`Verdict::Hold`, how approvals wait): nothing reaches the database until
//! the verdict; a refusal, a cancel or a disconnect means the statement never runs.

use std::sync::Arc;
use std::time::Duration;

use dbwarden_sidecar::hook::{
    Denial, Hold, HookFactory, RowAction, RowHook, SessionHooks, SessionInfo, Statement,
    StatementHook, Verdict,
};
use dbwarden_sidecar::protocol::backend::{DataRow, RowDescription};
use dbwarden_testbed::{APP, Postgres};
use tokio::sync::watch;

use bytes::BytesMut;
use postgres_protocol::message::frontend as fe;

use crate::common::{Proxy, Raw, Setup, TestResult, error_codes, proxy, start_pg, tags};
use crate::extended::bind;

/// Holds every statement containing `/* hold */` until the test sends a verdict, counting the
/// holds the sidecar has begun waiting on; with `true`, also refuses every result with a
/// column named `refused`.
#[derive(Debug)]
struct Gate(watch::Receiver<Option<bool>>, bool, Arc<watch::Sender<u32>>);

struct GateSession(watch::Receiver<Option<bool>>, Arc<watch::Sender<u32>>);

impl HookFactory for Gate {
    fn open(&self, _session: &SessionInfo) -> SessionHooks {
        SessionHooks {
            statements: Some(Box::new(GateSession(self.0.clone(), self.2.clone()))),
            rows: self.1.then(|| Box::new(RefuseNamed) as Box<dyn RowHook>),
        }
    }
}

/// Refuses results with a column named `refused`.
struct RefuseNamed;

impl RowHook for RefuseNamed {
    fn row_description(&mut self, description: &RowDescription<'_>) -> Result<(), Denial> {
        if description.fields().any(|f| f.name == b"refused") {
            return Err(Denial::new("this result is refused"));
        }
        Ok(())
    }

    fn data_row(&mut self, _: &DataRow<'_>, _: &mut BytesMut) -> RowAction {
        RowAction::Forward
    }
}

impl StatementHook for GateSession {
    fn check(&mut self, statement: Statement<'_>) -> Verdict {
        let sql = match statement {
            Statement::Query { sql } | Statement::Parse { sql, .. } => sql,
            Statement::FunctionCall { .. } => return Verdict::Allow,
        };
        if !sql.contains("/* hold */") {
            return Verdict::Allow;
        }
        let (mut gate, begun) = (self.0.clone(), self.1.clone());
        Verdict::Hold(Hold(Box::pin(async move {
            // First polled once the sidecar waits on it (and a cancel would reach it).
            begun.send_modify(|n| *n += 1);
            match gate.wait_for(Option::is_some).await.map(|v| *v) {
                Ok(Some(true)) => Verdict::Allow,
                _ => Verdict::Deny(Denial::new("approver bob denied it")),
            }
        })))
    }
}

/// The sidecar behind a [`Gate`] (`refusing`: it also refuses results), the gate's verdict and
/// the count of holds begun.
async fn gated(
    pg: &Postgres,
    refusing: bool,
) -> Result<
    (Proxy, watch::Sender<Option<bool>>, watch::Receiver<u32>),
    Box<dyn std::error::Error + Send + Sync>,
> {
    let (tx, rx) = watch::channel(None);
    let (begun, holds) = watch::channel(0);
    let setup = Setup {
        hooks: Some(Arc::new(Gate(rx, refusing, Arc::new(begun))) as Arc<dyn HookFactory>),
        ..Setup::default()
    };
    Ok((proxy(pg, setup).await?, tx, holds))
}

/// A held statement's result, which its cancel refused.
fn refused_as_cancelled(
    result: Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>,
) -> TestResult {
    let error = result.err().ok_or("the held statement was not cancelled")?;
    let message = error.as_db_error().ok_or("not a server error")?.message();
    assert!(message.contains("canceling statement"), "{message}");
    Ok(())
}

/// Cancels once the sidecar has begun `held` holds in all: a cancel sent before the statement
/// is held finds nothing to take.
async fn cancel_once_held(
    holds: &mut watch::Receiver<u32>,
    held: u32,
    cancel: &tokio_postgres::CancelToken,
) -> TestResult {
    holds.wait_for(|n| *n >= held).await?;
    cancel.cancel_query(tokio_postgres::NoTls).await?;
    Ok(())
}

async fn rows(pg: &Postgres, table: &str) -> Result<i64, Box<dyn std::error::Error + Send + Sync>> {
    let out = pg
        .psql(&APP, &format!("SELECT count(*) FROM {table}"))
        .await?
        .ok("count")?;
    Ok(out.trim().parse()?)
}

async fn table(pg: &Postgres, name: &str) -> TestResult {
    pg.psql(&APP, &format!("CREATE TABLE {name} (id int)"))
        .await?
        .ok("create")?;
    Ok(())
}

#[tokio::test]
async fn a_held_statement_runs_only_after_the_verdict_and_the_session_goes_on() -> TestResult {
    let pg = start_pg().await?;
    table(&pg, "held_allow").await?;
    let (p, gate, _) = gated(&pg, false).await?;
    let client = Arc::new(p.connect().await?);
    let held = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .simple_query("/* hold */ INSERT INTO held_allow VALUES (1)")
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rows(&pg, "held_allow").await?, 0, "ran before the verdict");
    assert!(!held.is_finished());
    gate.send(Some(true))?;
    held.await??;
    assert_eq!(rows(&pg, "held_allow").await?, 1);
    let after = client.query_one("SELECT 1", &[]).await?;
    assert_eq!(after.get::<_, i32>(0), 1);
    Ok(())
}

#[tokio::test]
async fn a_refused_hold_reaches_the_client_as_an_error() -> TestResult {
    let pg = start_pg().await?;
    table(&pg, "held_deny").await?;
    let (p, gate, _) = gated(&pg, false).await?;
    let client = p.connect().await?;
    let (result, ()) = tokio::join!(
        client.execute("/* hold */ INSERT INTO held_deny VALUES (1)", &[]),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = gate.send(Some(false));
        }
    );
    let error = result.err().ok_or("not refused")?;
    let db = error.as_db_error().ok_or("not a server error")?;
    assert_eq!(db.code().code(), "42501");
    assert!(db.message().contains("bob denied"), "{}", db.message());
    assert_eq!(rows(&pg, "held_deny").await?, 0);
    client.simple_query("SELECT 1").await?;
    Ok(())
}

#[tokio::test]
async fn a_cancel_or_a_disconnect_while_held_means_it_never_runs() -> TestResult {
    let pg = start_pg().await?;
    table(&pg, "held_gone").await?;
    let (p, gate, mut holds) = gated(&pg, false).await?;

    // Cancel: the client's CancelRequest ends the wait with an error; the session goes on. The
    // cancel goes no further: the database was not running the held statement, and would
    // cancel the next one instead, here a sleep pipelined behind it, which runs as soon as the
    // held statement is refused. The cancel is sent once the sidecar holds the statement;
    // all bounded, so a lost cancel fails the test instead of hanging it.
    let client = p.connect().await?;
    let cancel = client.cancel_token();
    let (held, next, cancelled) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(
            client.simple_query("/* hold */ INSERT INTO held_gone VALUES (1)"),
            client.simple_query("SELECT pg_sleep(1)"),
            cancel_once_held(&mut holds, 1, &cancel)
        )
    })
    .await
    .map_err(|_| "the held statement was not cancelled within 30 s")?;
    cancelled?;
    refused_as_cancelled(held)?;
    next.map_err(|e| {
        let why = e.as_db_error().map_or(e.to_string(), |db| {
            format!("{} {}", db.code().code(), db.message())
        });
        format!("the statement after the cancelled one failed: {why}")
    })?;

    // A cancel while a statement sent before the held one still runs in the database reaches
    // that statement too, as it would without the sidecar; the held one never runs.
    let (ahead, held, cancelled) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(
            client.simple_query("SELECT pg_sleep(5)"),
            client.simple_query("/* hold */ INSERT INTO held_gone VALUES (3)"),
            cancel_once_held(&mut holds, 2, &cancel)
        )
    })
    .await
    .map_err(|_| "the statements were not cancelled within 30 s")?;
    cancelled?;
    let ahead = ahead.err().ok_or("the statement ahead was not cancelled")?;
    assert_eq!(ahead.code().map(|c| c.code()), Some("57014"), "{ahead}");
    refused_as_cancelled(held)?;

    // Disconnect, and Terminate: the client goes away while held; a later approval finds
    // nobody to run for.
    let mut query = BytesMut::new();
    fe::query("/* hold */ INSERT INTO held_gone VALUES (2)", &mut query)?;
    let mut leaver = Raw::session(p.addr).await?;
    leaver.send(&query).await?;
    let mut goodbye = Raw::session(p.addr).await?;
    goodbye.send(&query).await?;
    // Both held (after the two cancelled ones).
    tokio::time::timeout(Duration::from_secs(30), holds.wait_for(|n| *n >= 4))
        .await
        .map_err(|_| "the two statements were not held within 30 s")??;
    drop(leaver);
    let mut terminate = BytesMut::new();
    fe::terminate(&mut terminate);
    goodbye.send(&terminate).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.send(Some(true))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rows(&pg, "held_gone").await?,
        0,
        "a held statement ran after all"
    );
    Ok(())
}

/// A statement held behind a COPY FROM STDIN whose CopyInResponse a refused result withheld:
/// the sidecar fails the COPY while the statement waits, rather than leaving the database
/// waiting for copy data through the whole approval (and then sending the held statement to a
/// database in COPY mode, which ends the session for it).
#[tokio::test]
async fn a_copy_withheld_behind_a_refused_result_is_failed_while_a_statement_is_held() -> TestResult
{
    let pg = start_pg().await?;
    table(&pg, "held_copy").await?;
    let (p, gate, _) = gated(&pg, true).await?;
    let mut raw = Raw::session(p.addr).await?;
    let mut out = BytesMut::new();
    for sql in [
        "SELECT 1 AS refused",
        "COPY held_copy FROM STDIN",
        "/* hold */ INSERT INTO held_copy VALUES (1)",
    ] {
        fe::parse("", sql, [], &mut out)?;
        bind("", "", &[], &mut out)?;
        fe::execute("", 0, &mut out)?;
    }
    fe::sync(&mut out);
    raw.send(&out).await?;
    // The database has answered the first two long before the verdict.
    tokio::time::sleep(Duration::from_millis(500)).await;
    gate.send(Some(true))?;
    let answer = raw.until_ready().await?;
    assert_eq!(error_codes(&answer), ["42501"], "{}", tags(&answer));

    // The session goes on, and neither the COPY nor the statement behind it took anything in
    // (the failed COPY aborted the rest of the pipeline).
    out.clear();
    fe::query("SELECT 2", &mut out)?;
    raw.send(&out).await?;
    assert_eq!(tags(&raw.until_ready().await?), "T D C Z");
    assert_eq!(rows(&pg, "held_copy").await?, 0);
    Ok(())
}
