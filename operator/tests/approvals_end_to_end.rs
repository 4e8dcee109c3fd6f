//! Approvals end to end: the sidecar (in Kubernetes mode, in-process, as the pod's
//! ServiceAccount) files ApprovalRequests, people decide them with kubectl under the operator's
//! four-eyes webhook, and the held or retried statement runs once, or fails saying why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use dbwarden_crds::{ApprovalPhase, ApprovalRequest};
use dbwarden_sidecar::cluster::{self, ClusterSidecar, PodEnv};
use dbwarden_testbed::{ADMIN, ALICE, APP, CAROL, ControlPlane, PodFiles, Postgres, free_port};
use kube::Api;
use support::{decide, installed};

mod support;

const NAMESPACE: &str = "payments";

/// Everything a test needs: the cluster with the operator, PostgreSQL, the sidecar's files.
struct World {
    cp: ControlPlane,
    pg: Postgres,
    _operator: support::Operator,
    port: u16,
    pod: PodFiles,
}

impl World {
    async fn start(approvals: &str) -> Self {
        let ((cp, operator), pg) = tokio::join!(installed(&[NAMESPACE], &[]), Postgres::start());
        let pg = pg.unwrap();
        for (name, role, subject) in [
            (
                "dba-approve",
                "dbwarden-approver",
                "--group=dba".to_string(),
            ),
            (
                "orders-api-sidecar",
                "dbwarden-sidecar",
                format!("--serviceaccount={NAMESPACE}:orders-api"),
            ),
        ] {
            cp.kubectl_ok(
                &ADMIN,
                &[
                    "create",
                    "rolebinding",
                    name,
                    "-n",
                    NAMESPACE,
                    &format!("--clusterrole={role}"),
                    &subject,
                ],
            )
            .await
            .unwrap();
        }
        pg.psql(
            &APP,
            "CREATE TABLE public.archive (id int); CREATE TABLE public.orders (id int);
             INSERT INTO public.orders VALUES (1), (2);",
        )
        .await
        .unwrap()
        .ok("tables")
        .unwrap();
        let port = free_port().unwrap();
        let policy = format!(
            "apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata: {{name: orders, namespace: {NAMESPACE}}}
spec:
  database:
    host: 127.0.0.1
    port: {pg_port}
    name: app
    environment: staging
    credentialsSecretRef: {{name: orders-db}}
    tls: {{mode: disable}}
  workloadSelector: {{matchLabels: {{app: orders-api}}}}
  listenPort: {port}
  rules:
    - {{name: api, subjects: {{serviceAccounts: [orders-api]}}, operations: [read, write, ddl], tables: ['public.*']}}
  guardrails: {{blockDrop: false, blockTruncate: false, requireWhereForUpdateDelete: false}}
  approvals:
{approvals}",
            pg_port = pg.port(),
        );
        cp.apply(&ADMIN, &policy).await.unwrap();

        let pod = PodFiles::new(&[("app", "orders-api")], "orders-db", &APP).unwrap();
        Self {
            cp,
            pg,
            _operator: operator,
            port,
            pod,
        }
    }

    /// The sidecar as injected into an orders-api pod, with the pod ServiceAccount's RBAC.
    async fn sidecar(&self) -> ClusterSidecar {
        let env = PodEnv {
            pod: "orders-api-7d9f-x2x4q".into(),
            namespace: NAMESPACE.into(),
            uid: "7f1f4c1e-0000-4000-8000-000000000002".into(),
            service_account: "orders-api".into(),
            labels_file: self.pod.labels_file(),
            policies: vec!["orders".into()],
            secrets_dir: self.pod.secrets_dir(),
            spool_dir: self.pod.dir().to_owned(),
            health_addr: "127.0.0.1:0".parse().unwrap(),
        };
        let kubeconfig = self
            .cp
            .kubeconfig_impersonating(&format!("system:serviceaccount:{NAMESPACE}:orders-api"))
            .unwrap();
        let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let metrics = std::sync::Arc::new(dbwarden_sidecar::metrics::Metrics::new().unwrap());
        cluster::start(env, client, metrics).await.unwrap()
    }

    /// The app's connection: no password, so it runs as the pod's ServiceAccount.
    async fn app(&self) -> tokio_postgres::Client {
        let conninfo = format!(
            "host=127.0.0.1 port={} user=orders dbname=app sslmode=disable",
            self.port
        );
        let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    async fn requests(&self) -> Vec<ApprovalRequest> {
        let api: Api<ApprovalRequest> = Api::namespaced(self.cp.admin_client(), NAMESPACE);
        api.list(&Default::default()).await.unwrap().items
    }

    /// Waits for exactly one request in `phase`, and returns it.
    async fn one_request(&self, phase: ApprovalPhase) -> ApprovalRequest {
        let start = Instant::now();
        loop {
            let mut found: Vec<_> = self
                .requests()
                .await
                .into_iter()
                .filter(|r| r.status.as_ref().map(|s| s.phase).unwrap_or_default() == phase)
                .collect();
            if found.len() == 1 {
                return found.remove(0);
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "expected one {phase:?} request, found {}",
                found.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn table_exists(&self, table: &str) -> bool {
        let out = self
            .pg
            .psql(&APP, &format!("SELECT to_regclass('{table}') IS NOT NULL"))
            .await
            .unwrap()
            .ok("to_regclass")
            .unwrap();
        out.trim() == "t"
    }
}

fn name_of(request: &ApprovalRequest) -> String {
    request.metadata.name.clone().unwrap()
}

fn refusal(result: Result<u64, tokio_postgres::Error>) -> String {
    let error = result.expect_err("the statement ran");
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42501", "{}", db.message());
    db.message().to_string()
}

#[tokio::test]
async fn held_statements_run_after_approval_and_fail_on_denial_or_expiry() {
    let world = World::start(
        "    - {name: drops, when: {operations: [drop]}, approvers: {groups: [dba]}, mode: hold, holdTimeout: 60s}
    - {name: truncates, when: {operations: [truncate]}, approvers: {users: [alice]}, mode: hold, holdTimeout: 60s}
    - {name: alters, when: {operations: [alter]}, approvers: {groups: [dba]}, mode: hold, holdTimeout: 8s, ttl: 12s}",
    )
    .await;
    let _sidecar = world.sidecar().await;
    let app = world.app().await;

    // 1. DROP TABLE waits; the request names who asked and what.
    // A psql session, as a person or a script would run it (no password: the workload).
    let conninfo = format!(
        "host=127.0.0.1 port={} user=orders dbname=app sslmode=disable",
        world.port
    );
    let held = tokio::spawn(async move {
        dbwarden_testbed::psql(
            &conninfo,
            "/* reason: OPS-42 retire the archive */ DROP TABLE public.archive",
        )
        .await
    });
    let request = world.one_request(ApprovalPhase::Pending).await;
    let name = name_of(&request);
    assert_eq!(request.spec.rule, "drops");
    assert_eq!(
        request.spec.requester.user,
        format!("system:serviceaccount:{NAMESPACE}:orders-api")
    );
    assert_eq!(request.spec.tables, ["public.archive"]);
    assert_eq!(
        request.spec.reason.as_deref(),
        Some("OPS-42 retire the archive")
    );
    assert!(!held.is_finished() && world.table_exists("public.archive").await);

    // A non-approver cannot decide; a DBA can, and the statement runs.
    let refused = decide(&world.cp, &CAROL, NAMESPACE, &name, "Approved").await;
    assert!(!refused.status.success());
    decide(&world.cp, &ALICE, NAMESPACE, &name, "Approved")
        .await
        .ok("alice approves")
        .unwrap();
    let psql = tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .expect("the held statement never finished")
        .unwrap()
        .unwrap();
    assert!(psql.status.success(), "psql: {}", psql.stderr);
    assert!(
        !world.table_exists("public.archive").await,
        "the table is still there"
    );
    let executed = world.one_request(ApprovalPhase::Executed).await;
    let status = executed.status.unwrap();
    assert!(status.executed_at.is_some());
    assert_eq!(status.decisions[0].by, "alice");

    // 2. A denial reaches the held client, naming who denied.
    let (result, ()) = tokio::join!(app.execute("TRUNCATE public.orders", &[]), async {
        let request = world.one_request(ApprovalPhase::Pending).await;
        decide(&world.cp, &ALICE, NAMESPACE, &name_of(&request), "Denied")
            .await
            .ok("deny")
            .unwrap();
    });
    let message = refusal(result);
    assert!(message.contains("denied by alice"), "{message}");

    // 3. Nobody decides: the hold timeout (8 s) fails the statement and the request stays
    // pending; a retry waits on that request (up to 8 s more), and its expiry (12 s after it was
    // filed) reaches the client. The retry must start before the expiry: 4 s of margin for a
    // busy machine. The table is untouched.
    let alter = "ALTER TABLE public.orders ADD COLUMN note text";
    let message = refusal(app.execute(alter, &[]).await);
    assert!(message.contains("hold timeout"), "{message}");
    world.one_request(ApprovalPhase::Pending).await;
    let message = refusal(app.execute(alter, &[]).await);
    assert!(message.contains("expired"), "{message}");
    let columns = world
        .pg
        .psql(
            &APP,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders'",
        )
        .await
        .unwrap()
        .ok("columns")
        .unwrap();
    assert_eq!(columns.trim(), "1");
}

#[tokio::test]
async fn rejected_statements_run_once_after_approval_also_across_a_sidecar_restart() {
    let world = World::start(
        "    - {name: deletes, when: {operations: [delete]}, approvers: {groups: [dba]}, mode: reject, requireReason: true}",
    )
    .await;
    let sidecar = world.sidecar().await;
    let app = world.app().await;
    let delete = "DELETE FROM public.orders WHERE id = 1";

    // The rule needs a reason.
    let message = refusal(app.execute(delete, &[]).await);
    assert!(message.contains("requires a reason"), "{message}");
    assert!(world.requests().await.is_empty());

    // With one (SET dbwarden.reason), the refusal names the request; a retry reuses it.
    app.batch_execute("SET dbwarden.reason = 'refund for order 1'")
        .await
        .unwrap();
    let message = refusal(app.execute(delete, &[]).await);
    let request = world.one_request(ApprovalPhase::Pending).await;
    let name = name_of(&request);
    assert!(
        message.contains(&format!("kubectl get ar -n {NAMESPACE} {name}")),
        "{message}"
    );
    assert_eq!(request.spec.reason.as_deref(), Some("refund for order 1"));
    refusal(app.execute(delete, &[]).await);
    assert_eq!(world.requests().await.len(), 1);

    // The sidecar restarts while the request is pending; the approval still counts.
    sidecar.handle.shutdown().await;
    sidecar.watch.abort();
    drop(app);
    let _sidecar = world.sidecar().await;
    decide(&world.cp, &ALICE, NAMESPACE, &name, "Approved")
        .await
        .ok("approve")
        .unwrap();
    world.one_request(ApprovalPhase::Approved).await;

    let app = world.app().await;
    app.batch_execute("SET dbwarden.reason = 'refund for order 1'")
        .await
        .unwrap();
    assert_eq!(
        app.execute(delete, &[]).await.unwrap(),
        1,
        "the approved DELETE did not run"
    );
    world.one_request(ApprovalPhase::Executed).await;

    // Once: the same statement needs a new approval.
    let message = refusal(app.execute(delete, &[]).await);
    assert!(message.contains("kubectl get ar"), "{message}");
    world.one_request(ApprovalPhase::Pending).await;
}
