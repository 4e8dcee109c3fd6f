//! Dynamic masking and maxRows through the standalone sidecar, against a real PostgreSQL.

use std::path::PathBuf;
use std::time::Duration;

use dbwarden_policy::mask::{HashEncoding, HashKey};
use dbwarden_sidecar::enforce::catalog::CATALOG_TTL;
use dbwarden_testbed::{APP, Collector, Postgres};
use tokio::process::Command;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

use crate::audit::{audit_config, events, wait_for};
use crate::common::{Enforce, Proxy, Setup, TestResult, pg_bin, proxy, refusals, run, start_pg};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const KEY: &[u8] = b"a shared masking key";

/// Rules for `shop/api` and `shop/auditor`; masks on `public.users`; `auditor` exempt.
fn policy(guardrails: &str) -> String {
    format!(
        "apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata: {{name: app-access, namespace: shop}}
spec:
  database:
    host: db.shop.svc
    name: app
    environment: dev
    credentialsSecretRef: {{name: app-db}}
  workloadSelector: {{matchLabels: {{app: api}}}}
  rules:
    - name: api-crud
      subjects: {{serviceAccounts: [api, auditor]}}
      operations: [select, insert, update, delete]
      tables: ['*']
{guardrails}  masking:
    columns:
      - {{columns: [public.users.email], strategy: email}}
      - {{columns: [public.users.ssn], strategy: partial, partial: {{keepFirst: 0, keepLast: 4}}}}
      - {{columns: [public.users.card], strategy: hash}}
      - {{columns: [public.users.pin], strategy: 'null'}}
      - {{columns: [public.users.secret_note], strategy: redact}}
    detectors:
      - {{kind: email, strategy: redact}}
    exemptSubjects: {{serviceAccounts: [auditor]}}
    hashKeySecretRef: {{name: masking-key, key: key}}
"
    )
}

struct Bed {
    dir: tempfile::TempDir,
}

impl Bed {
    /// Writes `policy` and the key file; returns the sidecar setup for `service_account`.
    fn new(policy: &str) -> Result<Self, BoxError> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("policy.yaml"), policy)?;
        std::fs::create_dir(dir.path().join("masking-key"))?;
        std::fs::write(dir.path().join("masking-key/key"), KEY)?;
        Ok(Self { dir })
    }

    fn setup(&self, service_account: &str) -> Setup {
        Setup {
            enforce: Some(Enforce {
                policies: vec![self.dir.path().join("policy.yaml")],
                service_account: service_account.into(),
                secrets_dir: Some(self.dir.path().to_owned()),
            }),
            ..Setup::default()
        }
    }
}

async fn users(pg: &Postgres) -> TestResult {
    pg.psql(
        &APP,
        "CREATE TABLE public.users (id int, email text, ssn text, card text, pin text, notes text);
         INSERT INTO public.users VALUES
           (1, 'ada@example.com', '123-45-6789', '4111 1111 1111 1111', '1234', 'call ada@example.com'),
           (2, 'bob@corp.io', '234-56-7890', '5500 0000 0000 0004', '9876', 'vip');
         CREATE TABLE public.big AS SELECT g AS id FROM generate_series(1, 10) g;",
    )
    .await?
    .ok("create tables")?;
    Ok(())
}

/// psql -c `sql` through the sidecar: (success, stdout, stderr).
async fn psql(p: &Proxy, sql: &str) -> Result<(bool, String, String), BoxError> {
    let mut cmd = Command::new(pg_bin("psql"));
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(p.conninfo())
        .arg("-c")
        .arg(sql);
    run(cmd, Duration::from_secs(30)).await
}

fn hash(value: &str) -> String {
    let mut out = Vec::new();
    HashKey::new(KEY, HashEncoding::Hex).write(value.as_bytes(), &mut out);
    String::from_utf8(out).unwrap()
}

fn simple_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn values_are_masked_per_strategy_in_text_and_binary() -> TestResult {
    let pg = start_pg().await?;
    users(&pg).await?;
    let bed = Bed::new(&policy(""))?;
    let p = proxy(&pg, bed.setup("shop/api")).await?;
    let card = hash("4111 1111 1111 1111");

    // psql (simple protocol, text format).
    let (ok, out, err) = psql(
        &p,
        "SELECT id, email, ssn, card, pin, notes FROM users ORDER BY id",
    )
    .await?;
    assert!(ok, "{err}");
    let first = out.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!("1|a***@example.com|*******6789|{card}||call ****")
    );
    assert!(
        !out.contains("ada@example.com") && !out.contains("123-45"),
        "{out}"
    );

    // tokio-postgres: extended protocol, binary results.
    let client = p.connect().await?;
    let rows = client
        .query(
            "SELECT email, ssn, card, pin, notes FROM users WHERE id = $1",
            &[&1i32],
        )
        .await?;
    assert_eq!(rows[0].get::<_, String>(0), "a***@example.com");
    assert_eq!(rows[0].get::<_, String>(1), "*******6789");
    assert_eq!(rows[0].get::<_, String>(2), card);
    assert_eq!(rows[0].get::<_, Option<String>>(3), None);
    assert_eq!(rows[0].get::<_, String>(4), "call ****");

    // libpq (psycopg 3) describes each portal right before executing it, and the sidecar lets
    // that Describe stand for the Execute: text and binary, unprepared and prepared (twice).
    let script = r#"
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    for binary in (False, True):
        for prepare in (False, True, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute("SELECT email, ssn FROM users WHERE id = %s", (1,), prepare=prepare)
                print(cur.fetchone())
"#;
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).arg(p.conninfo());
    let (ok, stdout, stderr) = run(cmd, Duration::from_secs(60)).await?;
    assert!(ok, "psycopg failed:\n{stdout}\n{stderr}");
    let masked_row = "('a***@example.com', '*******6789')";
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [masked_row; 6],
        "{stdout}"
    );

    // Two prepared statements interleaved: each result is masked by its own columns, not by
    // the last RowDescription the session happened to see.
    let masked = client
        .prepare("SELECT email, id::text FROM users ORDER BY id")
        .await?;
    let plain = client
        .prepare("SELECT id::text, 'x'::text FROM big")
        .await?;
    let _ = client.query(&plain, &[]).await?;
    let rows = client.query(&masked, &[]).await?;
    assert_eq!(rows[1].get::<_, String>(0), "b***@corp.io");

    // Simple protocol through tokio-postgres (text format).
    let messages = client
        .simple_query("SELECT email, card FROM users WHERE id = 2")
        .await?;
    assert_eq!(
        simple_rows(&messages),
        [[
            Some("b***@corp.io".to_owned()),
            Some(hash("5500 0000 0000 0004"))
        ]]
    );

    // A computed column holding an email is caught by the detector.
    let (ok, out, err) = psql(&p, "SELECT 'write to ' || 'x.y@corp.io' AS contact").await?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "write to ****");
    Ok(())
}

#[tokio::test]
async fn expressions_over_masked_columns_are_refused() -> TestResult {
    let pg = start_pg().await?;
    users(&pg).await?;
    let bed = Bed::new(&policy(""))?;
    let p = proxy(&pg, bed.setup("shop/api")).await?;
    let client = p.connect().await?;
    let failures = refusals(
        &client,
        &[
            "SELECT upper(email) FROM users",
            "SELECT email || '' FROM users",
            "SELECT id FROM users WHERE email LIKE 'a%'",
            "SELECT id FROM users ORDER BY ssn",
        ]
        .map(|sql| (sql, "a masked column is used")),
    )
    .await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Expressions over columns that are not masked still run.
    let rows = client
        .query("SELECT upper(notes) FROM users WHERE id = 2", &[])
        .await?;
    assert_eq!(rows[0].get::<_, String>(0), "VIP");
    Ok(())
}

/// A mask that cannot be written into a value of the column's type (`redact` on an integer or a
/// date) refuses the result, or sends NULL with `onUnmaskable: null`, in text and binary format.
#[tokio::test]
async fn values_of_other_types_are_refused_or_nulled_never_sent() -> TestResult {
    let pg = start_pg().await?;
    pg.psql(
        &APP,
        "CREATE TABLE public.accounts (id int, balance int, opened date);
         INSERT INTO public.accounts VALUES (1, 1200, '2024-01-31');",
    )
    .await?
    .ok("create accounts")?;
    for (on_unmaskable, expect_null) in [("deny", false), ("'null'", true)] {
        let bed = Bed::new(&policy("").replace(
            "    detectors:",
            &format!(
                "      - {{columns: [public.accounts.balance, public.accounts.opened], strategy: redact}}\n    \
                 onUnmaskable: {on_unmaskable}\n    detectors:"
            ),
        ))?;
        let p = proxy(&pg, bed.setup("shop/api")).await?;
        let client = p.connect().await?;
        // Binary (extended protocol, tokio-postgres asks for binary results)...
        let binary = client
            .query("SELECT id, balance, opened FROM accounts", &[])
            .await;
        // ...and text (simple query).
        let text = client
            .simple_query("SELECT id, balance, opened FROM accounts")
            .await;
        if expect_null {
            let rows = binary?;
            assert_eq!(rows[0].get::<_, i32>(0), 1);
            assert_eq!(rows[0].get::<_, Option<i32>>(1), None);
            assert_eq!(rows[0].len(), 3);
            assert_eq!(simple_rows(&text?), [vec![Some("1".into()), None, None]]);
        } else {
            for (format, err) in [("binary", binary.err()), ("text", text.err())] {
                let err = err.ok_or(format!("{format}: the value was sent"))?;
                assert_eq!(
                    err.code(),
                    Some(&SqlState::INSUFFICIENT_PRIVILEGE),
                    "{format}: {err:?}"
                );
            }
        }
    }
    Ok(())
}

/// `observeOnly` lets what rules and guardrails refuse run, but never a statement that would
/// carry a masked value past masking.
#[tokio::test]
async fn observe_only_never_unmasks() -> TestResult {
    let pg = start_pg().await?;
    users(&pg).await?;
    let bed = Bed::new(&policy("  guardrails: {observeOnly: true}\n"))?;
    let collector = Collector::start().await?;
    let setup = Setup {
        audit: Some(audit_config(
            &collector,
            &bed.dir.path().join("spool"),
            "observe",
        )),
        ..bed.setup("shop/api")
    };
    let p = proxy(&pg, setup).await?;
    let client = p.connect().await?;
    // Refused by guardrails.blockDrop and by every rule, yet observed only: it runs.
    client.simple_query("DROP TABLE big").await?;
    let gone = pg
        .psql(&APP, "SELECT to_regclass('public.big') IS NULL")
        .await?
        .ok("look for big")?;
    assert_eq!(gone.trim(), "t", "the observed DROP ran");
    // A masked column in an expression, and a statement that cannot be analysed for masked
    // columns (sqlparser does not know FOR NO KEY UPDATE), are refused all the same.
    let failures = refusals(
        &client,
        &[
            ("SELECT upper(email) FROM users", "a masked column is used"),
            (
                "SELECT upper(email) FROM users FOR NO KEY UPDATE",
                "columns are masked for this identity",
            ),
        ],
    )
    .await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Plain reads are still masked.
    let rows = client
        .query("SELECT email FROM users WHERE id = 1", &[])
        .await?;
    assert_eq!(rows[0].get::<_, &str>(0), "a***@example.com");

    // The audit says what observing let through, and what it still refused.
    let decision_of = |evs: &[serde_json::Value], needle: &str| {
        evs.iter()
            .find(|e| {
                e["kind"] == "statement"
                    && e["statement"].as_str().is_some_and(|s| s.contains(needle))
            })
            .map(|e| (e["decision"].clone(), e["rule"].clone()))
    };
    wait_for(&collector, Duration::from_secs(20), |evs| {
        decision_of(evs, "upper(email)").is_some() && decision_of(evs, "DROP TABLE").is_some()
    })
    .await;
    let evs = events(&collector.lines());
    let (decision, rule) = decision_of(&evs, "DROP TABLE").ok_or("no DROP event")?;
    assert_eq!(
        (decision.as_str(), rule.as_str()),
        (Some("would_deny"), Some("guardrails.blockDrop"))
    );
    let (decision, rule) = decision_of(&evs, "upper(email)").ok_or("no upper(email) event")?;
    assert_eq!(
        (decision.as_str(), rule.as_str()),
        (Some("denied"), Some("masking.columns"))
    );
    Ok(())
}

#[tokio::test]
async fn exempt_subjects_see_clear_values_and_hashes_agree_across_sidecars() -> TestResult {
    let pg = start_pg().await?;
    users(&pg).await?;
    let bed = Bed::new(&policy(""))?;
    let auditor = proxy(&pg, bed.setup("shop/auditor")).await?;
    let (ok, out, err) = psql(&auditor, "SELECT email, ssn FROM users WHERE id = 1").await?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "ada@example.com|123-45-6789");

    let first = proxy(&pg, bed.setup("shop/api")).await?;
    let second = proxy(&pg, bed.setup("shop/api")).await?;
    let a = psql(&first, "SELECT card FROM users ORDER BY id").await?;
    let b = psql(&second, "SELECT card FROM users ORDER BY id").await?;
    assert!(a.0 && b.0, "{} {}", a.2, b.2);
    assert_eq!(a.1, b.1);
    assert_eq!(a.1.lines().count(), 2);
    assert!(a.1.lines().all(|l| l.len() == 64), "{}", a.1);
    Ok(())
}

#[tokio::test]
async fn a_renamed_column_is_masked_under_its_new_name() -> TestResult {
    let pg = start_pg().await?;
    users(&pg).await?;
    let bed = Bed::new(&policy(""))?;
    let p = proxy(&pg, bed.setup("shop/api")).await?;
    let (ok, out, err) = psql(&p, "SELECT notes FROM users WHERE id = 2").await?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "vip");

    pg.psql_superuser("\\c app\nALTER TABLE public.users RENAME COLUMN notes TO secret_note\n")
        .await?;
    // Another session's DDL is seen once the cached catalog entry expires.
    tokio::time::sleep(CATALOG_TTL + Duration::from_millis(200)).await;
    let (ok, out, err) = psql(&p, "SELECT secret_note FROM users WHERE id = 2").await?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "****");
    Ok(())
}

#[tokio::test]
async fn a_missing_hash_key_stops_the_policy_from_loading() -> TestResult {
    let pg = start_pg().await?;
    let bed = Bed::new(&policy(""))?;
    std::fs::remove_file(bed.dir.path().join("masking-key/key"))?;
    let err = proxy(&pg, bed.setup("shop/api")).await.unwrap_err();
    let key_file: PathBuf = bed.dir.path().join("masking-key/key");
    assert!(
        err.to_string().contains(&key_file.display().to_string()),
        "{err}"
    );
    std::fs::write(&key_file, b"")?;
    let err = proxy(&pg, bed.setup("shop/api")).await.unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");
    Ok(())
}

fn max_rows(on: &str) -> String {
    policy(&format!("  guardrails: {{maxRows: 3, onMaxRows: {on}}}\n"))
}

#[tokio::test]
async fn max_rows_errors_or_truncates() -> TestResult {
    let pg = start_pg().await?;
    users(&pg).await?;
    let error = Bed::new(&max_rows("error"))?;
    let p = proxy(&pg, error.setup("shop/api")).await?;
    let (ok, _, err) = psql(&p, "SELECT id FROM big").await?;
    assert!(!ok);
    assert!(
        err.contains("policy shop/app-access")
            && err.contains("guardrails.maxRows: more than 3 rows"),
        "{err}"
    );
    let (ok, out, err) = psql(&p, "SELECT id FROM big WHERE id <= 3 ORDER BY id").await?;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3);

    let truncate = Bed::new(&max_rows("truncate"))?;
    let p = proxy(&pg, truncate.setup("shop/api")).await?;
    let (ok, out, err) = psql(&p, "SELECT id FROM big ORDER BY id").await?;
    assert!(ok, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["1", "2", "3"]);
    assert!(err.contains("truncated the result at 3 rows"), "{err}");
    let client = p.connect().await?;
    let rows = client.query("SELECT id FROM big", &[]).await?;
    assert_eq!(rows.len(), 3);
    // The session goes on.
    let rows = client.query("SELECT email FROM users", &[]).await?;
    assert_eq!(rows.len(), 2);
    Ok(())
}

#[tokio::test]
async fn the_client_sees_only_its_own_messages_under_masking() -> TestResult {
    let pg = start_pg().await?;
    users(&pg).await?;
    let bed = Bed::new(&policy(""))?;
    let p = proxy(&pg, bed.setup("shop/api")).await?;
    crate::extended::portals_scenario(&p).await
}

#[tokio::test]
async fn max_rows_counts_a_portal_fetched_in_chunks() -> TestResult {
    use bytes::BytesMut;
    use postgres_protocol::message::frontend as fe;

    use crate::common::{Raw, tags};

    let pg = start_pg().await?;
    users(&pg).await?;
    let bed = Bed::new(&max_rows("error"))?;
    let p = proxy(&pg, bed.setup("shop/api")).await?;
    let mut raw = Raw::session(p.addr).await?;
    let mut out = BytesMut::new();
    fe::query("BEGIN", &mut out)?;
    fe::parse("s", "SELECT id FROM big ORDER BY id", [], &mut out)?;
    fe::bind(
        "c",
        "s",
        Some(0),
        Vec::<&str>::new(),
        |_, _| Ok(postgres_protocol::IsNull::No),
        Some(0),
        &mut out,
    )
    .map_err(|_| "bind")?;
    fe::execute("c", 2, &mut out)?;
    fe::sync(&mut out);
    raw.send(&out).await?;
    assert_eq!(tags(&raw.until_ready().await?), "C Z");
    assert_eq!(tags(&raw.until_ready().await?), "1 2 D D s Z");
    // Another result in between does not reset the portal's count.
    out.clear();
    fe::query("SELECT 1", &mut out)?;
    fe::execute("c", 2, &mut out)?;
    fe::sync(&mut out);
    raw.send(&out).await?;
    assert_eq!(tags(&raw.until_ready().await?), "T D C Z");
    let msgs = raw.until_ready().await?;
    assert_eq!(tags(&msgs), "D E Z");
    assert!(
        String::from_utf8_lossy(&msgs[1].1).contains("more than 3 rows"),
        "{msgs:?}"
    );
    Ok(())
}

#[tokio::test]
async fn results_are_refused_while_the_catalog_is_unavailable() -> TestResult {
    let pg = start_pg().await?;
    users(&pg).await?;
    let bed = Bed::new(&policy(""))?;
    let p = proxy(&pg, bed.setup("shop/api")).await?;
    let client = p.connect().await?;
    // The session is open; the catalog connection (opened on first need) cannot be.
    pg.psql_superuser("ALTER ROLE app CONNECTION LIMIT 1")
        .await?;
    let err = client
        .query("SELECT email FROM users", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let message = err.as_db_error().map(|e| e.message()).unwrap_or_default();
    assert!(message.contains("catalog is unavailable"), "{message}");
    // The session goes on, and once the catalog is reachable again values come back masked.
    pg.psql_superuser("ALTER ROLE app CONNECTION LIMIT -1")
        .await?;
    let rows = client
        .query("SELECT email FROM users ORDER BY id", &[])
        .await?;
    assert_eq!(rows[0].get::<_, String>(0), "a***@example.com");
    Ok(())
}

#[tokio::test]
async fn a_rename_through_the_sidecar_is_seen_at_once() -> TestResult {
    let pg = start_pg().await?;
    users(&pg).await?;
    let text = policy("").replace(
        "operations: [select, insert, update, delete]",
        "operations: [select, insert, update, delete, alter]",
    );
    let bed = Bed::new(&text)?;
    let p = proxy(&pg, bed.setup("shop/api")).await?;
    let (ok, out, err) = psql(&p, "SELECT notes FROM users WHERE id = 2").await?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "vip");
    // Another session of the same sidecar renames; no waiting for the cache to expire.
    let (ok, _, err) = psql(
        &p,
        "ALTER TABLE public.users RENAME COLUMN notes TO secret_note",
    )
    .await?;
    assert!(ok, "{err}");
    let (ok, out, err) = psql(&p, "SELECT secret_note FROM users WHERE id = 2").await?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "****");
    Ok(())
}
