//! Standalone policy enforcement: `DatabaseAccessPolicy` files decide real statements.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dbwarden_policy::ServiceAccount;
use dbwarden_sidecar::enforce::{EnforcingHooks, RELOAD_INTERVAL};
use dbwarden_testbed::{APP, Postgres};
use tokio::process::Command;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

use crate::common::{
    POLICY, Proxy, Setup, TestResult, pg_bin, proxy, refusals, run, start_pg, tables,
};

/// The same, plus a rule denying selects of `public.t`.
fn policy_denying_t() -> String {
    format!(
        "{POLICY}    - name: no-reading-t
      subjects: {{serviceAccounts: [api]}}
      action: deny
      operations: [select]
      tables: [public.t]
"
    )
}

/// Replaces `path` atomically (as a ConfigMap update does).
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

/// Tables `public.t` (two rows) and `audit.log`, the policy in a file, the sidecar enforcing it.
struct Bed {
    proxy: Proxy,
    hooks: EnforcingHooks,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup(pg: &Postgres) -> Result<Bed, Box<dyn std::error::Error + Send + Sync>> {
    tables(pg).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, POLICY)?;
    let hooks = EnforcingHooks::load(vec![file.clone()], ServiceAccount::new("shop", "api"), None)?;
    let proxy = proxy(
        pg,
        Setup {
            hooks: Some(Arc::new(hooks.clone())),
            ..Setup::default()
        },
    )
    .await?;
    Ok(Bed {
        proxy,
        hooks,
        file,
        _dir: dir,
    })
}

/// psql -c `sql` through the sidecar: (success, stdout, stderr).
async fn psql(
    p: &Proxy,
    sql: &str,
) -> Result<(bool, String, String), Box<dyn std::error::Error + Send + Sync>> {
    let mut cmd = Command::new(pg_bin("psql"));
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(p.conninfo())
        .arg("-c")
        .arg(sql);
    run(cmd, Duration::from_secs(30)).await
}

/// The rows of `sql` run directly against PostgreSQL (not through the sidecar).
async fn direct(
    pg: &Postgres,
    sql: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    Ok(pg.psql(&APP, sql).await?.ok(sql)?.trim().to_string())
}

#[tokio::test]
async fn policies_allow_what_rules_cover_and_refuse_the_rest() -> TestResult {
    let pg = start_pg().await?;
    let bed = setup(&pg).await?;
    let p = &bed.proxy;

    // (a) allowed: SELECT and a WHERE-qualified UPDATE.
    let (ok, out, err) = psql(p, "SELECT name FROM public.t ORDER BY id").await?;
    assert!(ok, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["ada", "bob"]);
    let (ok, out, err) = psql(p, "UPDATE public.t SET name = 'eve' WHERE id = 2").await?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "UPDATE 1");

    // (b) DROP: the drop guardrail, named with the policy; the table is still there.
    let (ok, _, err) = psql(p, "DROP TABLE public.t").await?;
    assert!(!ok);
    assert!(
        err.contains(
            "ERROR:  policy shop/app-access refuses the statement: guardrail guardrails.blockDrop"
        ),
        "{err}"
    );
    assert_eq!(direct(&pg, "SELECT count(*) FROM public.t").await?, "2");

    // (c) DELETE without WHERE.
    let (ok, _, err) = psql(p, "DELETE FROM public.t").await?;
    assert!(!ok);
    assert!(
        err.contains("guardrail guardrails.requireWhereForUpdateDelete"),
        "{err}"
    );
    assert!(err.contains("shop/app-access"), "{err}");
    assert_eq!(direct(&pg, "SELECT count(*) FROM public.t").await?, "2");

    // (d) a table no rule covers: default deny.
    let (ok, _, err) = psql(p, "SELECT * FROM audit.log").await?;
    assert!(!ok);
    assert!(
        err.contains("policy shop/app-access: no rule allows select on audit.log"),
        "{err}"
    );
    assert!(err.contains("(default deny)"), "{err}");

    // (e) one refused statement refuses the whole string; nothing ran.
    let (ok, _, err) = psql(
        p,
        "INSERT INTO public.t VALUES (3, 'zed'); DROP TABLE public.t",
    )
    .await?;
    assert!(!ok);
    assert!(err.contains("guardrails.blockDrop"), "{err}");
    assert!(
        err.contains("statement 2 of 2 in this query string was refused; none of them ran"),
        "{err}"
    );
    assert_eq!(direct(&pg, "SELECT count(*) FROM public.t").await?, "2");

    // (f) a refused Parse: 42501, and the connection goes on.
    let client = p.connect().await?;
    let err = client
        .prepare("DROP TABLE public.t")
        .await
        .err()
        .ok_or("DROP was prepared")?;
    let db = err.as_db_error().ok_or("not a server error")?;
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(
        db.message().contains("guardrail guardrails.blockDrop"),
        "{}",
        db.message()
    );
    let row = client
        .query_one("SELECT name FROM public.t WHERE id = $1", &[&1i32])
        .await?;
    assert_eq!(row.get::<_, String>(0), "ada");

    // (g) unparseable SQL.
    let err = client
        .simple_query("SELEC name FROM public.t")
        .await
        .err()
        .ok_or("ran")?;
    let db = err.as_db_error().ok_or("not a server error")?;
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(
        db.message().contains("guardrail guardrails.unparseable"),
        "{}",
        db.message()
    );

    // Startup parameters that could change the role are refused before the database is reached.
    let conninfo = format!("{} options='-c role=app'", p.conninfo());
    let err = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .err()
        .ok_or("options were accepted")?;
    let db = err.as_db_error().ok_or("not a server error")?;
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(
        db.message().contains("\"options\" is not allowed"),
        "{}",
        db.message()
    );

    // Unqualified names depend on search_path: `public.*` does not cover them.
    let err = client
        .simple_query("SELECT * FROM t")
        .await
        .err()
        .ok_or("ran")?;
    assert!(
        err.as_db_error()
            .ok_or("not a server error")?
            .message()
            .contains("(default deny)")
    );
    assert_eq!(direct(&pg, "SELECT count(*) FROM public.t").await?, "2");
    Ok(())
}

#[tokio::test]
async fn a_changed_policy_file_applies_to_open_sessions() -> TestResult {
    let pg = start_pg().await?;
    let Bed {
        proxy: p,
        hooks,
        file,
        _dir,
    } = setup(&pg).await?;
    let reloader = hooks.spawn_reloader(RELOAD_INTERVAL);
    let client = p.connect().await?;
    client.simple_query("SELECT * FROM public.t").await?;

    // A broken file keeps the last good policy.
    replace(
        &file,
        "apiVersion: dbwarden.io/v1alpha1\nkind: DatabaseAccessPolicy\nspec: [",
    )?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    client.simple_query("SELECT * FROM public.t").await?;

    replace(&file, &policy_denying_t())?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut refused = None;
    for _ in 0..20 {
        match client.simple_query("SELECT * FROM public.t").await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.ok_or("the new policy never applied")?;
    let db = err.as_db_error().ok_or("not a server error")?;
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(
        db.message()
            .contains("rule \"no-reading-t\" denies select on public.t"),
        "{}",
        db.message()
    );
    // Other tables still work on the same connection.
    client
        .simple_query("UPDATE public.t SET name = 'x' WHERE id = 1")
        .await?;
    reloader.abort();
    Ok(())
}

#[tokio::test]
async fn the_binary_refuses_to_start_with_an_invalid_policy() -> TestResult {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("broken-policy.yaml");
    std::fs::write(&bad, POLICY.replace("api-crud", "Not A Valid Name"))?;
    let config = dir.path().join("sidecar.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:
  - name: app
    listen: 127.0.0.1:0
    upstream:
      host: 127.0.0.1
      database: app
      tls: {{mode: disable}}
      credentials: {{username: app, password_env: PATH}}
policies: [{bad}]
identity: {{serviceAccount: shop/api}}
",
            bad = bad.display()
        ),
    )?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbwarden-sidecar"));
    cmd.arg("--config").arg(&config);
    let (ok, _, err) = run(cmd, Duration::from_secs(30)).await?;
    assert!(!ok, "the sidecar started with an invalid policy");
    assert!(err.contains("loading policies"), "{err}");
    assert!(
        err.contains(&format!("policy file {}", bad.display())),
        "{err}"
    );
    assert!(err.contains("spec.rules[0].name"), "{err}");
    Ok(())
}

/// A sidecar whose policy allows the service account everything, so only guardrails refuse.
async fn allowing_all(
    pg: &Postgres,
    dir: &Path,
    guardrails: &str,
) -> Result<Proxy, Box<dyn std::error::Error + Send + Sync>> {
    let policy = POLICY.replace(
        "operations: [select, insert, update, delete]\n      tables: ['public.*']",
        &format!("operations: [all]\n      tables: ['*']\n  guardrails: {guardrails}"),
    );
    assert!(policy.contains("[all]"), "the rule was rewritten");
    let file = dir.join(format!("policy-{}.yaml", guardrails.len()));
    std::fs::write(&file, policy)?;
    let hooks = EnforcingHooks::load(vec![file], ServiceAccount::new("shop", "api"), None)?;
    proxy(
        pg,
        Setup {
            hooks: Some(Arc::new(hooks)),
            ..Setup::default()
        },
    )
    .await
}

/// Every guardrail stops its statement before the database sees it, through the real proxy,
/// even for an identity every rule allows; the session goes on after each refusal.
#[tokio::test]
async fn guardrails_stop_statements_that_rules_allow() -> TestResult {
    let pg = start_pg().await?;
    tables(&pg).await?;
    let dir = tempfile::tempdir()?;
    let p = allowing_all(&pg, dir.path(), "{}").await?;
    let client = p.connect().await?;
    let marker = dir.path().join("program-ran");
    let copy_program = format!("COPY public.t TO PROGRAM 'touch {}'", marker.display());
    let copy_file = format!("COPY public.t TO '{}'", marker.display());
    let oversized = format!("SELECT 1 /* {} */", "x".repeat(1024 * 1024));
    let cases: Vec<(&str, &str)> = vec![
        ("TRUNCATE public.t", "guardrails.blockTruncate"),
        ("DROP TABLE public.t", "guardrails.blockDrop"),
        // sqlparser reads what follows COPY ... FROM STDIN as copy data; PostgreSQL runs it.
        (
            "COPY public.t FROM STDIN; DROP TABLE public.t",
            "guardrails.blockDrop",
        ),
        (
            "UPDATE public.t SET name = 'x'",
            "guardrails.requireWhereForUpdateDelete",
        ),
        (
            "EXPLAIN ANALYZE DELETE FROM public.t",
            "guardrails.requireWhereForUpdateDelete",
        ),
        (
            "WITH d AS (DELETE FROM public.t RETURNING id) SELECT * FROM d",
            "guardrails.requireWhereForUpdateDelete",
        ),
        (
            "SELECT pg_terminate_backend(pg_backend_pid())",
            "guardrails.blockedFunctions",
        ),
        (
            "SELECT pg_read_file('/etc/hostname')",
            "guardrails.blockedFunctions",
        ),
        (
            "SELECT lo_import('/etc/hostname')",
            "guardrails.blockedFunctions",
        ),
        (
            "SELECT set_config('role', 'postgres', false)",
            "guardrails.blockedFunctions",
        ),
        (&copy_program, "guardrails.blockCopyProgram"),
        (&copy_file, "guardrails.blockCopyProgram"),
        ("ALTER SYSTEM SET work_mem = '64MB'", "fixed:alter-system"),
        ("SET ROLE postgres", "fixed:set-role"),
        ("SET SESSION AUTHORIZATION postgres", "fixed:set-role"),
        ("RESET ROLE", "fixed:set-role"),
        (&oversized, "guardrails.unparseable"),
    ];
    let mut failures = refusals(&client, &cases).await;
    // Schema changes, with blockDdl.
    let ddl = allowing_all(&pg, dir.path(), "{blockDdl: true}").await?;
    failures.extend(
        refusals(
            &ddl.connect().await?,
            &[
                ("CREATE TABLE public.x (id int)", "guardrails.blockDdl"),
                (
                    "ALTER TABLE public.t ADD COLUMN c int",
                    "guardrails.blockDdl",
                ),
            ],
        )
        .await,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // None of them ran: the rows, the table list, the role and the file system are as before,
    // and the same session still works.
    assert_eq!(
        direct(
            &pg,
            "SELECT string_agg(name, ',' ORDER BY id) FROM public.t"
        )
        .await?,
        "ada,bob"
    );
    assert_eq!(
        direct(&pg, "SELECT to_regclass('public.x') IS NULL").await?,
        "t"
    );
    let column_c = "SELECT count(*) FROM pg_attribute \
                    WHERE attrelid = 'public.t'::regclass AND attname = 'c'";
    assert_eq!(direct(&pg, column_c).await?, "0");
    assert!(!marker.exists(), "COPY wrote {}", marker.display());
    let row = client.query_one("SELECT current_user::text", &[]).await?;
    assert_eq!(row.get::<_, String>(0), APP.name);
    Ok(())
}

/// SQL-level PREPARE and EXECUTE: each EXECUTE is decided as the statement its PREPARE stored;
/// a name is prepared once per session.
#[tokio::test]
async fn sql_execute_is_decided_as_the_statement_prepared() -> TestResult {
    let pg = start_pg().await?;
    tables(&pg).await?;
    let dir = tempfile::tempdir()?;
    let p = allowing_all(&pg, dir.path(), "{}").await?;
    let client = p.connect().await?;
    client
        .simple_query("PREPARE pick(int) AS SELECT name FROM public.t WHERE id = $1")
        .await?;
    let rows = client.simple_query("EXECUTE pick(1)").await?;
    assert!(
        rows.iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("ada"))),
        "{rows:?}"
    );
    client
        .simple_query("PREPARE rename(int) AS UPDATE public.t SET name = 'zed' WHERE id = $1; EXECUTE rename(2)")
        .await?;
    assert_eq!(
        direct(&pg, "SELECT name FROM public.t WHERE id = 2").await?,
        "zed"
    );
    let failures = refusals(
        &client,
        &[
            // Refused when prepared: what it would run is what is decided.
            (
                "PREPARE wipe AS DELETE FROM public.t",
                "guardrails.requireWhereForUpdateDelete",
            ),
            ("EXECUTE wipe", "fixed:unknown-prepared-statement"),
            ("EXECUTE never_prepared", "fixed:unknown-prepared-statement"),
            // A name is prepared once per session, DEALLOCATE or not.
            ("PREPARE PICK AS SELECT 1", "already prepared"),
        ],
    )
    .await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    client.simple_query("DEALLOCATE pick").await?;
    let failures = refusals(&client, &[("PREPARE pick AS SELECT 2", "already prepared")]).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(direct(&pg, "SELECT count(*) FROM public.t").await?, "2");
    Ok(())
}
