//! Shared by the operator's integration tests: the operator binary as a process.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use dbwarden_testbed::{CommandOutput, ControlPlane, User, free_port, http_status, log_tail};

/// The `dbwarden-operator` binary, killed when dropped; its log is printed when a test fails.
pub struct Operator {
    _process: tokio::process::Child,
    /// Port of /metrics, /healthz and /readyz.
    pub metrics_port: u16,
    log: std::path::PathBuf,
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- end of the operator's log ---\n{}",
                log_tail(&self.log, 60)
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Operator {
    /// Starts the operator with `kubeconfig`, its webhooks on 127.0.0.1:`webhook_port` (a
    /// certificate for 127.0.0.1, as the API server calls them by URL), and waits for /readyz.
    pub async fn start(kubeconfig: &Path, webhook_port: u16) -> Self {
        Self::start_with(kubeconfig, webhook_port, &[]).await
    }

    /// [`Operator::start`] with more arguments.
    pub async fn start_with(kubeconfig: &Path, webhook_port: u16, extra: &[&str]) -> Self {
        let metrics_port = free_port().unwrap();
        let log = std::env::temp_dir().join(format!("dbwarden-operator-test-{metrics_port}.log"));
        let process = tokio::process::Command::new(env!("CARGO_BIN_EXE_dbwarden-operator"))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,dbwarden_operator=debug")
            .args(["--webhook-addr", &format!("127.0.0.1:{webhook_port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args([
                "--namespace",
                "dbwarden-system",
                "--webhook-names",
                "127.0.0.1",
            ])
            .args(["--sidecar-image", "example.com/dbwarden-sidecar:test"])
            .args(extra)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..300 {
            if matches!(http_status(metrics_port, "/readyz").await, Ok(200)) {
                return Self {
                    _process: process,
                    metrics_port,
                    log,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("the operator did not become ready; its log:\n{log}");
    }
}

/// A control plane with `namespaces` created, the dbwarden chart installed with its webhooks
/// called by URL, and the operator running as the chart's ServiceAccount (exactly its RBAC)
/// with `operator_args`.
pub async fn installed(
    namespaces: &[&str],
    operator_args: &[&str],
) -> (dbwarden_testbed::ControlPlane, Operator) {
    use dbwarden_testbed::{ADMIN, ControlPlane};
    dbwarden_testbed::init_tracing();
    let cp = ControlPlane::start().await.unwrap();
    for namespace in namespaces {
        cp.kubectl_ok(&ADMIN, &["create", "namespace", namespace])
            .await
            .unwrap();
    }
    let port = free_port().unwrap();
    cp.install_dbwarden_chart(port).await.unwrap();
    let service_account = cp
        .kubeconfig_impersonating(ControlPlane::DBWARDEN_OPERATOR)
        .unwrap();
    let operator = Operator::start_with(&service_account, port, operator_args).await;
    (cp, operator)
}

/// `user` decides ApprovalRequest `namespace/name` with kubectl, setting its status `phase` as
/// the operator's announcement tells approvers to; the caller judges the outcome.
pub async fn decide(
    cp: &ControlPlane,
    user: &User,
    namespace: &str,
    name: &str,
    phase: &str,
) -> CommandOutput {
    let patch = format!(r#"{{"status":{{"phase":"{phase}"}}}}"#);
    cp.kubectl(
        user,
        &[
            "patch",
            "ar",
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
    )
    .await
    .unwrap()
}
