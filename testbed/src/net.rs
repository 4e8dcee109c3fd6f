//! Loopback networking for tests: free ports, and plain HTTP GETs against the health and
//! metrics endpoints the binaries serve.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Error, Result};

/// How long one GET may take; a server that accepts and never answers fails the test instead
/// of hanging it.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// A free TCP port on 127.0.0.1, as the kernel hands them out.
///
/// The port is free when this returns; another process may take it before the caller binds
/// it, which on a test machine's ephemeral range is rare enough not to retry.
pub fn free_port() -> Result<u16> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(Error::io("finding a free loopback port"))?
        .port();
    Ok(port)
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
