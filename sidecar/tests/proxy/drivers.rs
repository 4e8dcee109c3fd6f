//! tokio-postgres through the sidecar, and the upstream authentication methods.

use std::time::Duration;

use dbwarden_sidecar::config::TlsMode;
use dbwarden_testbed::{APP, APP_MD5, APP_PLAIN};
use futures::{SinkExt, StreamExt, TryStreamExt};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::common::{Setup, TestResult, proxy, start_pg};

/// A value's raw wire bytes, whatever its type: lets tests compare binary results exactly.
#[derive(Debug, PartialEq, Eq)]
struct RawValue(Vec<u8>);

impl<'a> FromSql<'a> for RawValue {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

#[tokio::test]
async fn every_upstream_auth_method_and_tls_mode() -> TestResult {
    let pg = start_pg().await?;
    for (user, mode) in [
        (APP, TlsMode::VerifyFull),
        (APP, TlsMode::Require),
        (APP, TlsMode::Disable),
        (APP_MD5, TlsMode::VerifyFull),
        (APP_MD5, TlsMode::Disable),
        (APP_PLAIN, TlsMode::Require),
    ] {
        let p = proxy(
            &pg,
            Setup {
                user,
                upstream_tls: mode,
                ..Setup::default()
            },
        )
        .await?;
        let client = p.connect().await?;
        let row = client
            .query_one("SELECT current_user::text, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())", &[])
            .await?;
        assert_eq!(row.get::<_, String>(0), user.name, "{mode:?}");
        assert_eq!(
            row.get::<_, bool>(1),
            mode != TlsMode::Disable,
            "{} {mode:?}",
            user.name
        );
    }
    // SCRAM over TLS uses channel binding: PostgreSQL logs the method per connection.
    let log = std::fs::read_to_string(pg.log_path())?;
    assert!(
        log.contains("method=scram-sha-256"),
        "no SCRAM login in the server log"
    );
    Ok(())
}

#[tokio::test]
async fn upstream_startup_errors_reach_the_client_verbatim() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(
        &pg,
        Setup {
            password: Some("wrong".into()),
            ..Setup::default()
        },
    )
    .await?;
    let err = p
        .connect()
        .await
        .err()
        .ok_or("connected with a wrong password")?;
    let db = err.as_db_error().ok_or("not a server error")?;
    assert_eq!(db.code().code(), "28P01");
    assert!(
        db.message()
            .contains("password authentication failed for user \"app\""),
        "{}",
        db.message()
    );

    let p = proxy(
        &pg,
        Setup {
            database: "no_such_db".into(),
            ..Setup::default()
        },
    )
    .await?;
    let err = p
        .connect()
        .await
        .err()
        .ok_or("connected to a missing database")?;
    assert_eq!(
        err.as_db_error().ok_or("not a server error")?.code().code(),
        "3D000"
    );
    Ok(())
}

#[tokio::test]
async fn prepared_statements_and_binary_types_match_a_direct_connection() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(&pg, Setup::default()).await?;
    let via = p.connect().await?;
    let direct_conninfo = format!(
        "host=127.0.0.1 port={} user=app password={} dbname=app",
        pg.port(),
        APP.password
    );
    let (direct, conn) = tokio_postgres::connect(&direct_conninfo, NoTls).await?;
    tokio::spawn(conn);

    let sql =
        "SELECT 12345678901234567890.123456789::numeric, '2024-02-29 12:34:56.789+02'::timestamptz,
                      ARRAY[1, NULL, 3]::int4[], '{\"a\": [1, 2]}'::json, '{\"b\": null}'::jsonb,
                      '\\xdeadbeef00'::bytea, ARRAY['x', 'y']::text[], $1::int8 + 1, $2::text";
    let (a, b) = (via.prepare(sql).await?, direct.prepare(sql).await?);
    assert_eq!(a.columns().len(), 9);
    for round in 0..3_i64 {
        let ra = via.query_one(&a, &[&round, &"héllo"]).await?;
        let rb = direct.query_one(&b, &[&round, &"héllo"]).await?;
        for i in 0..9 {
            assert_eq!(
                ra.get::<_, RawValue>(i),
                rb.get::<_, RawValue>(i),
                "column {i}"
            );
        }
        assert_eq!(ra.get::<_, i64>(7), round + 1);
    }
    let json: serde_json::Value = via
        .query_one("SELECT '{\"k\": [1, 2, 3]}'::jsonb", &[])
        .await?
        .get(0);
    assert_eq!(json["k"][2], 3);
    let bytes: Vec<u8> = via
        .query_one("SELECT $1::bytea", &[&vec![0u8, 255, 1]])
        .await?
        .get(0);
    assert_eq!(bytes, vec![0, 255, 1]);
    let arr: Vec<i32> = via
        .query_one("SELECT $1::int4[]", &[&vec![4, 5, 6]])
        .await?
        .get(0);
    assert_eq!(arr, vec![4, 5, 6]);

    // Many statements in flight at once: tokio-postgres pipelines concurrent queries.
    let stmt = via.prepare("SELECT $1::int4 * 2").await?;
    let futures = (0..200).map(|i| {
        let (via, stmt) = (&via, &stmt);
        async move {
            via.query_one(stmt, &[&i])
                .await
                .map(|r| r.get::<_, i32>(0) == i * 2)
        }
    });
    let results = futures::future::try_join_all(futures).await?;
    assert!(results.iter().all(|ok| *ok));
    Ok(())
}

#[tokio::test]
async fn transactions_commit_roll_back_and_fail() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(&pg, Setup::default()).await?;
    let mut client = p.connect().await?;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await?;
    let tx = client.transaction().await?;
    tx.execute("INSERT INTO t VALUES (1, 'a')", &[]).await?;
    tx.rollback().await?;
    let tx = client.transaction().await?;
    tx.execute("INSERT INTO t VALUES (2, 'b')", &[]).await?;
    tx.commit().await?;
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await?
        .get(0);
    assert_eq!(n, 1);
    let tx = client.transaction().await?;
    let dup = tx
        .execute("INSERT INTO t VALUES (2, 'dup')", &[])
        .await
        .err()
        .ok_or("duplicate accepted")?;
    assert_eq!(dup.code().map(|c| c.code()), Some("23505"));
    let aborted = tx
        .query_one("SELECT 1", &[])
        .await
        .err()
        .ok_or("aborted transaction went on")?;
    assert_eq!(aborted.code().map(|c| c.code()), Some("25P02"));
    tx.rollback().await?;
    assert_eq!(client.query_one("SELECT 7", &[]).await?.get::<_, i32>(0), 7);
    Ok(())
}

#[tokio::test]
async fn copy_in_and_out_and_large_results_stream() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(&pg, Setup::default()).await?;
    let client = p.connect().await?;
    client
        .batch_execute("CREATE TABLE c (id int, v text)")
        .await?;
    let sink = client.copy_in("COPY c FROM STDIN").await?;
    futures::pin_mut!(sink);
    for chunk in 0..100 {
        let lines: String = (0..1000)
            .map(|i| format!("{}\trow {}\n", chunk * 1000 + i, i))
            .collect();
        sink.send(bytes::Bytes::from(lines)).await?;
    }
    assert_eq!(sink.finish().await?, 100_000);
    let out = client
        .copy_out("COPY (SELECT * FROM c ORDER BY id) TO STDOUT")
        .await?;
    let chunks: Vec<bytes::Bytes> = out.try_collect().await?;
    let text: Vec<u8> = chunks.concat();
    assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 100_000);
    assert!(text.starts_with(b"0\trow 0\n"));

    // 200k rows of 1 KiB (about 200 MiB) and one 32 MiB value pass without being held whole.
    let rows = client
        .query_raw(
            "SELECT repeat('x', 1000) FROM generate_series(1, 200000)",
            std::iter::empty::<i32>(),
        )
        .await?;
    futures::pin_mut!(rows);
    let mut n = 0;
    while let Some(row) = rows.next().await {
        assert_eq!(row?.get::<_, &str>(0).len(), 1000);
        n += 1;
    }
    assert_eq!(n, 200_000);
    let big: String = client
        .query_one("SELECT repeat('y', 32 * 1024 * 1024)", &[])
        .await?
        .get(0);
    assert_eq!(big.len(), 32 * 1024 * 1024);
    Ok(())
}

#[tokio::test]
async fn cancel_reaches_the_right_backend() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(&pg, Setup::default()).await?;
    let client = p.connect().await?;
    let bystander = p.connect().await?;
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move { client.query_one("SELECT pg_sleep(30)", &[]).await });
    // Cancel once the database runs it: a cancel before that finds nothing to cancel.
    let begun = std::time::Instant::now();
    let running = "SELECT count(*) FROM pg_stat_activity \
                   WHERE query = 'SELECT pg_sleep(30)' AND wait_event = 'PgSleep'";
    while bystander.query_one(running, &[]).await?.get::<_, i64>(0) == 0 {
        assert!(begun.elapsed() < Duration::from_secs(10), "never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    token.cancel_query(NoTls).await?;
    let err = tokio::time::timeout(Duration::from_secs(5), sleeper)
        .await??
        .err()
        .ok_or("not cancelled")?;
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    // The other session is untouched.
    assert_eq!(
        bystander.query_one("SELECT 1", &[]).await?.get::<_, i32>(0),
        1
    );
    Ok(())
}

#[tokio::test]
async fn notices_notifications_and_parameter_status_pass_through() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(&pg, Setup::default()).await?;
    let (listener, mut connection) = tokio_postgres::connect(&p.conninfo(), NoTls).await?;
    let (tx, mut rx) = futures::channel::mpsc::unbounded();
    let stream = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    tokio::spawn(
        stream
            .map(|m| m.map_err(|e| e.to_string()))
            .forward(tx.sink_map_err(|e| e.to_string())),
    );

    listener
        .batch_execute("LISTEN dbwarden_channel; SET application_name = 'through-the-sidecar'")
        .await?;
    listener
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello notice'; END $$")
        .await?;
    let talker = p.connect().await?;
    talker
        .batch_execute("NOTIFY dbwarden_channel, 'hello listener'")
        .await?;
    let (mut notice, mut notification) = (false, false);
    while !(notice && notification) {
        let msg = tokio::time::timeout(Duration::from_secs(5), rx.next())
            .await?
            .ok_or("connection ended")?;
        match msg {
            AsyncMessage::Notice(n) => notice |= n.message() == "hello notice",
            AsyncMessage::Notification(n) => {
                notification |= n.channel() == "dbwarden_channel" && n.payload() == "hello listener"
            }
            _ => {}
        }
    }
    let seen: String = talker
        .query_one("SELECT application_name FROM pg_stat_activity WHERE application_name = 'through-the-sidecar'", &[])
        .await?
        .get(0);
    assert_eq!(seen, "through-the-sidecar");
    Ok(())
}

#[tokio::test]
async fn upstream_authentication_uses_channel_binding_over_tls() -> TestResult {
    use dbwarden_sidecar::backend::{AuthMethod, UpstreamTarget, tls::connector};
    use dbwarden_sidecar::config::{
        Credentials, CredentialsConfig, Secret, UpstreamConfig, UpstreamTlsConfig,
    };
    let pg = start_pg().await?;
    for (user, mode, expected) in [
        (APP, TlsMode::VerifyFull, AuthMethod::ScramSha256Plus),
        (APP, TlsMode::Require, AuthMethod::ScramSha256Plus),
        (APP, TlsMode::Disable, AuthMethod::ScramSha256),
        (APP_MD5, TlsMode::Require, AuthMethod::Md5),
        (APP_PLAIN, TlsMode::Disable, AuthMethod::Cleartext),
    ] {
        let config = UpstreamConfig {
            host: "127.0.0.1".into(),
            port: pg.port(),
            database: "app".into(),
            tls: UpstreamTlsConfig {
                mode,
                ca_file: Some(pg.ca_cert_path()),
                server_name: None,
            },
            credentials: CredentialsConfig {
                username: None,
                username_env: None,
                username_file: None,
                password_file: None,
                password_env: None,
            },
        };
        let target = UpstreamTarget {
            host: config.host.clone(),
            port: config.port,
            database: config.database.clone(),
            mode,
            tls: connector(&config)?,
            credentials: Credentials {
                username: user.name.into(),
                password: Secret::new(user.password),
            },
            connect_timeout: Duration::from_secs(10),
        };
        let upstream = target.connect(&[]).await?;
        assert_eq!(upstream.auth, expected, "{} {mode:?}", user.name);
        assert_eq!(upstream.status, b'I');
        assert_ne!(upstream.key.pid, 0);
    }
    Ok(())
}
