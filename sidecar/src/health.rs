//! `/healthz` (the process runs), `/readyz` (listeners bound, not draining) and `/metrics`
//! (Prometheus text format) over HTTP/1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// Binds `addr` and serves the health endpoints until the returned task is aborted; returns
/// the bound address. During a graceful shutdown `/readyz` answers 503 while sessions drain.
pub async fn serve(
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "health endpoint listening");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let ready = ready.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let ready = ready.load(Ordering::Acquire);
                    let metrics = metrics.clone();
                    async move { Ok::<_, Infallible>(respond(&req, ready, &metrics)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((local, task))
}

fn respond(req: &Request<Incoming>, ready: bool, metrics: &Metrics) -> Response<String> {
    if req.uri().path() == "/metrics" {
        return match metrics.encode() {
            Ok(text) => {
                let mut response = Response::new(text);
                if let Ok(v) = http::HeaderValue::from_str(prometheus::TEXT_FORMAT) {
                    response.headers_mut().insert(http::header::CONTENT_TYPE, v);
                }
                response
            }
            Err(e) => {
                tracing::error!(error = %e, "encoding metrics failed");
                let mut response = Response::new("metrics unavailable\n".to_string());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response
            }
        };
    }
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n"),
        "/readyz" if ready => (StatusCode::OK, "ready\n"),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(body.to_string());
    *response.status_mut() = status;
    response
}
