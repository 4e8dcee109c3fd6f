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

use anyhow::{Context, bail, ensure};
use dbwarden_testbed::{
    ADMIN, ALICE, Collector, ControlPlane, Postgres, PreparedContainer, User, workspace_root,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};
use serde_json::json;
use tempfile::TempDir;
use tracing::Instrument;

use crate::support::binaries::Binaries;
use crate::support::daemon::{Daemon, free_port, http_get};
use crate::support::jwt::Issuer;
use crate::support::workload::{self, TestDatabase};

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
        title: "every decision reached the audit collector, and the hash chain verifies",
        why: "Every decision was shipped as an audit event naming who asked (the end user, not \
              just the pod), and the events form a hash chain that `dbwarden-audit verify` checks: \
              the proof of who ran what.",
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

/// Step 1: the platform team installs the chart; the operator runs where `webhook.url` points,
/// with the chart's RBAC (impersonating its ServiceAccount).
pub async fn install(bins: Binaries) -> anyhow::Result<Story> {
    let dir = tempfile::Builder::new().prefix("dbwarden-e2e-").tempdir()?;
    let (cp, pg) = tokio::join!(ControlPlane::start(), Postgres::start());
    let (cp, pg) = (cp?, pg?);
    let webhook_port = free_port()?;
    let helm = cp.install_dbwarden_chart(webhook_port).await?;
    ensure!(
        helm.contains("STATUS: deployed"),
        "helm install said:\n{helm}"
    );
    tracing::info!("helm install dbwarden: deployed");

    let sidecar_image = chart_sidecar_image(&cp).await?;
    let metrics_port = free_port()?;
    let mut command = tokio::process::Command::new(&bins.operator);
    command
        .env(
            "KUBECONFIG",
            cp.kubeconfig_impersonating(ControlPlane::DBWARDEN_OPERATOR)?,
        )
        .env("RUST_LOG", "info")
        .args(["--webhook-addr", &format!("127.0.0.1:{webhook_port}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args([
            "--namespace",
            "dbwarden-system",
            "--webhook-names",
            "127.0.0.1",
        ])
        .args(["--sidecar-image", &sidecar_image]);
    let mut operator = Daemon::spawn(
        "dbwarden-operator",
        command,
        &dir.path().join("operator.log"),
    )?;
    operator
        .wait_http_ok(metrics_port, "/readyz", READY_WITHIN)
        .await?;
    Ok(Story {
        sidecar: None,
        operator,
        pod_root: None,
        cp,
        pg,
        bins,
        issuer: Issuer::new("acme-2026")?,
        listen_port: free_port()?,
        health_port: free_port()?,
        operator_metrics: metrics_port,
        collector: Collector::start().await?,
        dir,
    })
}

/// The sidecar image the chart's Deployment would give the operator, from the installed
/// release's values (`sidecar.image`, the tag defaulting to the chart's appVersion).
async fn chart_sidecar_image(cp: &ControlPlane) -> anyhow::Result<String> {
    let args = [
        "get",
        "values",
        "dbwarden",
        "-n",
        "dbwarden-system",
        "--all",
        "-o",
        "json",
    ];
    let values: serde_json::Value =
        serde_json::from_str(&cp.helm(&args).await?.ok("helm get values")?)?;
    let image = &values["sidecar"]["image"];
    let repository = image["repository"]
        .as_str()
        .context("no sidecar.image.repository in the release's values")?;
    let tag = match image["tag"].as_str() {
        Some(tag) if !tag.is_empty() => tag.to_string(),
        _ => {
            let chart: serde_json::Value = serde_yaml::from_str(&std::fs::read_to_string(
                workspace_root().join("charts/dbwarden/Chart.yaml"),
            )?)?;
            chart["appVersion"]
                .as_str()
                .context("Chart.yaml has no appVersion")?
                .to_string()
        }
    };
    Ok(format!("{repository}:{tag}"))
}

/// Step 2: the orders team's setup, by kubectl as examples/README.md walks it; returns the pod
/// as admitted.
pub async fn deploy(story: &Story) -> anyhow::Result<Pod> {
    let (cp, pg) = (&story.cp, &story.pg);

    // The database the example's Secret logs into, with the tables its rules name.
    pg.psql_superuser(&format!(
        "CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}';
         CREATE DATABASE orders OWNER {DB_USER};"
    ))
    .await?;
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=orders user={DB_USER} password={DB_PASSWORD} \
         sslmode=verify-full sslrootcert={}",
        pg.port(),
        pg.ca_cert_path().display()
    );
    dbwarden_testbed::psql(
        &conninfo,
        "CREATE TABLE public.orders (id int PRIMARY KEY, customer text NOT NULL,
                                     status text NOT NULL, total numeric(10,2) NOT NULL);
         INSERT INTO public.orders VALUES (1, 'ada', 'paid', 120.00), (2, 'grace', 'shipped', 35.50),
                                          (3, 'alan', 'pending', 9.99);
         CREATE TABLE public.order_items (order_id int REFERENCES public.orders, sku text, qty int);
         CREATE TABLE public.payments (id int PRIMARY KEY, order_id int REFERENCES public.orders,
                                       card_number text NOT NULL);
         INSERT INTO public.payments VALUES (1, 1, '4111111111111111'), (2, 2, '5500005555555559');",
    )
    .await?
    .ok("creating the orders tables")?;

    let kubectl = |args: &'static [&'static str]| cp.kubectl_ok(&ADMIN, args);
    kubectl(&["create", "namespace", NAMESPACE]).await?;
    kubectl(&["create", "serviceaccount", SERVICE_ACCOUNT, "-n", NAMESPACE]).await?;
    cp.kubectl_ok(
        &ADMIN,
        &[
            "-n",
            NAMESPACE,
            "create",
            "secret",
            "generic",
            "orders-db-login",
            &format!("--from-literal=username={DB_USER}"),
            &format!("--from-literal=password={DB_PASSWORD}"),
        ],
    )
    .await?;
    cp.kubectl_ok(
        &ADMIN,
        &[
            "-n",
            NAMESPACE,
            "create",
            "secret",
            "generic",
            "orders-db-ca",
            &format!("--from-file=ca.crt={}", pg.ca_cert_path().display()),
        ],
    )
    .await?;

    let example =
        std::fs::read_to_string(workspace_root().join("examples/production-guardrails.yaml"))?;
    let policy = workload::production_policy(
        &example,
        &TestDatabase {
            port: pg.port(),
            ca_secret: ("orders-db-ca", "ca.crt"),
            listen_port: story.listen_port,
            jwks: story.issuer.jwks(),
            audit_sink: story.collector.url(),
        },
    )?;
    let policy_file = story.dir.path().join("orders-production.yaml");
    std::fs::write(&policy_file, &policy)?;
    cp.kubectl_ok(&ADMIN, &["apply", "-f", &policy_file.display().to_string()])
        .await?;
    cp.kubectl_ok(
        &ADMIN,
        &[
            "wait",
            "--for=condition=Ready",
            &format!("dap/{POLICY}"),
            "-n",
            NAMESPACE,
            "--timeout=60s",
        ],
    )
    .await?;
    let table = cp
        .kubectl_ok(&ADMIN, &["get", "dap", "-n", NAMESPACE])
        .await?;
    tracing::info!("kubectl get dap -n {NAMESPACE}\n{table}");
    ensure!(
        table
            .lines()
            .any(|l| l.starts_with(POLICY) && l.contains("True")),
        "the policy is not READY True:\n{table}"
    );

    // The example Deployment, then its pod as the ReplicaSet controller would create it.
    let deployment_file = workspace_root().join("examples/annotated-deployment.yaml");
    cp.kubectl_ok(
        &ADMIN,
        &["apply", "-f", &deployment_file.display().to_string()],
    )
    .await?;
    let deployment = Api::<Deployment>::namespaced(cp.admin_client(), NAMESPACE)
        .get(SERVICE_ACCOUNT)
        .await?;
    let pod = workload::create_replica(&cp.admin_client(), &deployment).await?;
    let pod_name = pod.name_any();
    let init_containers = cp
        .kubectl_ok(
            &ADMIN,
            &[
                "get",
                "pod",
                &pod_name,
                "-n",
                NAMESPACE,
                "-o",
                "jsonpath={.spec.initContainers[*].name}",
            ],
        )
        .await?;
    tracing::info!(pod = %pod_name, %init_containers, "pod admitted");
    ensure!(
        init_containers.split_whitespace().any(|c| c == SIDECAR),
        "the webhook did not inject {SIDECAR} into {pod_name}: init containers {init_containers:?}"
    );

    // As the chart's NOTES say: the DBAs decide approval requests in this namespace ...
    cp.kubectl_ok(
        &ADMIN,
        &[
            "create",
            "rolebinding",
            "dba-approve",
            "-n",
            NAMESPACE,
            "--clusterrole=dbwarden-approver",
            "--group=dba",
        ],
    )
    .await?;
    // ... and the workload's ServiceAccount reads its policies and files requests.
    cp.kubectl_ok(
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
    .await?;
    let can_i = cp
        .kubectl(
            &ADMIN,
            &[
                "auth",
                "can-i",
                "watch",
                "databaseaccesspolicies.dbwarden.io",
                "-n",
                NAMESPACE,
                &format!("--as=system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"),
            ],
        )
        .await?;
    ensure!(
        can_i.stdout.trim() == "yes",
        "the sidecar's ServiceAccount cannot watch policies: {} {}",
        can_i.stdout,
        can_i.stderr
    );
    Ok(pod)
}

/// Step 3: what the kubelet would run for the injected container, run with the real binary.
pub async fn start_sidecar(story: &mut Story, pod: &Pod) -> anyhow::Result<()> {
    let mut container = story.cp.prepare_container(pod, SIDECAR).await?;
    ensure!(
        container.env_value("DBWARDEN_POLICIES") == Some(POLICY),
        "the sidecar was injected for {:?}, not {POLICY}",
        container.env_value("DBWARDEN_POLICIES")
    );
    // Every pod has its own network namespace; here all share the host's, so the injected
    // health address (0.0.0.0:<fixed port>) moves to a free loopback port.
    let injected = container
        .env_value("DBWARDEN_HEALTH_ADDR")
        .context("no DBWARDEN_HEALTH_ADDR injected")?
        .to_string();
    let health_port = story.health_port;
    container.set_env("DBWARDEN_HEALTH_ADDR", format!("127.0.0.1:{health_port}"));
    tracing::info!(
        root = %container.root().display(),
        %injected,
        health_port,
        args = ?container.args,
        "running the sidecar as injected"
    );

    // The pod's ServiceAccount token, in-cluster, becomes a kubeconfig acting as it.
    let kubeconfig = story.cp.kubeconfig_impersonating(&format!(
        "system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
    ))?;
    let mut command = container.command(&story.bins.sidecar);
    command
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info");
    let log: PathBuf = story.dir.path().join("sidecar.log");
    let mut sidecar = Daemon::spawn("dbwarden-sidecar", command, &log)?;
    let ready = sidecar
        .wait_http_ok(health_port, "/readyz", READY_WITHIN)
        .await;
    story.sidecar = Some(sidecar);
    story.pod_root = Some(container);
    ready
}

/// The AI agent's connection: the end user's token as its password.
async fn agent(story: &Story) -> anyhow::Result<tokio_postgres::Client> {
    let token = story.issuer.token(json!({
        "iss": TOKEN_ISSUER,
        "aud": "dbwarden",
        "sub": "5b1f0c6e-agent",
        "preferred_username": AGENT_USER,
        "groups": [AGENT_GROUP],
    }))?;
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=orders user={AGENT_USER} password={token} sslmode=disable \
         application_name=ops-copilot",
        story.listen_port
    );
    let (agent, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .context("the agent could not connect through the sidecar")?;
    tokio::spawn(connection);
    Ok(agent)
}

/// The orders service's own connection: no token (an empty password), so it is the pod's
/// ServiceAccount.
async fn service(story: &Story) -> anyhow::Result<tokio_postgres::Client> {
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=orders user=orders-api password='' sslmode=disable",
        story.listen_port
    );
    let (service, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .context("the service could not connect through the sidecar")?;
    tokio::spawn(connection);
    Ok(service)
}

/// Step 4: the agent connects with the end user's token as its password.
pub async fn agent_queries(story: &Story) -> anyhow::Result<()> {
    let agent = agent(story).await?;

    let rows = agent
        .query(
            "SELECT id, customer, status FROM public.orders ORDER BY id",
            &[],
        )
        .await
        .context("the agent's SELECT was refused")?;
    let seen: Vec<(i32, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    tracing::info!(?seen, "SELECT through the sidecar");
    ensure!(
        seen == [
            (1, "ada".into(), "paid".into()),
            (2, "grace".into(), "shipped".into()),
            (3, "alan".into(), "pending".into())
        ],
        "unexpected rows: {seen:?}"
    );

    refused(&agent, "DROP TABLE public.orders", "guardrails.blockDrop").await?;
    refused(
        &agent,
        "DELETE FROM public.orders",
        "guardrails.requireWhereForUpdateDelete",
    )
    .await?;

    // And nothing happened to the data.
    let count: i64 = agent
        .query_one("SELECT count(*) FROM public.orders", &[])
        .await?
        .get(0);
    ensure!(
        count == 3,
        "public.orders has {count} rows after the refusals"
    );

    // The identity is the token's: a token for someone no rule names reads nothing.
    let outsider = story.issuer.token(json!({
        "iss": TOKEN_ISSUER,
        "aud": "dbwarden",
        "sub": "9d2e-contractor",
        "preferred_username": OUTSIDER,
        "groups": ["contractors"],
    }))?;
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} dbname=orders user={OUTSIDER} password={outsider} \
             sslmode=disable",
            story.listen_port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .context("a well-signed token was refused at login")?;
    tokio::spawn(connection);
    refused(&client, "SELECT id FROM public.orders", OUTSIDER).await?;
    Ok(())
}

/// `sql` fails with SQLSTATE 42501 and a message naming the policy and `why` (the guardrail,
/// or the identity no rule allows).
async fn refused(client: &tokio_postgres::Client, sql: &str, why: &str) -> anyhow::Result<()> {
    let error = match client.batch_execute(sql).await {
        Ok(()) => bail!("{sql:?} ran; it should have been refused ({why})"),
        Err(error) => error,
    };
    let db = error
        .as_db_error()
        .with_context(|| format!("{sql:?} failed without a database error: {error}"))?;
    tracing::info!(
        sql,
        code = db.code().code(),
        message = db.message(),
        "refused"
    );
    ensure!(
        db.code().code() == "42501",
        "{sql:?}: SQLSTATE {} ({}), expected 42501",
        db.code().code(),
        db.message()
    );
    ensure!(
        db.message().contains(POLICY) && db.message().contains(why),
        "{sql:?}: the message does not name {POLICY} and {why}: {}",
        db.message()
    );
    Ok(())
}

/// Step 5: `masking.columns` keeps the last 4 digits of card numbers for everyone the policy
/// does not exempt; the orders-api ServiceAccount is exempt.
pub async fn masked_reads(story: &Story) -> anyhow::Result<()> {
    let sql = "SELECT card_number FROM public.payments ORDER BY id";
    let cards = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    };
    let seen = cards(agent(story).await?.query(sql, &[]).await?);
    tracing::info!(?seen, "the agent's SELECT of card numbers");
    ensure!(seen.len() == 2, "expected two payments, got {seen:?}");
    for (card, last4) in seen.iter().zip(["1111", "5559"]) {
        ensure!(
            card.ends_with(last4) && !card.contains("41111111") && !card.contains("55000055"),
            "card number not masked to its last 4 digits: {card:?}"
        );
    }
    let whole = cards(service(story).await?.query(sql, &[]).await?);
    tracing::info!(?whole, "the exempt service's SELECT of card numbers");
    ensure!(
        whole == ["4111111111111111", "5500005555555559"],
        "the exempt service saw {whole:?}"
    );
    Ok(())
}

/// Step 6: the example's `deletes` rule (hold mode, one DBA) on the service's own DELETE.
pub async fn approved_delete(story: &Story) -> anyhow::Result<()> {
    let service = service(story).await?;
    let held = tokio::spawn(async move {
        service
            .execute("DELETE FROM public.orders WHERE id = 3", &[])
            .await
    });
    let cp = &story.cp;
    let pending = "jsonpath={.items[?(@.status.phase==\"Pending\")].metadata.name}";
    let deadline = Instant::now() + Duration::from_secs(30);
    let name = loop {
        let names = cp
            .kubectl_ok(&ADMIN, &["get", "ar", "-n", NAMESPACE, "-o", pending])
            .await?;
        if let Some(name) = names.split_whitespace().next() {
            break name.to_string();
        }
        ensure!(
            Instant::now() < deadline,
            "no Pending ApprovalRequest appeared"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let listing = cp
        .kubectl_ok(&ADMIN, &["get", "ar", "-n", NAMESPACE, "-o", "wide"])
        .await?;
    tracing::info!("kubectl get ar -n {NAMESPACE} -o wide\n{listing}");
    ensure!(
        !held.is_finished(),
        "the DELETE did not wait for its approval"
    );

    let approve = [
        "patch",
        "ar",
        name.as_str(),
        "-n",
        NAMESPACE,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Approved"}}"#,
    ];
    let out = cp.kubectl_ok(&ALICE, &approve).await?;
    tracing::info!("alice: kubectl patch ar {name} ...: {}", out.trim());
    let deleted = tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .context("the approved DELETE never finished")??
        .context("the approved DELETE failed")?;
    ensure!(deleted == 1, "the approved DELETE removed {deleted} rows");
    let phase = cp
        .kubectl_ok(
            &ADMIN,
            &[
                "get",
                "ar",
                &name,
                "-n",
                NAMESPACE,
                "-o",
                "jsonpath={.status.phase} {.status.decisions[0].by}",
            ],
        )
        .await?;
    tracing::info!(request = %name, status = %phase, "after the statement ran");
    ensure!(
        phase.trim() == "Executed alice",
        "the request shows {phase:?}"
    );
    let left: i64 = agent(story)
        .await?
        .query_one("SELECT count(*) FROM public.orders", &[])
        .await?
        .get(0);
    ensure!(
        left == 2,
        "public.orders has {left} rows after the approved DELETE"
    );
    Ok(())
}

/// Step 7: the audit events at the collector.
pub async fn audit_trail(story: &Story) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let events: Vec<serde_json::Value> = loop {
        let events: Vec<serde_json::Value> = story
            .collector
            .lines()
            .iter()
            .map(|line| serde_json::from_str(line))
            .collect::<Result<_, _>>()?;
        let requested = events
            .iter()
            .any(|e| e["operation"] == "delete" && e["decision"] == "approval_requested");
        if requested || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tracing::info!(events = events.len(), "audit events at the collector");
    let refused_drop = events.iter().find(|e| {
        e["decision"] == "denied"
            && e["identity"]["user"] == AGENT_USER
            && e["rule"].as_str().is_some_and(|r| r.contains("blockDrop"))
    });
    ensure!(
        refused_drop.is_some(),
        "no event records the agent's refused DROP TABLE"
    );
    ensure!(
        events
            .iter()
            .any(|e| e["decision"] == "approval_requested" && e["operation"] == "delete"),
        "no event records the DELETE waiting for approval"
    );
    let lines = story.collector.lines().join("\n");
    let report = dbwarden_audit::verify(lines.as_bytes())?;
    tracing::info!(?report, "dbwarden-audit verify");
    ensure!(
        report.problems.is_empty(),
        "the audit chain does not verify: {:?}",
        report.problems
    );
    Ok(())
}

/// Step 8: what Prometheus would scrape.
pub async fn metrics(story: &Story) -> anyhow::Result<()> {
    let sidecar = http_get(story.health_port, "/metrics")
        .await
        .context("the sidecar's /metrics did not answer")?;
    for needle in [
        "dbwarden_statements_total{decision=\"denied\"",
        "rule=\"guardrails.blockDrop\"} 1",
        "dbwarden_approvals_total{phase=\"pending\"} 1",
        "dbwarden_masked_values_total",
        "dbwarden_audit_events_shipped_total",
    ] {
        ensure!(
            sidecar.contains(needle),
            "the sidecar's /metrics lacks {needle}:\n{sidecar}"
        );
    }
    let operator = http_get(story.operator_metrics, "/metrics")
        .await
        .context("the operator's /metrics did not answer")?;
    ensure!(
        operator.contains("dbwarden_operator_reconciliations_total{controller=\"approval\"}"),
        "the operator's /metrics lacks its approval reconciles:\n{operator}"
    );
    Ok(())
}
