//! `dbwarden-devenv` (`make demo`): a local Kubernetes control plane and PostgreSQL with dbwarden
//! installed by its Helm chart and the operator running, then instructions to try it with
//! kubectl as different people. Ctrl-C stops everything and removes its files.

// The demo talks to a person on its standard output: that is the program's job.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use dbwarden_testbed::{ADMIN, ALICE, APP, ControlPlane, Postgres, tools_bin_dir, workspace_root};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Start a local control plane (etcd + kube-apiserver, no nodes) and PostgreSQL, install
/// dbwarden with its Helm chart, run the operator, and print how to try it.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The operator binary (default: dbwarden-operator beside this program, as cargo builds it).
    #[arg(long, env = "DBWARDEN_OPERATOR_BIN")]
    operator: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let operator_bin = match args.operator {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("dbwarden-operator"),
    };
    if !operator_bin.is_file() {
        bail!(
            "{} not found; build it with: cargo build -p dbwarden-operator",
            operator_bin.display()
        );
    }

    step("Starting a Kubernetes control plane (etcd + kube-apiserver, no nodes) and PostgreSQL");
    let (cp, pg) = tokio::try_join!(ControlPlane::start(), Postgres::start())
        .context("starting the local environment")?;
    println!(
        "   control plane ready in {:.1?}, PostgreSQL in {:.1?}",
        cp.started_in(),
        pg.started_in()
    );

    step(
        "Installing dbwarden with its Helm chart (the operator runs here, the API server calls its webhooks by URL)",
    );
    let webhook_port = free_port()?;
    let out = cp.install_dbwarden_chart(webhook_port).await?;
    println!(
        "{}",
        indent(out.lines().take(6).collect::<Vec<_>>().join("\n"))
    );

    step("Starting the operator with exactly the chart's RBAC (as its ServiceAccount)");
    let kubeconfig = cp.kubeconfig_impersonating(ControlPlane::DBWARDEN_OPERATOR)?;
    let metrics_port = free_port()?;
    let _operator = tokio::process::Command::new(&operator_bin)
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        .args([
            "--webhook-addr",
            &format!("127.0.0.1:{webhook_port}"),
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .args([
            "--namespace",
            "dbwarden-system",
            "--webhook-names",
            "127.0.0.1",
            "--sidecar-image",
            "ghcr.io/dbwarden/dbwarden-sidecar:0.1.0",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(cp.dir().join("operator.log"))?)
        .kill_on_drop(true)
        .spawn()
        .context("starting the operator")?;
    wait_ready(metrics_port).await?;
    println!(
        "   operator ready; its log: {}",
        cp.dir().join("operator.log").display()
    );

    step("Creating namespace payments, where group dba may approve");
    cp.kubectl_ok(&ADMIN, &["create", "namespace", "payments"])
        .await?;
    cp.kubectl_ok(
        &ADMIN,
        &[
            "create",
            "rolebinding",
            "dba-approve",
            "-n",
            "payments",
            "--clusterrole=dbwarden-approver",
            "--group=dba",
        ],
    )
    .await?;
    cp.kubectl_ok(
        &ADMIN,
        &[
            "create",
            "secret",
            "generic",
            "orders-db-login",
            "-n",
            "payments",
            "--from-literal=username=app",
            &format!("--from-literal=password={}", APP.password),
        ],
    )
    .await?;

    let root = workspace_root();
    println!(
        "
Ready. In another terminal:

  export PATH={tools}:$PATH KUBECONFIG={admin}
  cd {root}

  # A policy: the operator validates it (READY) and refuses bad ones at apply time.
  kubectl apply -f examples/production-guardrails.yaml
  kubectl get dap -n payments

  # A pod that asks for the sidecar comes back injected (pods never run here: no nodes).
  kubectl run reports -n payments --image=example.com/orders-api:1 --labels=app=orders-api \\
    --annotations=dbwarden.io/inject=true
  kubectl get pod reports -n payments -o jsonpath='{{.spec.initContainers[0].name}}{{\"\\n\"}}'

  # An approval: the request bob's statement would create; alice (group dba) approves it.
  kubectl apply -f examples/approval-request.yaml
  kubectl get ar -n payments
  kubectl --kubeconfig {alice} -n payments patch ar orders-production-deletes-7f3a9c \\
    --subresource=status --type=merge -p '{{\"status\":{{\"phase\":\"Approved\"}}}}'
  kubectl describe ar -n payments orders-production-deletes-7f3a9c

  Other people: {dir}/{{alice,dave}}.kubeconfig (dba), bob.kubeconfig (developer), carol.kubeconfig.

PostgreSQL on 127.0.0.1:{port}:
  psql \"{conninfo}\"

Press Ctrl-C to stop everything and remove its files.",
        tools = tools_bin_dir().display(),
        admin = cp.kubeconfig(&ADMIN).display(),
        alice = cp.kubeconfig(&ALICE).display(),
        root = root.display(),
        dir = cp.dir().display(),
        port = pg.port(),
        conninfo = pg.conninfo(&APP),
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("Stopping...");
    Ok(())
}

fn step(what: &str) {
    println!("\n== {what}");
}

fn indent(text: String) -> String {
    text.lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_ready(port: u16) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let _ = stream
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await;
            let mut response = String::new();
            if stream.read_to_string(&mut response).await.is_ok()
                && response.starts_with("HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the operator did not become ready within 30 s")
}
