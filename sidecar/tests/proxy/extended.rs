//! Extended-protocol edge cases through the sidecar, message by message.

use bytes::BytesMut;
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend as fe;

use crate::common::{Proxy, Raw, Setup, TestResult, proxy, start_pg, tags};

pub(crate) fn bind(
    portal: &str,
    statement: &str,
    params: &[&str],
    out: &mut BytesMut,
) -> Result<(), &'static str> {
    let values: Vec<&str> = params.to_vec();
    fe::bind(
        portal,
        statement,
        Some(0),
        values,
        |v: &str, buf: &mut BytesMut| {
            buf.extend_from_slice(v.as_bytes());
            Ok(IsNull::No)
        },
        Some(0),
        out,
    )
    .map_err(|_| "bind encoding")
}

#[tokio::test]
async fn named_statements_portals_row_limits_and_close() -> TestResult {
    let pg = start_pg().await?;
    let p = proxy(&pg, Setup::default()).await?;
    portals_scenario(&p).await
}

/// The client sees exactly what a server sends (also with a row hook, which describes every
/// portal behind the client's back).
pub async fn portals_scenario(p: &Proxy) -> TestResult {
    let mut raw = Raw::session(p.addr).await?;
    let mut out = BytesMut::new();

    // A named statement with a parameter, described, bound into a named portal, and fetched
    // two rows at a time (PortalSuspended in between), inside one explicit transaction.
    fe::query("BEGIN", &mut out)?;
    fe::parse(
        "series",
        "SELECT g FROM generate_series(1, $1::int) g",
        [23_u32],
        &mut out,
    )?;
    fe::describe(b'S', "series", &mut out)?;
    bind("cursor", "series", &["5"], &mut out)?;
    fe::execute("cursor", 2, &mut out)?;
    fe::flush(&mut out);
    raw.send(&out).await?;
    assert_eq!(tags(&raw.until_ready().await?), "C Z");
    let mut got = Vec::new();
    while got.len() < 6 {
        got.push(raw.recv().await?.ok_or("closed")?);
    }
    assert_eq!(tags(&got), "1 t T 2 D D");
    assert_eq!(
        raw.recv().await?.map(|m| m.0),
        Some(b's'),
        "PortalSuspended after two rows"
    );

    out.clear();
    fe::execute("cursor", 2, &mut out)?;
    fe::execute("cursor", 0, &mut out)?;
    fe::close(b'P', "cursor", &mut out)?;
    fe::close(b'S', "series", &mut out)?;
    fe::sync(&mut out);
    fe::query("COMMIT", &mut out)?;
    raw.send(&out).await?;
    let msgs = raw.until_ready().await?;
    assert_eq!(tags(&msgs), "D D s D C 3 3 Z");
    assert_eq!(
        msgs.last().map(|m| m.1.clone()),
        Some(b"T".to_vec()),
        "still in the transaction"
    );
    assert_eq!(tags(&raw.until_ready().await?), "C Z");

    // The closed statement is gone; the unnamed statement and portal still work, pipelined.
    out.clear();
    bind("", "series", &["1"], &mut out)?;
    fe::sync(&mut out);
    fe::parse("", "SELECT $1::text || '!'", [25_u32], &mut out)?;
    bind("", "", &["hi"], &mut out)?;
    fe::describe(b'P', "", &mut out)?;
    fe::execute("", 0, &mut out)?;
    fe::sync(&mut out);
    raw.send(&out).await?;
    assert_eq!(tags(&raw.until_ready().await?), "E Z");
    let msgs = raw.until_ready().await?;
    assert_eq!(tags(&msgs), "1 2 T D C Z");
    assert_eq!(msgs[3].1[6..], *b"hi!");
    Ok(())
}
