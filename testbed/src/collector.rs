//! A local audit collector: a small HTTP/1.1 server that answers every POST with 200 and keeps
//! the NDJSON event lines it received (or only counts them). It can be stopped and started
//! again on the same port, to play a collector outage.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::net::free_port;

/// Largest request head or body accepted (the shipper's batches are about 1 MiB).
const MAX_REQUEST: usize = 16 << 20;

/// How much room a read is given at least.
const READ_CHUNK: usize = 64 << 10;

/// What the collector received.
#[derive(Debug, Default)]
pub struct Received {
    lines: Mutex<Vec<String>>,
    events: AtomicU64,
    requests: AtomicU64,
}

/// A running collector (stops when dropped).
#[derive(Debug)]
pub struct Collector {
    addr: SocketAddr,
    keep: bool,
    received: Arc<Received>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Collector {
    /// Starts on a free loopback port, keeping every event line.
    pub async fn start() -> std::io::Result<Self> {
        Self::bind(true).await
    }

    /// Starts on a free loopback port, counting events (newlines) and discarding them
    /// (benchmarks).
    pub async fn discarding() -> std::io::Result<Self> {
        Self::bind(false).await
    }

    async fn bind(keep: bool) -> std::io::Result<Self> {
        // A port below the ephemeral range: `restart` binds it again, and while the collector
        // is down an outgoing connection must not be able to take it.
        let port = free_port().map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let mut c = Self {
            addr: listener.local_addr()?,
            keep,
            received: Arc::default(),
            task: None,
        };
        c.serve(listener);
        Ok(c)
    }

    /// The URL to POST batches to.
    pub fn url(&self) -> String {
        format!("http://{}/ingest", self.addr)
    }

    /// Event lines received so far, in arrival order (duplicates included).
    pub fn lines(&self) -> Vec<String> {
        self.received
            .lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Events received so far (duplicates included).
    pub fn events(&self) -> u64 {
        self.received.events.load(Ordering::Relaxed)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.received.requests.load(Ordering::Relaxed)
    }

    /// Stops listening and drops every open connection (the collector is "down").
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop().await;
        let mut attempt = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if attempt >= 100 => return Err(e),
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        self.serve(listener);
        Ok(())
    }

    fn serve(&mut self, listener: TcpListener) {
        let received = self.received.clone();
        let keep = self.keep;
        self.task = Some(tokio::spawn(async move {
            // Aborting this task drops the set, which aborts every connection.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                conns.spawn(connection(stream, received.clone(), keep));
                while conns.try_join_next().is_some() {}
            }
        }));
    }
}

/// Serves keep-alive requests on one connection until the client closes it.
async fn connection(mut stream: TcpStream, received: Arc<Received>, keep: bool) {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    loop {
        let Some((head_len, body_len)) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let want = head_len + body_len;
        buf.reserve(want.saturating_sub(buf.len()));
        while buf.len() < want {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let body = &buf[head_len..want];
        let events = if keep {
            let text = String::from_utf8_lossy(body);
            let mut lines = received
                .lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let before = lines.len();
            lines.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
            lines.len() - before
        } else {
            // Benchmarks only count, at memory speed: the shipper sends one event per line,
            // each ending in a newline, never an empty one.
            body.iter().filter(|&&b| b == b'\n').count()
        };
        received.events.fetch_add(events as u64, Ordering::Relaxed);
        received.requests.fetch_add(1, Ordering::Relaxed);
        buf.drain(..want);
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// Reads until a request head is complete; returns its length and the body's `content-length`.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(usize, usize)> {
    let mut searched: usize = 0;
    loop {
        // Only the bytes not searched yet (and the 3 before them, for a split terminator).
        let from = searched.saturating_sub(3);
        if let Some(at) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = from + at;
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            return (body <= MAX_REQUEST).then_some((end + 4, body));
        }
        searched = buf.len();
        if buf.len() > MAX_REQUEST {
            return None;
        }
        buf.reserve(READ_CHUNK);
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
