//! Steps 1-3: dbwarden installed with Helm, the team's policy and pod, the sidecar started as injected.

use std::path::PathBuf;

use anyhow::{Context, ensure};
use dbwarden_testbed::{ADMIN, Collector, ControlPlane, Postgres, free_port, workspace_root};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};

use crate::support::binaries::Binaries;
use crate::support::daemon::Daemon;
use crate::support::jwt::Issuer;
use crate::support::workload::{self, TestDatabase};

use super::*;

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
    // The API server's authorizer learns of a new binding from its informer: give it a moment.
    let service_account = format!("--as=system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}");
    let begun = std::time::Instant::now();
    loop {
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
                    &service_account,
                ],
            )
            .await?;
        if can_i.stdout.trim() == "yes" {
            break;
        }
        ensure!(
            begun.elapsed() < std::time::Duration::from_secs(10),
            "the sidecar's ServiceAccount cannot watch policies: {} {}",
            can_i.stdout,
            can_i.stderr
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
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
