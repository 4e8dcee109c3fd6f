//! `dbwarden-devenv`: starts the local control plane and a PostgreSQL, prints how to reach
//! them, and keeps them up until Ctrl-C (then stops them and removes their files).

use anyhow::Context;
use clap::Parser;
use dbwarden_testbed::{ADMIN, APP, ControlPlane, Postgres, tools_bin_dir};

/// Start a local Kubernetes control plane (etcd + kube-apiserver) and a PostgreSQL for trying
/// dbwarden by hand.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    eprintln!(
        "Starting a Kubernetes control plane (etcd + kube-apiserver, no nodes) and PostgreSQL..."
    );
    let (cp, pg) = tokio::try_join!(ControlPlane::start(), Postgres::start())
        .context("starting the local environment")?;
    let kubeconfig = cp.kubeconfig(&ADMIN);
    let tools = tools_bin_dir();
    eprintln!(
        "
Control plane ready in {cp_time:.1?} at {server}
  export PATH={tools}:$PATH KUBECONFIG={kubeconfig}
  kubectl get namespaces
  (other users: alice and dave are DBAs, bob a developer, carol an outsider;
   their kubeconfigs are beside the admin's in {dir})

PostgreSQL ready in {pg_time:.1?} on 127.0.0.1:{port}
  psql \"{conninfo}\"

Press Ctrl-C to stop both and remove their files.",
        cp_time = cp.started_in(),
        server = cp.server(),
        tools = tools.display(),
        kubeconfig = kubeconfig.display(),
        dir = cp.dir().display(),
        pg_time = pg.started_in(),
        port = pg.port(),
        conninfo = pg.conninfo(&APP),
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("Stopping...");
    drop(pg);
    drop(cp);
    Ok(())
}
