//! Policies come from the API server: nothing is served before the first list, changes apply
//! to open sessions, policies selecting other pods do not apply, a deleted policy closes its
//! database, and while the API server is gone the
//! last policies seen stay in force.

use std::time::Duration;

use dbwarden_testbed::{ADMIN, APP, free_port};
use tokio::process::Command;

use crate::support::{Cluster, NAMESPACE, PodSidecar, TestResult, connect, eventually, sqlstate};

const SELECT_ONLY: &str = "    - name: api-read
      subjects: {serviceAccounts: [api]}
      operations: [select]
      tables: ['public.*']";

/// Refuses every read: in force, it would stop the SELECTs below.
const DENY_READS: &str = "    - name: no-reads
      subjects: {serviceAccounts: [api]}
      action: deny
      operations: [select]
      tables: ['*']";

const SELECT_AND_INSERT: &str = "    - name: api-write
      subjects: {serviceAccounts: [api]}
      operations: [select, insert]
      tables: ['public.*']";

#[tokio::test]
async fn serves_nothing_until_policies_load_then_follows_the_api_server() -> TestResult {
    let cluster = Cluster::start(false).await;
    cluster
        .pg
        .psql(
            &APP,
            "CREATE TABLE public.orders (id int PRIMARY KEY, total numeric);
             INSERT INTO public.orders VALUES (1, 9.5);",
        )
        .await?
        .ok("creating the table")?;
    let port = free_port()?;
    cluster
        .cp
        .apply(&ADMIN, &cluster.policy("orders", port, SELECT_ONLY, ""))
        .await?;

    // Without its RBAC the sidecar cannot list policies: it opens no port, so the app (which
    // waits for readiness) never reaches the database ungoverned.
    let sidecar = PodSidecar::start(&cluster, &["orders"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sidecar.health_status("/readyz").await, None);
    assert!(
        connect(port).await.is_err(),
        "the listener must stay closed"
    );

    cluster.bind_sidecar_role().await;
    sidecar.wait_ready(Duration::from_secs(60)).await;
    let app = connect(port).await?;
    let total: String = app
        .query_one("SELECT total::text FROM public.orders WHERE id = 1", &[])
        .await?
        .get(0);
    assert_eq!(total, "9.5");
    let refused = app
        .execute("INSERT INTO public.orders VALUES (2, 1)", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&refused), Some("42501"), "{refused:?}");

    // A policy for other pods (another workloadSelector) does not apply to this one. It is
    // applied before the edit below, so once the edit is seen, so was it.
    let batch_only = cluster
        .policy("batch-readers", port, DENY_READS, "")
        .replace("matchLabels: {app: api}", "matchLabels: {app: batch}");
    assert!(batch_only.contains("{app: batch}"), "{batch_only}");
    cluster.cp.apply(&ADMIN, &batch_only).await?;

    // A policy edit applies to the open session within the watch's latency.
    cluster
        .cp
        .apply(
            &ADMIN,
            &cluster.policy("orders", port, SELECT_AND_INSERT, ""),
        )
        .await?;
    assert!(
        eventually(Duration::from_secs(20), || async {
            app.execute(
                "INSERT INTO public.orders VALUES (2, 1) ON CONFLICT DO NOTHING",
                &[],
            )
            .await
            .is_ok()
        })
        .await,
        "the updated policy never allowed the INSERT"
    );
    app.query("SELECT id FROM public.orders", &[])
        .await
        .map_err(|e| format!("a policy selecting other pods was applied: {e:?}"))?;
    cluster
        .cp
        .kubectl_ok(&ADMIN, &["delete", "dap", "batch-readers", "-n", NAMESPACE])
        .await?;

    // Deleting the policy leaves the database ungoverned: everything is refused.
    cluster
        .cp
        .kubectl_ok(&ADMIN, &["delete", "dap", "orders", "-n", NAMESPACE])
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let last = loop {
        if let Err(e) = app.query("SELECT id FROM public.orders", &[]).await
            && sqlstate(&e) == Some("42501")
        {
            break e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SELECT still allowed after the policy was deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(last.contains("no dbwarden policy governs"), "{last}");

    // Back again; then the API server goes away: the last policies seen stay in force.
    cluster
        .cp
        .apply(&ADMIN, &cluster.policy("orders", port, SELECT_ONLY, ""))
        .await?;
    assert!(
        eventually(Duration::from_secs(20), || async {
            app.query("SELECT id FROM public.orders", &[]).await.is_ok()
        })
        .await,
        "the re-applied policy never allowed the SELECT"
    );
    let (_etcd, apiserver) = cluster.cp.pids();
    let killed = Command::new("kill")
        .args(["-9", &apiserver.to_string()])
        .status()
        .await?;
    assert!(killed.success());
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..3 {
        app.query("SELECT id FROM public.orders", &[]).await?;
        let refused = app
            .execute("INSERT INTO public.orders VALUES (3, 1)", &[])
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&refused), Some("42501"), "{refused:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // New connections are governed the same way.
    let late = connect(port).await?;
    late.query("SELECT id FROM public.orders", &[]).await?;
    Ok(())
}

#[tokio::test]
async fn refuses_to_start_without_the_injected_environment() -> TestResult {
    // Everything of the contract but the namespace.
    let out = Command::new(env!("CARGO_BIN_EXE_dbwarden-sidecar"))
        .arg("--kubernetes")
        .env_remove("DBWARDEN_POD_NAMESPACE")
        .envs([
            ("DBWARDEN_POD_NAME", "api-1"),
            ("DBWARDEN_POD_UID", "uid"),
            ("DBWARDEN_SERVICE_ACCOUNT", "api"),
            ("DBWARDEN_POD_LABELS_FILE", "/nonexistent"),
            ("DBWARDEN_POLICIES", "orders"),
            ("DBWARDEN_SECRETS_DIR", "/nonexistent"),
            ("DBWARDEN_SPOOL_DIR", "/nonexistent"),
            ("DBWARDEN_HEALTH_ADDR", "127.0.0.1:0"),
        ])
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("DBWARDEN_POD_NAMESPACE") && stderr.contains("is not set"),
        "{stderr}"
    );
    Ok(())
}
