//! The statement and row hooks on the real path: denials keep the protocol in sync.

use std::sync::Arc;

use bytes::BytesMut;
use dbwarden_sidecar::frontend::{AuthRequest, BoxFuture, IdentityHook};
use dbwarden_sidecar::hook::{
    Denial, HookFactory, Identity, RowAction, RowHook, SessionHooks, SessionInfo, Statement,
    StatementHook, Verdict,
};
use dbwarden_sidecar::protocol::backend::{DataRow, RowDescription, encode_data_row};
use postgres_protocol::message::frontend as fe;

use crate::common::{Raw, Setup, TestResult, error_codes, error_field, proxy, start_pg, tags};

/// Denies statements that mention `forbidden_table`; masks columns named `secret`; refuses
/// results that contain the value `deny-me`.
#[derive(Debug)]
struct TestPolicy;

struct Statements;
struct Rows {
    secret_columns: Vec<usize>,
}

impl HookFactory for TestPolicy {
    fn open(&self, _session: &SessionInfo) -> SessionHooks {
        SessionHooks {
            statements: Some(Box::new(Statements)),
            rows: Some(Box::new(Rows {
                secret_columns: Vec::new(),
            })),
        }
    }
}

impl StatementHook for Statements {
    fn check(&mut self, statement: Statement<'_>) -> Verdict {
        let sql = match statement {
            Statement::Query { sql } | Statement::Parse { sql, .. } => sql,
            Statement::FunctionCall { .. } => return Verdict::Allow,
        };
        if sql.contains("forbidden_table") {
            Verdict::Deny(Denial {
                message: "rule no-forbidden: forbidden_table is off limits".into(),
                detail: None,
            })
        } else {
            Verdict::Allow
        }
    }
}

impl RowHook for Rows {
    fn row_description(&mut self, description: &RowDescription<'_>) -> Result<(), Denial> {
        self.secret_columns = description
            .fields()
            .enumerate()
            .filter(|(_, f)| f.name == b"secret")
            .map(|(i, _)| i)
            .collect();
        Ok(())
    }

    fn data_row(&mut self, row: &DataRow<'_>, out: &mut BytesMut) -> RowAction {
        if row.values().any(|v| v == Some(b"deny-me")) {
            return RowAction::Deny(Denial::new("rule no-deny-me: this result may not be shown"));
        }
        if self.secret_columns.is_empty() {
            return RowAction::Forward;
        }
        let masked = row.values().enumerate().map(|(i, v)| {
            if self.secret_columns.contains(&i) {
                v.map(|_| &b"***"[..])
            } else {
                v
            }
        });
        encode_data_row(out, masked);
        RowAction::Replace
    }
}

fn setup() -> Setup {
    Setup {
        hooks: Some(Arc::new(TestPolicy) as Arc<dyn HookFactory>),
        ..Setup::default()
    }
}

#[tokio::test]
async fn denied_simple_queries_answer_in_order_and_the_session_goes_on() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(&pg, setup()).await?;
    let client = p.connect().await?;

    let err = client
        .simple_query("SELECT * FROM forbidden_table")
        .await
        .err()
        .ok_or("not denied")?;
    let db = err.as_db_error().ok_or("not a server error")?;
    assert_eq!(db.code().code(), "42501");
    assert!(
        db.message().contains("rule no-forbidden"),
        "{}",
        db.message()
    );
    let err = client
        .prepare("SELECT x FROM forbidden_table WHERE x = $1")
        .await
        .err()
        .ok_or("not denied")?;
    assert_eq!(err.code().map(|c| c.code()), Some("42501"));
    assert_eq!(
        client
            .query_one("SELECT 41 + 1", &[])
            .await?
            .get::<_, i32>(0),
        42
    );

    // Three pipelined simple queries, the middle one denied: answers stay in order.
    let mut raw = Raw::session(p.addr).await?;
    let mut out = BytesMut::new();
    for sql in ["SELECT 1", "SELECT * FROM forbidden_table", "SELECT 2"] {
        fe::query(sql, &mut out)?;
    }
    raw.send(&out).await?;
    let first = raw.until_ready().await?;
    let second = raw.until_ready().await?;
    let third = raw.until_ready().await?;
    assert_eq!(
        (tags(&first), tags(&second), tags(&third)),
        ("T D C Z".into(), "E Z".into(), "T D C Z".into())
    );
    assert_eq!(error_codes(&second), ["42501"]);
    assert_eq!(third[1].1[6..], *b"2", "second result row");

    // Inside a transaction a denial fails the block, as any error there does: the status is
    // the server's 'E', and only ROLLBACK is accepted.
    out.clear();
    fe::query("BEGIN", &mut out)?;
    fe::query("SELECT * FROM forbidden_table", &mut out)?;
    fe::query("SELECT 1", &mut out)?;
    fe::query("ROLLBACK", &mut out)?;
    raw.send(&out).await?;
    raw.until_ready().await?;
    let denied = raw.until_ready().await?;
    assert_eq!(error_codes(&denied), ["42501"]);
    assert_eq!(denied.last().map(|(_, b)| b.clone()), Some(b"E".to_vec()));
    let after = raw.until_ready().await?;
    assert_eq!(error_codes(&after), ["25P02"], "in failed transaction");
    let rollback = raw.until_ready().await?;
    assert_eq!(rollback.last().map(|(_, b)| b.clone()), Some(b"I".to_vec()));
    Ok(())
}

#[tokio::test]
async fn denied_parse_in_a_pipeline_discards_until_sync() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(&pg, setup()).await?;
    let mut raw = Raw::session(p.addr).await?;
    let mut out = BytesMut::new();
    let no_params: [u32; 0] = [];
    let bind = |portal: &str, stmt: &str, out: &mut BytesMut| {
        fe::bind(
            portal,
            stmt,
            Some(0),
            Vec::<i32>::new(),
            |_: i32, _: &mut BytesMut| Ok(postgres_protocol::IsNull::Yes),
            Some(0),
            out,
        )
        .map_err(|_| "bind encoding")
    };
    fe::parse("", "SELECT 1", no_params, &mut out)?;
    bind("", "", &mut out)?;
    fe::execute("", 0, &mut out)?;
    fe::parse("s2", "SELECT * FROM forbidden_table", no_params, &mut out)?;
    bind("p2", "s2", &mut out)?;
    fe::describe(b'P', "p2", &mut out)?;
    fe::execute("p2", 0, &mut out)?;
    fe::parse("", "SELECT 2", no_params, &mut out)?;
    fe::sync(&mut out);
    raw.send(&out).await?;
    let msgs = raw.until_ready().await?;
    assert_eq!(
        tags(&msgs),
        "1 2 D C E Z",
        "the server's answers to a failed pipeline"
    );
    assert_eq!(error_codes(&msgs), ["42501"]);

    // A denial rolls the pipeline back, as the server's own error would: the INSERT before it
    // is not committed.
    out.clear();
    fe::query("CREATE TEMP TABLE written (x int)", &mut out)?;
    fe::parse("", "INSERT INTO written VALUES (1)", no_params, &mut out)?;
    bind("", "", &mut out)?;
    fe::execute("", 0, &mut out)?;
    fe::parse("s5", "SELECT * FROM forbidden_table", no_params, &mut out)?;
    fe::sync(&mut out);
    fe::query("SELECT count(*) FROM written", &mut out)?;
    raw.send(&out).await?;
    raw.until_ready().await?;
    let msgs = raw.until_ready().await?;
    assert_eq!(tags(&msgs), "1 2 C E Z");
    assert_eq!(error_codes(&msgs), ["42501"]);
    let count = raw.until_ready().await?;
    assert_eq!(count[1].1[6..], *b"0", "the INSERT was rolled back");

    // The statement was never prepared: a Bind to it is the server's own error.
    out.clear();
    bind("", "s2", &mut out)?;
    fe::sync(&mut out);
    raw.send(&out).await?;
    let msgs = raw.until_ready().await?;
    assert_eq!(error_codes(&msgs), ["26000"], "{}", tags(&msgs));

    // An earlier error in the same pipeline wins: the denial is not reported twice.
    out.clear();
    fe::parse("", "SELECT 1/0", no_params, &mut out)?;
    bind("", "", &mut out)?;
    fe::execute("", 0, &mut out)?;
    fe::parse("s3", "SELECT * FROM forbidden_table", no_params, &mut out)?;
    fe::sync(&mut out);
    raw.send(&out).await?;
    let msgs = raw.until_ready().await?;
    assert_eq!(error_codes(&msgs), ["22012"], "{}", tags(&msgs));

    // A client that flushes and waits gets the denial before it sends Sync.
    out.clear();
    fe::parse("s4", "SELECT * FROM forbidden_table", no_params, &mut out)?;
    fe::flush(&mut out);
    raw.send(&out).await?;
    let (tag, body) = raw.recv().await?.ok_or("closed")?;
    assert_eq!(
        (tag, error_field(&body, b'C')),
        (b'E', Some("42501".into()))
    );
    out.clear();
    fe::sync(&mut out);
    fe::query("SELECT 3", &mut out)?;
    raw.send(&out).await?;
    assert_eq!(tags(&raw.until_ready().await?), "Z");
    assert_eq!(tags(&raw.until_ready().await?), "T D C Z");
    Ok(())
}

#[tokio::test]
async fn row_hook_masks_values_and_can_stop_a_result() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(&pg, setup()).await?;
    let client = p.connect().await?;
    client
        .batch_execute(
            "CREATE TABLE users (id int, name text, secret text);
             INSERT INTO users VALUES (1, 'ada', 's3cr3t'), (2, 'bob', NULL), (3, 'eve', 'deny-me');",
        )
        .await?;
    let rows = client
        .query(
            "SELECT id, name, secret FROM users WHERE id < 3 ORDER BY id",
            &[],
        )
        .await?;
    let got: Vec<(i32, String, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "ada".into(), Some("***".into())),
            (2, "bob".into(), None)
        ]
    );
    let err = client
        .query("SELECT * FROM users ORDER BY id", &[])
        .await
        .err()
        .ok_or("not stopped")?;
    assert_eq!(err.code().map(|c| c.code()), Some("42501"));
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM users", &[])
            .await?
            .get::<_, i64>(0),
        3
    );
    Ok(())
}

/// Accepts only the token `letmein`, as end user `alice`; no token is the workload.
#[derive(Debug)]
struct TokenIdentity;

impl IdentityHook for TokenIdentity {
    fn authenticate<'a>(
        &'a self,
        request: AuthRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, Denial>> {
        assert!(
            !format!("{request:?}").contains("letmein"),
            "the token leaked into Debug"
        );
        Box::pin(async move {
            match request.token {
                None => Ok(Identity::workload("workload-sa")),
                Some("letmein") => Ok(Identity {
                    subject: "alice".into(),
                    groups: vec!["dba".into()],
                    end_user: true,
                }),
                Some(_) => Err(Denial::new("token rejected")),
            }
        })
    }
}

/// Denies everything for anyone but alice, naming the subject it saw.
#[derive(Debug)]
struct OnlyAlice;

struct SubjectCheck(String);

impl StatementHook for SubjectCheck {
    fn check(&mut self, _statement: Statement<'_>) -> Verdict {
        if self.0 == "alice" {
            Verdict::Allow
        } else {
            Verdict::Deny(Denial::new(format!("{} may not", self.0)))
        }
    }
}

impl HookFactory for OnlyAlice {
    fn open(&self, session: &SessionInfo) -> SessionHooks {
        SessionHooks {
            statements: Some(Box::new(SubjectCheck(session.identity.subject.clone()))),
            rows: None,
        }
    }
}

#[tokio::test]
async fn identity_hook_decides_who_connects_and_hooks_see_it() -> TestResult {
    let pg = start_pg().await?;
    let setup = Setup {
        identity: Some(Arc::new(TokenIdentity) as Arc<dyn IdentityHook>),
        hooks: Some(Arc::new(OnlyAlice) as Arc<dyn HookFactory>),
        ..Setup::default()
    };
    let p = proxy(&pg, setup).await?;
    let with_token = |token: &str| {
        p.conninfo()
            .replace("password=no-token", &format!("password={token}"))
    };

    let err = tokio_postgres::connect(&with_token("wrong"), tokio_postgres::NoTls)
        .await
        .err()
        .ok_or("wrong token accepted")?;
    let db = err.as_db_error().ok_or("not a server error")?;
    assert_eq!(db.code().code(), "28P01");
    assert!(db.message().contains("token rejected"), "{}", db.message());

    let (alice, conn) =
        tokio_postgres::connect(&with_token("letmein"), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    assert_eq!(alice.query_one("SELECT 1", &[]).await?.get::<_, i32>(0), 1);

    // An empty password is no token: the workload's own identity, which this policy denies.
    let (workload, conn) =
        tokio_postgres::connect(&with_token("''"), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let err = workload
        .query_one("SELECT 1", &[])
        .await
        .err()
        .ok_or("workload allowed")?;
    let db = err.as_db_error().ok_or("not a server error")?;
    assert_eq!(
        (db.code().code(), db.message()),
        ("42501", "workload-sa may not")
    );
    Ok(())
}
