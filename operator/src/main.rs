//! `dbwarden-operator`: reconciles dbwarden's custom resources and serves its HTTP endpoints.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use dbwarden_operator::http::{self, Readiness};
use dbwarden_operator::telemetry::{self, LogFormat};
use dbwarden_operator::{Context, Metrics, policy};

/// The dbwarden operator: reconciles DatabaseAccessPolicy and ApprovalRequest objects.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address of the plain HTTP endpoints: /metrics, /healthz and /readyz.
    #[arg(long, env = "DBWARDEN_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "DBWARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// This replica's name in the Events it publishes (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(args.log_format);

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let ctx = Context::new(client, metrics.clone(), args.instance);
    let readiness = Readiness::default();

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    let app = http::router(metrics, readiness.clone());
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());

    readiness.set_ready();
    tracing::info!(metrics_addr = %args.metrics_addr, "dbwarden-operator started");
    let (served, ()) = tokio::join!(server, policy::run(ctx, shutdown_signal()));
    served.context("serving HTTP endpoints")?;
    tracing::info!("dbwarden-operator stopped");
    Ok(())
}

/// Completes on SIGTERM (as the kubelet stops a pod) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; stop with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
