//! The end-to-end story, as a platform team and its users live it, on a real kube-apiserver
//! (etcd, no nodes) and a real PostgreSQL:
//!
//! 1. The platform team installs dbwarden with its Helm chart; the operator runs (outside the
//!    cluster, as the chart's ServiceAccount) where the chart's webhook URL points.
//! 2. The orders team creates its namespace, the database login Secret, the production policy
//!    of examples/ and the example Deployment; its pod is admitted with the sidecar injected,
//!    and the sidecar's ServiceAccount gets the chart's `dbwarden-sidecar` role.
//! 3. The pod starts: the sidecar runs exactly as injected (the test bed's kubelet stand-in
//!    resolves its environment and materialises its volumes) and becomes ready.
//! 4. An AI agent acting for an on-call engineer (an end-user JWT as its password) reads
//!    orders, and its `DROP TABLE` and unbounded `DELETE` are stopped by the guardrails.
//! 5. The agent sees card numbers masked; the service itself (exempt) sees them whole.
//! 6. The service's `DELETE` of an order waits for a DBA's approval (hold mode); alice approves
//!    with `kubectl patch`, the statement runs, and the request shows Executed.
//! 7. Every decision reached the audit collector, naming who asked, and the hash chain verifies.
//! 8. The sidecar's and the operator's `/metrics` show the counts.
//!
//! Each step is logged with its number and a failure names the step; the operator's and the
//! sidecar's logs are logged when the story fails. [`run`] returns the [`Story`] with everything
//! still running: the test stops it at once with [`Story::shutdown`], the demo once people have
//! tried it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use dbwarden_testbed::{Collector, ControlPlane, Postgres, PreparedContainer, User};
use serde_json::json;
use tempfile::TempDir;
use tracing::Instrument;

use crate::support::binaries::Binaries;
use crate::support::daemon::Daemon;
use crate::support::jwt::Issuer;

mod evidence;
mod queries;
mod setup;

pub use evidence::{audit_trail, metrics};
pub use queries::{agent_queries, approved_delete, masked_reads};
pub use setup::{deploy, install, start_sidecar};

/// The namespace of the orders team.
pub const NAMESPACE: &str = "payments";
/// The example policy's name.
pub const POLICY: &str = "orders-production";
/// The orders service's ServiceAccount (and Deployment).
pub const SERVICE_ACCOUNT: &str = "orders-api";
const SIDECAR: &str = "dbwarden-sidecar";
/// The database login the example's `orders-db-login` Secret holds.
pub const DB_USER: &str = "orders_api";
/// Its password, which only the sidecar gets.
pub const DB_PASSWORD: &str = "orders-api-db-secret";
/// The end user the agent acts for, and the group the example's `on-call-read` rule names.
pub const AGENT_USER: &str = "ops-copilot@acme.example";
const AGENT_GROUP: &str = "on-call";
/// Someone the example policy does not name.
const OUTSIDER: &str = "temp-contractor@acme.example";
/// The issuer the example policy trusts.
const TOKEN_ISSUER: &str = "https://login.example.com/realms/acme";

/// How long a process may take to answer its readiness probe.
const READY_WITHIN: Duration = Duration::from_secs(90);

/// One numbered step: its title (logged, and named when it fails) and why it matters.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// 1 to 8.
    pub number: u8,
    /// What the step does, in one line.
    pub title: &'static str,
    /// What it shows a newcomer, and why that matters.
    pub why: &'static str,
}

/// The story's steps, in order.
pub const STEPS: [Step; 8] = [
    Step {
        number: 1,
        title: "install dbwarden with Helm; run the operator as the chart's ServiceAccount",
        why: "A platform team installs dbwarden like any other chart: CRDs, RBAC and webhooks. \
              The operator runs with exactly the chart's permissions, so what works here works \
              in a cluster.",
    },
    Step {
        number: 2,
        title: "namespace, login Secret, example policy and Deployment; the pod gets the sidecar",
        why: "The orders team applies examples/production-guardrails.yaml (the operator marks it \
              READY) and the example Deployment. Its pod is admitted with the dbwarden sidecar \
              injected: the app never holds the database password.",
    },
    Step {
        number: 3,
        title: "the pod starts: the sidecar runs as injected and becomes ready",
        why: "The real sidecar binary runs with exactly the environment and files the injected \
              container gets, watches the policy in the API server, and becomes ready.",
    },
    Step {
        number: 4,
        title: "an AI agent with an end-user token: reads pass, DROP and unbounded DELETE stop",
        why: "An AI agent acting for an on-call engineer logs in with the engineer's JWT. It may \
              read, but DROP TABLE and a DELETE without WHERE are refused (SQLSTATE 42501, naming \
              the policy and guardrail), and someone no rule names reads nothing.",
    },
    Step {
        number: 5,
        title: "the agent sees card numbers masked; the exempt service sees them whole",
        why: "Sensitive columns are masked in the result rows on their way out: the agent sees \
              only the last 4 digits of card numbers; the orders service, exempt, sees them whole.",
    },
    Step {
        number: 6,
        title: "the service's DELETE waits for a DBA; alice approves with kubectl; it runs once",
        why: "A DELETE on production becomes an ApprovalRequest and waits (hold mode). Alice, a \
              DBA, approves it with `kubectl patch`; the statement then runs, and the request \
              shows Executed and who approved it: four eyes, with plain Kubernetes RBAC.",
    },
    Step {
        number: 7,
        title: "every decision and what it returned reached the audit collector; the chain verifies",
        why: "Every decision was shipped as an audit event naming who asked (the end user, not \
              just the pod), each statement that ran has a result event saying what it returned \
              (rows, which columns were masked), and the events form a hash chain that \
              `dbwarden-audit verify` checks: the proof of who ran what and saw what.",
    },
    Step {
        number: 8,
        title: "the sidecar's and the operator's /metrics show the counts",
        why: "Prometheus-style /metrics on the sidecar and the operator count decisions, \
              refusals, approvals, masked values and shipped events, for dashboards and alerts.",
    },
];

/// Everything the story has set up so far; dropped (processes killed, folders removed) at the end.
pub struct Story {
    // Processes first: they stop before the servers they talk to.
    sidecar: Option<Daemon>,
    operator: Daemon,
    pod_root: Option<PreparedContainer>,
    cp: ControlPlane,
    pg: Postgres,
    bins: Binaries,
    issuer: Issuer,
    listen_port: u16,
    /// The sidecar's `/healthz`, `/readyz` and `/metrics` port, once it runs.
    health_port: u16,
    /// The operator's metrics port.
    operator_metrics: u16,
    /// Where the sidecar ships audit events.
    collector: Collector,
    /// Logs and the rendered policy.
    dir: TempDir,
}

impl std::fmt::Debug for Story {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Story")
            .field("dir", &self.dir.path())
            .field("listen_port", &self.listen_port)
            .finish_non_exhaustive()
    }
}

/// What a step reports while the story runs.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// The step begins.
    Begin(&'static Step),
    /// The step passed, in this long.
    Done(&'static Step, Duration),
}

/// Runs the eight steps with `bins`, telling `progress` as each begins and ends; returns the
/// story with everything still running. A failure names its step and logs the end of the
/// operator's and the sidecar's logs.
pub async fn run(bins: Binaries, mut progress: impl FnMut(Progress)) -> anyhow::Result<Story> {
    let begun = Instant::now();
    let [s1, s2, s3, s4, s5, s6, s7, s8] = &STEPS;
    let mut story = step(s1, &mut progress, install(bins)).await?;
    let result = async {
        let pod = step(s2, &mut progress, deploy(&story)).await?;
        step(s3, &mut progress, start_sidecar(&mut story, &pod)).await?;
        step(s4, &mut progress, agent_queries(&story)).await?;
        step(s5, &mut progress, masked_reads(&story)).await?;
        step(s6, &mut progress, approved_delete(&story)).await?;
        step(s7, &mut progress, audit_trail(&story)).await?;
        step(s8, &mut progress, metrics(&story)).await?;
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(took = ?begun.elapsed(), "the story ran to its end");
            Ok(story)
        }
        Err(error) => {
            tracing::error!("the story failed; the processes' logs:\n{}", story.logs());
            Err(error)
        }
    }
}

/// Runs one numbered step, logging its start and end; its error says which step failed.
async fn step<T>(
    step: &'static Step,
    progress: &mut impl FnMut(Progress),
    body: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let (number, what) = (step.number, step.title);
    let begun = Instant::now();
    progress(Progress::Begin(step));
    tracing::info!("step {number}: {what}");
    let out = body
        .instrument(tracing::info_span!("step", number))
        .await
        .with_context(|| format!("step {number} failed: {what}"))?;
    let took = begun.elapsed();
    tracing::info!(?took, "step {number} done");
    progress(Progress::Done(step, took));
    Ok(out)
}

impl Story {
    /// The end of each process's log, for a failure report.
    pub fn logs(&self) -> String {
        let mut out = format!(
            "--- end of the operator's log ---\n{}\n",
            self.operator.tail(60)
        );
        if let Some(sidecar) = &self.sidecar {
            out.push_str(&format!(
                "--- end of the sidecar's log ---\n{}\n",
                sidecar.tail(60)
            ));
        }
        out
    }

    /// The control plane (kubeconfigs, kubectl).
    pub fn control_plane(&self) -> &ControlPlane {
        &self.cp
    }

    /// The port the pod's sidecar listens on for the app (the policy's `listenPort`).
    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    /// The sidecar's `/healthz`, `/readyz` and `/metrics` port.
    pub fn sidecar_health_port(&self) -> u16 {
        self.health_port
    }

    /// The operator's `/metrics` port.
    pub fn operator_metrics_port(&self) -> u16 {
        self.operator_metrics
    }

    /// The story's folder: the operator's and sidecar's logs, the rendered policy.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A token the policy trusts for `user` in `groups`, valid for `lifetime`.
    pub fn token(&self, user: &str, groups: &[&str], lifetime: Duration) -> anyhow::Result<String> {
        self.issuer.token_valid_for(
            json!({
                "iss": TOKEN_ISSUER,
                "aud": "dbwarden",
                "sub": format!("demo-{user}"),
                "preferred_username": user,
                "groups": groups,
            }),
            lifetime,
        )
    }

    /// The direct connection to the database, with the login only the sidecar is given.
    pub fn database_conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} dbname=orders user={DB_USER} password={DB_PASSWORD} \
             sslmode=verify-full sslrootcert={}",
            self.pg.port(),
            self.pg.ca_cert_path().display()
        )
    }

    /// The kubeconfig of one of the test bed's people.
    pub fn kubeconfig(&self, user: &User) -> PathBuf {
        self.cp.kubeconfig(user)
    }

    /// Stops everything, processes first, waiting until each is gone; returns the folders that
    /// held the story's files, all removed by then.
    pub async fn shutdown(self) -> anyhow::Result<Vec<PathBuf>> {
        let Story {
            sidecar,
            operator,
            pod_root,
            cp,
            pg,
            collector,
            dir,
            ..
        } = self;
        if let Some(sidecar) = sidecar {
            sidecar.stop().await?;
        }
        operator.stop().await?;
        drop(collector);
        let mut folders = vec![dir.path().to_path_buf(), cp.dir().to_path_buf()];
        if let Some(root) = &pod_root {
            folders.push(root.root().to_path_buf());
        }
        if let Some(pg_dir) = pg.log_path().parent() {
            folders.push(pg_dir.to_path_buf());
        }
        // The test bed's handles stop their servers (signal, wait) and remove their folders.
        drop(pod_root);
        drop(cp);
        drop(pg);
        dir.close().context("removing the story's folder")?;
        let left: Vec<_> = folders.iter().filter(|f| f.exists()).collect();
        ensure!(left.is_empty(), "folders left behind: {left:?}");
        Ok(folders)
    }
}
