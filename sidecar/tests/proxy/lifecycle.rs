//! Health endpoints, graceful shutdown, idle timeout, client authentication modes.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use dbwarden_sidecar::config::{ClientAuth, LimitsConfig};
use dbwarden_testbed::{Postgres, http_status};
use postgres_protocol::message::frontend as fe;
use tokio::io::AsyncReadExt;

use crate::common::{Raw, Setup, TestResult, error_field, proxy, start_pg, tags};

#[tokio::test]
async fn graceful_shutdown_lets_statements_finish_and_health_reports_draining() -> TestResult {
    let pg = start_pg().await?;
    let limits = LimitsConfig {
        shutdown_grace_secs: 10,
        ..LimitsConfig::default()
    };
    let mut p = proxy(
        &pg,
        Setup {
            health: true,
            limits,
            ..Setup::default()
        },
    )
    .await?;
    let handle = p.handle.take().ok_or("no handle")?;
    let health = handle.health_addr().ok_or("no health endpoint")?.port();
    assert_eq!(http_status(health, "/healthz").await?, 200);
    assert_eq!(http_status(health, "/readyz").await?, 200);
    assert_eq!(http_status(health, "/nope").await?, 404);

    let busy = p.connect().await?;
    let idle = p.connect().await?;
    let running = tokio::spawn(async move {
        busy.query_one("SELECT pg_sleep(2)::text, 'done'", &[])
            .await
    });
    // Shut down once the statement runs in the database (the idle session is idle again after).
    let begun = Instant::now();
    let in_flight = "SELECT count(*) FROM pg_stat_activity \
                     WHERE query LIKE 'SELECT pg_sleep(2)%' AND wait_event = 'PgSleep'";
    while idle.query_one(in_flight, &[]).await?.get::<_, i64>(0) == 0 {
        assert!(begun.elapsed() < Duration::from_secs(10), "never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let shutdown = tokio::spawn(handle.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        http_status(health, "/readyz").await?,
        503,
        "readyz while draining"
    );
    assert!(
        tokio::net::TcpStream::connect(p.addr).await.is_err(),
        "still accepting during shutdown"
    );
    let err = idle
        .query_one("SELECT 1", &[])
        .await
        .err()
        .ok_or("idle session survived shutdown")?;
    assert!(
        err.is_closed() || err.code().map(|c| c.code()) == Some("57P01"),
        "{err}"
    );
    let row = running.await??;
    assert_eq!(
        row.get::<_, &str>(1),
        "done",
        "statement in flight must finish"
    );
    tokio::time::timeout(Duration::from_secs(5), shutdown).await??;
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test]
async fn idle_sessions_time_out_and_trust_mode_skips_the_password() -> TestResult {
    let pg = start_pg().await?;
    let limits = LimitsConfig {
        idle_timeout_secs: 1,
        ..LimitsConfig::default()
    };
    let p = proxy(
        &pg,
        Setup {
            limits,
            ..Setup::default()
        },
    )
    .await?;
    let mut raw = Raw::session(p.addr).await?;
    let (tag, body) = tokio::time::timeout(Duration::from_secs(3), raw.recv())
        .await??
        .ok_or("closed silently")?;
    assert_eq!(
        (tag, error_field(&body, b'C')),
        (b'E', Some("57P05".into()))
    );
    assert!(raw.recv().await?.is_none());

    // A long statement is not idle time.
    let client = p.connect().await?;
    client.query_one("SELECT pg_sleep(1.5)", &[]).await?;

    // After an extended-protocol COPY (whose pipelined Sync the server ignores) the session
    // still counts as idle, so the timeout still fires.
    client.batch_execute("CREATE TEMP TABLE t (x int)").await?;
    let sink = client.copy_in("COPY t FROM STDIN").await?;
    futures::pin_mut!(sink);
    futures::SinkExt::send(&mut sink, bytes::Bytes::from_static(b"1\n2\n")).await?;
    assert_eq!(sink.finish().await?, 2);
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM t", &[])
            .await?
            .get::<_, i64>(0),
        2
    );
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let err = client
        .query_one("SELECT 1", &[])
        .await
        .err()
        .ok_or("session outlived the idle timeout")?;
    assert!(
        err.is_closed() || err.code().map(|c| c.code()) == Some("57P05"),
        "{err}"
    );

    let p = proxy(
        &pg,
        Setup {
            client_auth: ClientAuth::Trust,
            ..Setup::default()
        },
    )
    .await?;
    let mut raw = Raw::connect(p.addr).await?;
    // GSSAPI encryption is refused, and so is TLS when no certificate is configured; the
    // client then goes on in the clear.
    for code in [80_877_104_i32, 80_877_103] {
        let mut request = 8_i32.to_be_bytes().to_vec();
        request.extend_from_slice(&code.to_be_bytes());
        raw.send(&request).await?;
        let mut answer = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), raw.stream.read_exact(&mut answer)).await??;
        assert_eq!(answer, *b"N", "request {code}");
    }
    let mut out = BytesMut::new();
    fe::startup_message([("user", "anyone"), ("database", "ignored")], &mut out)?;
    raw.send(&out).await?;
    let msgs = raw.until_ready().await?;
    assert_eq!(
        msgs.first().map(|(t, b)| (*t, b.clone())),
        Some((b'R', vec![0, 0, 0, 0])),
        "{}",
        tags(&msgs)
    );
    Ok(())
}

/// A result a slow client is still reading when shutdown comes is written to the end before
/// the session is closed. (The session used to end as soon as the database had answered, which
/// could cut a last write to the client off mid-message; socket buffers usually absorb that
/// write, so this checks the guarantee rather than reproducing the race.)
#[tokio::test]
async fn shutdown_lets_a_slow_client_read_its_whole_result() -> TestResult {
    let pg = start_pg().await?;
    // With an idle timeout the client side waits to hear that every answer was written;
    // without one it waits for that only while draining.
    for idle_timeout_secs in [60, 0] {
        shutdown_during_a_slow_read(&pg, idle_timeout_secs).await?;
    }
    Ok(())
}

async fn shutdown_during_a_slow_read(pg: &Postgres, idle_timeout_secs: u64) -> TestResult {
    let limits = LimitsConfig {
        shutdown_grace_secs: 30,
        idle_timeout_secs,
        ..LimitsConfig::default()
    };
    let mut p = proxy(
        pg,
        Setup {
            limits,
            ..Setup::default()
        },
    )
    .await?;
    let handle = p.handle.take().ok_or("no handle")?;
    let mut raw = Raw::session(p.addr).await?;
    let mut out = BytesMut::new();
    fe::query(
        "SELECT repeat('x', 1000) FROM generate_series(1, 5000)",
        &mut out,
    )?;
    raw.send(&out).await?;
    // Not reading yet: the result waits in the socket buffers while shutdown begins.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shutdown = tokio::spawn(handle.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut rows, mut after) = (0, Vec::new());
    while let Some((tag, body)) = raw.recv().await? {
        match tag {
            b'D' => {
                rows += 1;
                assert_eq!(body.len(), 2 + 4 + 1000, "row {rows} arrived whole");
                if rows % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            b'T' => {}
            _ => after.push((tag, error_field(&body, b'C'))),
        }
    }
    assert_eq!(rows, 5000);
    assert_eq!(
        after,
        [(b'C', None), (b'Z', None), (b'E', Some("57P01".to_owned()))],
        "the result's end, then the shutdown's FATAL"
    );
    tokio::time::timeout(Duration::from_secs(10), shutdown).await??;
    Ok(())
}
