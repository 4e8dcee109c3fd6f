//! `dbwarden-sidecar`: the proxy process.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use dbwarden_sidecar::audit::AuditSettings;
use dbwarden_sidecar::enforce::{EnforcingHooks, RELOAD_INTERVAL};
use dbwarden_sidecar::metrics::Metrics;
use dbwarden_sidecar::{Config, Sidecar};

/// The dbwarden sidecar: a PostgreSQL proxy that governs every statement.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Standalone configuration file (YAML): listeners, upstreams, limits, health port.
    #[arg(long, env = "DBWARDEN_CONFIG")]
    config: PathBuf,
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
    let config =
        Config::load(&args.config).with_context(|| format!("loading {}", args.config.display()))?;
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let mut sidecar = Sidecar::new(config.clone()).with_metrics(metrics.clone());
    // With `policies:`, every file must load and compile or the sidecar does not start.
    if let Some(hooks) = EnforcingHooks::from_config(&config).context("loading policies")? {
        let hooks = hooks.with_metrics(metrics.clone());
        hooks.spawn_reloader(RELOAD_INTERVAL);
        sidecar = sidecar.with_hooks(Arc::new(hooks));
    }
    match AuditSettings::from_config(&config).context("configuring audit")? {
        Some(settings) => {
            let audit = settings.open(metrics).context("starting audit")?;
            sidecar = sidecar.with_audit(audit);
        }
        None => tracing::info!("no audit: section: no audit events are recorded"),
    }
    let handle = sidecar.start().await.context("starting the sidecar")?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}
