//! A namespace on a real control plane with a real PostgreSQL behind it, and the sidecar binary
//! run as the injector configures it: `--kubernetes`, the `DBWARDEN_*` environment, the pod's
//! labels file and the mounted Secret, as the ServiceAccount `shop/api` under the chart's
//! `dbwarden-sidecar` role.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dbwarden_testbed::{
    ADMIN, APP, ControlPlane, PodFiles, Postgres, free_port, http_status, workspace_root,
};
use tokio::process::{Child, Command};

/// The namespace of the workload.
pub const NAMESPACE: &str = "shop";
/// The workload's ServiceAccount.
pub const SERVICE_ACCOUNT: &str = "api";

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The control plane with the CRDs and the sidecar's RBAC, and PostgreSQL.
pub struct Cluster {
    pub cp: ControlPlane,
    pub pg: Postgres,
}

impl Cluster {
    /// Starts both; the namespace exists; `shop/api` is bound to the sidecar role only when
    /// `bind_sidecar_role` (tests of the fail-closed start bind it later).
    pub async fn start(bind_sidecar_role: bool) -> Self {
        dbwarden_testbed::init_tracing();
        let (cp, pg) = tokio::join!(ControlPlane::start(), Postgres::start());
        let (cp, pg) = (cp.unwrap(), pg.unwrap());
        cp.install_dbwarden_crds().await.unwrap();
        cp.kubectl_ok(&ADMIN, &["create", "namespace", NAMESPACE])
            .await
            .unwrap();
        // The chart's own roles, rendered by helm, so the test runs under what users install.
        let chart = workspace_root().join("charts/dbwarden");
        let roles = cp
            .helm(&[
                "template",
                "dbwarden",
                &chart.display().to_string(),
                "--show-only",
                "templates/user-roles.yaml",
            ])
            .await
            .unwrap()
            .ok("helm template")
            .unwrap();
        cp.apply(&ADMIN, &roles).await.unwrap();
        let cluster = Self { cp, pg };
        if bind_sidecar_role {
            cluster.bind_sidecar_role().await;
        }
        cluster
    }

    /// `kubectl create rolebinding`, as the chart's NOTES tell users to.
    pub async fn bind_sidecar_role(&self) {
        self.cp
            .kubectl_ok(
                &ADMIN,
                &[
                    "create",
                    "rolebinding",
                    "dbwarden-sidecar",
                    "-n",
                    NAMESPACE,
                    "--clusterrole=dbwarden-sidecar",
                    &format!("--serviceaccount={NAMESPACE}:{SERVICE_ACCOUNT}"),
                ],
            )
            .await
            .unwrap();
    }

    /// A policy for the test database selecting `app: api`, listening on `port`, with `rules`
    /// (YAML list items indented by four spaces) and any further `spec` fields in `extra`.
    pub fn policy(&self, name: &str, port: u16, rules: &str, extra: &str) -> String {
        format!(
            "apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  database:
    host: 127.0.0.1
    port: {pg_port}
    name: app
    environment: dev
    credentialsSecretRef: {{name: app-db}}
    tls: {{mode: disable}}
  workloadSelector: {{matchLabels: {{app: api}}}}
  listenPort: {port}
  rules:
{rules}
{extra}",
            pg_port = self.pg.port(),
        )
    }
}

/// The sidecar binary, run as in a pod.
pub struct PodSidecar {
    _child: Child,
    pub health: u16,
    _pod: PodFiles,
}

impl PodSidecar {
    /// Starts `dbwarden-sidecar --kubernetes` for a pod admitted with `policies`.
    pub fn start(cluster: &Cluster, policies: &[&str]) -> Self {
        let pod = PodFiles::new(
            &[("app", "api"), ("pod-template-hash", "7d9f")],
            "app-db",
            &APP,
        )
        .unwrap();
        let spool = pod.dir().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let health = free_port().unwrap();
        let kubeconfig = cluster
            .cp
            .kubeconfig_impersonating(&format!(
                "system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
            ))
            .unwrap();
        let env: [(&str, PathBuf); 10] = [
            ("KUBECONFIG", kubeconfig),
            ("DBWARDEN_POD_NAME", "api-7d9f-x2x4q".into()),
            ("DBWARDEN_POD_NAMESPACE", NAMESPACE.into()),
            (
                "DBWARDEN_POD_UID",
                "5f0c3a1e-0000-4000-8000-000000000001".into(),
            ),
            ("DBWARDEN_SERVICE_ACCOUNT", SERVICE_ACCOUNT.into()),
            ("DBWARDEN_POD_LABELS_FILE", pod.labels_file()),
            ("DBWARDEN_POLICIES", policies.join(",").into()),
            ("DBWARDEN_SECRETS_DIR", pod.secrets_dir()),
            ("DBWARDEN_SPOOL_DIR", spool),
            ("DBWARDEN_HEALTH_ADDR", format!("127.0.0.1:{health}").into()),
        ];
        let child = Command::new(env!("CARGO_BIN_EXE_dbwarden-sidecar"))
            .arg("--kubernetes")
            .envs(env)
            .env("RUST_LOG", "info")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self {
            _child: child,
            health,
            _pod: pod,
        }
    }

    /// The HTTP status of `path` on the health port, `None` while nothing listens.
    pub async fn health_status(&self, path: &str) -> Option<u16> {
        http_status(self.health, path).await.ok()
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, within: Duration) {
        let start = Instant::now();
        while self.health_status("/readyz").await != Some(200) {
            assert!(start.elapsed() < within, "the sidecar never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A client of the sidecar's listener on `port`, as the app in the pod would connect (no
/// password: the workload's own identity).
pub async fn connect(port: u16) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let conninfo =
        format!("host=127.0.0.1 port={port} user=app dbname=app password='' sslmode=disable");
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// SQLSTATE of a failed statement.
pub fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.as_db_error().map(|e| e.code().code())
}

/// Retries `check` until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
