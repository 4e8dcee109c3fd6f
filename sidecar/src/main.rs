//! `dbwarden-sidecar`: the proxy process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use dbwarden_sidecar::audit::AuditSettings;
use dbwarden_sidecar::cluster::{self, PodEnv};
use dbwarden_sidecar::enforce::{EnforcingHooks, RELOAD_INTERVAL};
use dbwarden_sidecar::identity::PolicyIdentity;
use dbwarden_sidecar::metrics::Metrics;
use dbwarden_sidecar::{Config, Sidecar, SidecarHandle};

/// The dbwarden sidecar: a PostgreSQL proxy that governs every statement.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Standalone configuration file (YAML): listeners, upstreams, limits, health port.
    #[arg(
        long,
        env = "DBWARDEN_CONFIG",
        required_unless_present = "kubernetes",
        conflicts_with = "kubernetes"
    )]
    config: Option<PathBuf>,
    /// Run as the operator injects the sidecar: identity and listeners from the pod's
    /// environment (`DBWARDEN_*`), policies watched from the API server (in-cluster
    /// credentials, or `KUBECONFIG`).
    #[arg(long)]
    kubernetes: bool,
    /// Runtime threads. One (the default) runs everything on a single thread, like pgbouncer:
    /// a sidecar serves one pod, and one core relays far more than one pod's database traffic
    /// without cross-thread wake-ups. Raise it for very busy workloads.
    #[arg(long, env = "DBWARDEN_WORKER_THREADS", default_value_t = 1)]
    worker_threads: usize,
    /// Log format.
    #[arg(long, env = "DBWARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = match args.worker_threads {
        0 => anyhow::bail!("--worker-threads must be at least 1"),
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("starting the runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let (handle, watch) = match &args.config {
        Some(path) => (standalone(path, metrics).await?, None),
        None => {
            let env = PodEnv::from_env()?;
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API server")?;
            let started = cluster::start(env, client, metrics).await?;
            (started.handle, Some(started.watch))
        }
    };

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    handle.shutdown().await;
    if let Some(watch) = watch {
        watch.abort();
    }
    Ok(())
}

/// Starts from a configuration file. With `policies:`, every file must load and compile or the
/// sidecar does not start.
async fn standalone(path: &Path, metrics: Arc<Metrics>) -> anyhow::Result<SidecarHandle> {
    let config = Config::load(path).with_context(|| format!("loading {}", path.display()))?;
    let mut sidecar = Sidecar::new(config.clone()).with_metrics(metrics.clone());
    if let Some(hooks) = EnforcingHooks::from_config(&config).context("loading policies")? {
        let hooks = hooks.with_metrics(metrics.clone());
        hooks.spawn_reloader(RELOAD_INTERVAL);
        // End-user tokens are verified by the policies' spec.identity, kept in step on reload.
        let identity = Arc::new(PolicyIdentity::from_config(&config));
        hooks.attach_identity(Arc::clone(&identity));
        sidecar = sidecar.with_hooks(Arc::new(hooks)).with_identity(identity);
    }
    match AuditSettings::from_config(&config).context("configuring audit")? {
        Some(settings) => {
            let audit = settings.open(metrics).context("starting audit")?;
            sidecar = sidecar.with_audit(audit);
        }
        None => tracing::info!("no audit: section: no audit events are recorded"),
    }
    sidecar.start().await.context("starting the sidecar")
}
