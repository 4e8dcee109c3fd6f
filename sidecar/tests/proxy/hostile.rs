//! Malformed and hostile input: each gets a clean error or close; the sidecar keeps serving.

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use dbwarden_sidecar::config::LimitsConfig;
use postgres_protocol::message::frontend as fe;

use crate::common::{Raw, Setup, TestResult, error_codes, error_field, proxy, start_pg};

/// What a case must end with.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// An ErrorResponse with this SQLSTATE, then the connection closes.
    Fatal(&'static str),
    /// The connection closes without a word.
    Close,
    /// An ErrorResponse with this SQLSTATE, and the session goes on (answers SELECT 1).
    Recoverable(&'static str),
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut out = BytesMut::new();
    fe::startup_message(params.iter().copied(), &mut out).unwrap_or_default();
    out.to_vec()
}

fn raw_packet(version: i32, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i32(8 + body.len() as i32);
    out.put_i32(version);
    out.put_slice(body);
    out.to_vec()
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Runs one case on a fresh connection; `session` cases start from an authenticated session.
async fn case(
    addr: std::net::SocketAddr,
    name: &str,
    session: bool,
    input: &[u8],
    expect: Expect,
) -> TestResult {
    let mut raw = if session {
        Raw::session(addr).await?
    } else {
        Raw::connect(addr).await?
    };
    raw.send(input).await?;
    match expect {
        Expect::Fatal(code) => {
            let (tag, body) = raw
                .recv()
                .await?
                .ok_or_else(|| format!("{name}: closed without an error"))?;
            assert_eq!(tag, b'E', "{name}: expected ErrorResponse");
            assert_eq!(
                error_field(&body, b'C').as_deref(),
                Some(code),
                "{name}: {:?}",
                error_field(&body, b'M')
            );
            assert_eq!(error_field(&body, b'S').as_deref(), Some("FATAL"), "{name}");
            assert!(
                raw.recv().await?.is_none(),
                "{name}: still open after FATAL"
            );
        }
        Expect::Close => assert!(raw.recv().await?.is_none(), "{name}: expected a close"),
        Expect::Recoverable(code) => {
            let msgs = raw.until_ready().await?;
            assert_eq!(error_codes(&msgs), [code], "{name}");
            let mut out = BytesMut::new();
            fe::query("SELECT 1", &mut out)?;
            raw.send(&out).await?;
            assert_eq!(raw.until_ready().await?.len(), 4, "{name}: session broken");
        }
    }
    Ok(())
}

#[tokio::test]
async fn malformed_input_gets_clean_errors_while_others_are_served() -> TestResult {
    let pg = start_pg().await?;
    let limits = LimitsConfig {
        max_message_bytes: 1024 * 1024,
        startup_timeout_secs: 2,
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
    let bystander = p.connect().await?;
    let addr = p.addr;

    let huge_len = |tag: u8| {
        let mut m = vec![tag];
        m.extend_from_slice(&i32::MAX.to_be_bytes());
        m
    };
    let mut ssl_then_stuffing = raw_packet(80_877_103, b"");
    ssl_then_stuffing.extend_from_slice(&startup(&[("user", "app")]));
    let mut after_terminate = message(b'X', b"");
    after_terminate.extend_from_slice(&message(b'Q', b"SELECT 1\0"));
    let mut bind_unknown = BytesMut::new();
    fe::bind(
        "",
        "never_prepared",
        Some(0),
        Vec::<i32>::new(),
        |_: i32, _: &mut BytesMut| Ok(postgres_protocol::IsNull::Yes),
        Some(0),
        &mut bind_unknown,
    )
    .map_err(|_| "bind")?;
    fe::sync(&mut bind_unknown);

    let cases: Vec<(&str, bool, Vec<u8>, Expect)> = vec![
        (
            "startup length below minimum",
            false,
            vec![0, 0, 0, 4, 0, 3, 0, 0],
            Expect::Fatal("08P01"),
        ),
        (
            "startup length above limit",
            false,
            vec![0, 0x10, 0, 0, 0, 3, 0, 0],
            Expect::Fatal("08P01"),
        ),
        (
            "negative startup length",
            false,
            vec![0xff, 0xff, 0xff, 0xf0, 0, 3, 0, 0],
            Expect::Fatal("08P01"),
        ),
        (
            "protocol 2.0",
            false,
            raw_packet(0x0002_0000, b"user\0app\0\0"),
            Expect::Fatal("08P01"),
        ),
        (
            "protocol 4.0",
            false,
            raw_packet(0x0004_0000, b"user\0app\0\0"),
            Expect::Fatal("08P01"),
        ),
        (
            "startup without user",
            false,
            startup(&[("database", "app")]),
            Expect::Fatal("28000"),
        ),
        (
            "parameter without value",
            false,
            raw_packet(0x0003_0000, b"user\0"),
            Expect::Fatal("08P01"),
        ),
        (
            "replication connection",
            false,
            startup(&[("user", "app"), ("replication", "database")]),
            Expect::Fatal("28000"),
        ),
        (
            "bytes stuffed behind SSLRequest",
            false,
            ssl_then_stuffing,
            Expect::Fatal("08P01"),
        ),
        (
            "an HTTP request",
            false,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Expect::Fatal("08P01"),
        ),
        (
            "cancel with an unknown key",
            false,
            raw_packet(80_877_102, &[0, 0, 0, 1, 0, 0, 0, 2]),
            Expect::Close,
        ),
        (
            "truncated startup, then silence",
            false,
            startup(&[("user", "app")])[..10].to_vec(),
            Expect::Close,
        ),
        (
            "unknown message type",
            true,
            message(b'Y', b"junk"),
            Expect::Fatal("08P01"),
        ),
        (
            "message length below 4",
            true,
            vec![b'Q', 0, 0, 0, 2],
            Expect::Fatal("08P01"),
        ),
        (
            "oversized message length",
            true,
            huge_len(b'Q'),
            Expect::Fatal("08P01"),
        ),
        (
            "oversized CopyData",
            true,
            huge_len(b'd'),
            Expect::Fatal("08P01"),
        ),
        (
            "query without terminator",
            true,
            message(b'Q', b"SELECT 1"),
            Expect::Fatal("08P01"),
        ),
        (
            "truncated Bind",
            true,
            message(b'B', b"\0\0\0\x01\0"),
            Expect::Fatal("08P01"),
        ),
        (
            "Bind value longer than its message",
            true,
            message(b'B', b"\0\0\0\0\0\x01\0\0\0\x09ab\0\0"),
            Expect::Fatal("08P01"),
        ),
        (
            "Describe of an unknown kind",
            true,
            message(b'D', b"Zname\0"),
            Expect::Fatal("08P01"),
        ),
        (
            "password message inside a session",
            true,
            message(b'p', b"again\0"),
            Expect::Fatal("08P01"),
        ),
        (
            "Bind to an unknown statement",
            true,
            bind_unknown.to_vec(),
            Expect::Recoverable("26000"),
        ),
        ("data after Terminate", true, after_terminate, Expect::Close),
    ];
    assert!(cases.len() >= 15);
    for (name, session, input, expect) in &cases {
        case(addr, name, *session, input, *expect)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        // The sidecar keeps serving others between hostile clients.
        assert_eq!(
            bystander.query_one("SELECT 1", &[]).await?.get::<_, i32>(0),
            1,
            "after {name}"
        );
    }

    // Slow drip: one byte every 300 ms never finishes a startup within 2 s.
    let mut raw = Raw::connect(addr).await?;
    let packet = startup(&[
        ("user", "app"),
        ("database", "app"),
        ("application_name", "drip"),
    ]);
    let started = Instant::now();
    let mut closed = false;
    for byte in packet {
        if raw.send(&[byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if started.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    assert!(
        closed || raw.recv().await?.is_none(),
        "slow drip was not cut off"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "cut off only after {:?}",
        started.elapsed()
    );
    assert_eq!(
        bystander.query_one("SELECT 2", &[]).await?.get::<_, i32>(0),
        2
    );

    // A row above the message limit cannot pass: the session ends, and the client is told why
    // instead of finding its connection closed.
    let client = p.connect().await?;
    let error = client
        .query_one("SELECT repeat('x', 2 * 1024 * 1024)", &[])
        .await
        .err()
        .ok_or("a row above the limit was relayed")?;
    let db = error.as_db_error().ok_or_else(|| format!("{error:?}"))?;
    assert_eq!(db.code().code(), "08P01", "{db:?}");
    assert!(
        db.message().contains("cannot relay the database's answer")
            && db.message().contains("above the limit of 1048576 bytes"),
        "{db:?}"
    );
    assert!(client.is_closed() || client.simple_query("SELECT 1").await.is_err());
    Ok(())
}

/// A client that breaks the protocol while a large row is still being written to it gets that
/// row whole, then its FATAL: the farewell never lands inside a message.
#[tokio::test]
async fn a_farewell_waits_for_the_message_being_written() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(&pg, Setup::default()).await?;
    let mut raw = Raw::session(p.addr).await?;
    let mut out = BytesMut::new();
    fe::query("SELECT repeat('x', 16 * 1024 * 1024)", &mut out)?;
    raw.send(&out).await?;
    // Not reading: the row (more than loopback buffers hold) fills them and the sidecar's
    // write waits midway. Generous for a busy machine: too early, the FATAL comes at once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    raw.send(&message(b'Y', b"junk")).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut seen = Vec::new();
    while let Some((tag, body)) = raw.recv().await? {
        if tag == b'D' {
            assert_eq!(body.len(), 2 + 4 + 16 * 1024 * 1024, "a cut row");
        }
        seen.push((tag, error_field(&body, b'S'), error_field(&body, b'C')));
    }
    let tags: String = seen.iter().map(|(t, ..)| char::from(*t)).collect();
    assert!(tags.starts_with("TD"), "{tags}");
    let last = seen.last().ok_or("nothing came")?;
    assert_eq!(
        (last.0, last.1.as_deref(), last.2.as_deref()),
        (b'E', Some("FATAL"), Some("08P01")),
        "{tags}"
    );
    Ok(())
}
