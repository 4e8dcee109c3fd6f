//! A local collector for the tests: records every event line that arrives, can be stopped and
//! started again on the same port, and can be told to answer 500.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dbwarden_audit::{Event, Identity, Kind, ShipperConfig};
use dbwarden_testbed::free_port;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// What the collector saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Event lines in arrival order (OTLP bodies unpacked).
    pub lines: Mutex<Vec<String>>,
    /// Requests answered 2xx.
    pub accepted: AtomicU64,
    /// Requests answered with an error.
    pub rejected: AtomicU64,
    /// Authorization headers seen.
    pub auth: Mutex<Vec<String>>,
}

pub struct Collector {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    /// Status to answer with (200 or e.g. 500).
    pub status: Arc<AtomicU16>,
    task: Option<JoinHandle<()>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Collector {
    /// Starts on a free port.
    pub async fn start() -> Collector {
        let listener = TcpListener::bind(("127.0.0.1", free_port().unwrap()))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = Collector {
            addr,
            seen: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            task: None,
            tls: None,
        };
        c.serve(listener);
        c
    }

    /// Starts an HTTPS collector with a fresh self-signed certificate for `localhost`; returns
    /// it and the certificate's PEM for the client to trust.
    pub async fn start_tls() -> (Collector, String) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let pem = cert.cert.pem();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let listener = TcpListener::bind(("127.0.0.1", free_port().unwrap()))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = Collector {
            addr,
            seen: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            task: None,
            tls: Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        };
        c.serve(listener);
        (c, pem)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Shipper settings for tests: short linger and backoff.
    pub fn shipper(&self) -> ShipperConfig {
        ShipperConfig {
            linger: Duration::from_millis(5),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
            request_timeout: Duration::from_secs(2),
            batch_max_events: 100,
            ..ShipperConfig::new(self.url("/ingest"))
        }
    }

    /// Stops listening and closes every open connection.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let seen = self.seen.clone();
        let status = self.status.clone();
        let tls = self.tls.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let seen = seen.clone();
                let status = status.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(req, seen.clone(), status.clone()));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        }));
    }

    pub fn lines(&self) -> Vec<String> {
        self.seen.lines.lock().unwrap().clone()
    }
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Seen>,
    status: Arc<AtomicU16>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let gzip = req
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let otlp = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/json");
    if let Some(auth) = req.headers().get("authorization") {
        seen.auth
            .lock()
            .unwrap()
            .push(auth.to_str().unwrap().to_owned());
    }
    let body = req.into_body().collect().await?.to_bytes();
    let code = status.load(Ordering::SeqCst);
    if code != 200 {
        seen.rejected.fetch_add(1, Ordering::SeqCst);
        let resp = Response::builder()
            .status(code)
            .body(Full::new(Bytes::from_static(b"collector says no")))
            .unwrap();
        return Ok(resp);
    }
    let mut text = String::new();
    if gzip {
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
    } else {
        text = String::from_utf8(body.to_vec()).unwrap();
    }
    let lines: Vec<String> = if otlp {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut out = Vec::new();
        for rl in v["resourceLogs"].as_array().unwrap() {
            for sl in rl["scopeLogs"].as_array().unwrap() {
                for rec in sl["logRecords"].as_array().unwrap() {
                    out.push(rec["body"]["stringValue"].as_str().unwrap().to_owned());
                }
            }
        }
        out
    } else {
        text.lines().map(str::to_owned).collect()
    };
    seen.lines.lock().unwrap().extend(lines);
    seen.accepted.fetch_add(1, Ordering::SeqCst);
    Ok(Response::new(Full::new(Bytes::from_static(b"{}"))))
}

/// A realistic statement event.
pub fn statement(n: u64) -> Event {
    Event::new(Kind::Statement)
        .identity(Identity {
            user: Some("alice@example.com".into()),
            groups: vec!["analysts".into()],
            service_account: Some("reporting".into()),
            pod: Some("reporting-7d9f-abcde".into()),
            namespace: Some("shop".into()),
        })
        .database("shop")
        .connection(n / 10)
        .statement(
            dbwarden_audit::StatementText::Redacted,
            "",
            "SELECT email FROM public.users WHERE id = ?",
        )
        .analysis(
            format!("fp{:016x}", n % 7),
            "select",
            vec!["public.users".into()],
        )
        .decision(
            dbwarden_audit::Decision::Masked,
            Some("analysts-read".into()),
        )
        .masked(vec!["email".into()], 1)
        .rows(1)
        .durations(Some(800 + n % 100), Some(35))
}
