//! Loopback networking for tests: free ports, and plain HTTP GETs against the health and
//! metrics endpoints the binaries serve.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Error, Result};

/// How long one GET may take; a server that accepts and never answers fails the test instead
/// of hanging it.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The lowest port [`free_port`] hands out; below it live the well-known and registered
/// services a machine may run.
const LOWEST_PORT: u16 = 10_000;

/// A free TCP port on 127.0.0.1, for a server a test is about to start.
///
/// Ports come from outside the kernel's ephemeral range (`ip_local_port_range`): below it,
/// or above it when more room is there. A port the kernel hands out for `bind(0)` sits in that
/// range, where every outgoing connection also takes its local port: one of them (a
/// kube-apiserver opens dozens to etcd) could take it between this check and the server's own
/// bind. Outside the range only listeners compete. Ports are handed out in turn from a random
/// place per process, so one process repeats a port only after going through all of them, and
/// test binaries running side by side rarely meet.
pub fn free_port() -> Result<u16> {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let (ephemeral_low, ephemeral_high) = ephemeral_range()?;
    let below = (LOWEST_PORT, ephemeral_low.saturating_sub(1));
    let above = (ephemeral_high.saturating_add(1).max(LOWEST_PORT), u16::MAX);
    let size = |(first, last): (u16, u16)| u32::from(last.saturating_sub(first)) + 1;
    let (first, last) = if size(below) >= size(above) {
        below
    } else {
        above
    };
    let span = size((first, last));
    if last < first || span < 1_000 {
        return Err(Error::io("finding a free loopback port")(io::Error::other(
            format!(
                "the kernel's ephemeral range is {ephemeral_low}-{ephemeral_high}, leaving fewer \
                 than 1000 ports from {LOWEST_PORT} up for test servers"
            ),
        )));
    }
    let next = NEXT.get_or_init(|| {
        let mut seed = [0u8; 4];
        // Without randomness every process would start at the same port; that costs retries,
        // not correctness.
        let _ = getrandom::fill(&mut seed);
        AtomicU32::new(u32::from_le_bytes(seed) % span)
    });
    for _ in 0..span {
        let offset = next.fetch_add(1, Ordering::Relaxed) % span;
        // offset < span <= 65536 - first, so the sum fits.
        let port = first + offset as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::io("finding a free loopback port")(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("every port from {first} to {last} is taken"),
    )))
}

/// The kernel's range of ports for outgoing connections and `bind(0)`.
fn ephemeral_range() -> Result<(u16, u16)> {
    const RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
    let text = std::fs::read_to_string(RANGE).map_err(Error::io(format!("reading {RANGE}")))?;
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    match (bounds.next(), bounds.next()) {
        (Some(Ok(low)), Some(Ok(high))) => Ok((low, high)),
        _ => Err(Error::io(format!("reading {RANGE}"))(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected two port numbers, found {text:?}"),
        ))),
    }
}

/// The whole response (status line, headers, body) of a plain HTTP/1.1 `GET path` on
/// 127.0.0.1:`port`; an error while nothing listens there.
pub async fn http_get(port: u16, path: &str) -> Result<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, io::Error>(response)
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(io::Error::from)
        .and_then(|answered| answered)
        .map_err(Error::io(request_name(port, path)))
}

/// The status code of [`http_get`]`(port, path)`.
pub async fn http_status(port: u16, path: &str) -> Result<u16> {
    let response = http_get(port, path).await?;
    let status_line = response.lines().next().unwrap_or_default();
    status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| Error::Io {
            what: request_name(port, path),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no status code in the status line {status_line:?}"),
            ),
        })
}

fn request_name(port: u16, path: &str) -> String {
    format!("GET http://127.0.0.1:{port}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one connection with `answer`, after reading the request head.
    async fn serve_once(answer: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 256];
            while !head.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                head.extend_from_slice(&buf[..n]);
            }
            assert!(head.starts_with(b"GET /readyz HTTP/1.1\r\n"));
            stream.write_all(answer.as_bytes()).await.unwrap();
        });
        port
    }

    #[tokio::test]
    async fn status_and_body_of_a_get() {
        let port =
            serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 8\r\n\r\ndraining")
                .await;
        let response = http_get(port, "/readyz").await.unwrap();
        assert!(response.ends_with("\r\n\r\ndraining"), "{response:?}");

        let port = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert_eq!(http_status(port, "/readyz").await.unwrap(), 503);
    }

    #[test]
    fn free_ports_lie_below_the_ephemeral_range_and_are_not_repeated() {
        let (low, _) = ephemeral_range().unwrap();
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        assert!(
            ports.iter().all(|p| (LOWEST_PORT..low).contains(p)),
            "{ports:?}"
        );
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    }

    #[tokio::test]
    async fn errors_name_the_request() {
        let port = free_port().unwrap();
        let refused = http_get(port, "/healthz").await.unwrap_err().to_string();
        assert!(
            refused.starts_with(&format!("GET http://127.0.0.1:{port}/healthz: ")),
            "{refused}"
        );

        let port = serve_once("garbage\r\n\r\n").await;
        let garbled = http_status(port, "/readyz").await.unwrap_err().to_string();
        assert!(garbled.contains("no status code"), "{garbled}");
    }
}
