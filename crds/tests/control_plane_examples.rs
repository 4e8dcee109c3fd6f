//! The examples on a real control plane (etcd + kube-apiserver + kubectl): the CRDs install, every
//! file in examples/ applies and reads back equal, and `kubectl get` shows the printer columns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use dbwarden_crds::{ApprovalRequest, DatabaseAccessPolicy};
use dbwarden_testbed::ADMIN;
use kube::api::Api;
use serde_json::Value;
use support::cluster::{TestResult, control_plane, examples, table};

#[tokio::test]
async fn examples_apply_read_back_equal_and_print_columns() -> TestResult {
    let cp = control_plane().await?;
    let established = cp
        .kubectl_ok(
            &ADMIN,
            &[
                "get",
                "crd",
                "databaseaccesspolicies.dbwarden.io",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
            ],
        )
        .await?;
    assert_eq!(established, "True");

    for file in examples() {
        let path = file.display().to_string();
        cp.kubectl_ok(
            &ADMIN,
            &["apply", "--server-side", "--dry-run=server", "-f", &path],
        )
        .await?;
        let out = cp
            .kubectl_ok(&ADMIN, &["apply", "--server-side", "-f", &path])
            .await?;
        assert!(out.contains("serverside-applied"), "{path}: {out}");
    }

    // Read back through kube-rs: equal to the files as the Rust types parse them.
    let client = cp.admin_client();
    let policies: Api<DatabaseAccessPolicy> = Api::namespaced(client.clone(), "payments");
    let approvals: Api<ApprovalRequest> = Api::namespaced(client.clone(), "payments");
    let mut compared = 0;
    for file in examples() {
        let text = std::fs::read_to_string(&file)?;
        let value: Value = serde_yaml::from_str(&text)?;
        let name = value["metadata"]["name"].as_str().unwrap();
        match value["kind"].as_str() {
            Some("DatabaseAccessPolicy") => {
                let local: DatabaseAccessPolicy = serde_json::from_value(value.clone())?;
                assert_eq!(
                    policies.get(name).await?.spec,
                    local.spec,
                    "{}",
                    file.display()
                );
                compared += 1;
            }
            Some("ApprovalRequest") => {
                let local: ApprovalRequest = serde_json::from_value(value.clone())?;
                assert_eq!(
                    approvals.get(name).await?.spec,
                    local.spec,
                    "{}",
                    file.display()
                );
                compared += 1;
            }
            Some("Deployment") => {
                let annotation = cp
                    .kubectl_ok(
                        &ADMIN,
                        &[
                            "get",
                            "deploy",
                            name,
                            "-n",
                            "payments",
                            "-o",
                            "jsonpath={.spec.template.metadata.annotations.dbwarden\\.io/inject}",
                        ],
                    )
                    .await?;
                assert_eq!(annotation, "true");
            }
            other => panic!("{}: unexpected kind {other:?}", file.display()),
        }
    }
    assert!(compared >= 3, "compared {compared} dbwarden objects");

    // What the operator would write, so that the Ready and Phase columns have values.
    cp.kubectl_ok(&ADMIN, &["patch", "dap", "orders-production", "-n", "payments", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"True","reason":"Valid","message":"policy served to 2 pods","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#]).await?;
    cp.kubectl_ok(
        &ADMIN,
        &[
            "patch",
            "ar",
            "orders-production-deletes-7f3a9c",
            "-n",
            "payments",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Pending"}}"#,
        ],
    )
    .await?;

    let dap = table(
        &cp.kubectl_ok(&ADMIN, &["get", "dap", "-n", "payments"])
            .await?,
    );
    assert_eq!(dap[0], ["NAME", "DATABASE", "ENVIRONMENT", "READY", "AGE"]);
    let row = dap
        .iter()
        .find(|r| r[0] == "orders-production")
        .expect("orders-production listed");
    assert_eq!(
        &row[1..4],
        ["orders-db.payments.svc.cluster.local", "production", "True"]
    );
    let row = dap
        .iter()
        .find(|r| r[0] == "orders-analytics")
        .expect("orders-analytics listed");
    assert_eq!(
        &row[1..3],
        ["orders-replica.payments.svc.cluster.local", "production"]
    );

    let wide = table(
        &cp.kubectl_ok(&ADMIN, &["get", "ar", "-n", "payments", "-o", "wide"])
            .await?,
    );
    assert_eq!(
        wide[0],
        [
            "NAME",
            "PHASE",
            "REQUESTER",
            "OPERATION",
            "DATABASE",
            "POLICY",
            "RULE",
            "APPROVALS",
            "FINGERPRINT",
            "EXPIRES",
            "AGE"
        ]
    );
    assert_eq!(
        &wide[1][..9],
        [
            "orders-production-deletes-7f3a9c",
            "Pending",
            "bob@example.com",
            "delete",
            "orders-db.payments.svc.cluster.local/orders",
            "orders-production",
            "deletes",
            "0",
            "4d1c5e0f9a7b2c31"
        ]
    );
    let narrow = table(
        &cp.kubectl_ok(&ADMIN, &["get", "ar", "-n", "payments"])
            .await?,
    );
    assert_eq!(
        narrow[0],
        ["NAME", "PHASE", "REQUESTER", "OPERATION", "DATABASE", "AGE"]
    );

    let all = cp
        .kubectl_ok(&ADMIN, &["get", "dbwarden", "-n", "payments"])
        .await?;
    for expected in [
        "databaseaccesspolicy.dbwarden.io/orders-production",
        "databaseaccesspolicy.dbwarden.io/orders-analytics",
        "approvalrequest.dbwarden.io/orders-production-deletes-7f3a9c",
    ] {
        assert!(
            all.contains(expected),
            "`kubectl get dbwarden` lacks {expected}:\n{all}"
        );
    }

    // kubectl explain shows the doc comments. The API server publishes a new CRD's OpenAPI
    // a moment after the CRD is Established (seconds on a busy machine).
    let args = ["explain", "dap.spec.guardrails.unparseable"];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let explain = loop {
        let out = cp.kubectl(&ADMIN, &args).await?;
        let unpublished = out.stderr.contains("couldn't find resource");
        if !unpublished || tokio::time::Instant::now() > deadline {
            break out.ok(format!("kubectl {}", args.join(" ")))?;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert!(
        explain.contains("What happens to a statement the sidecar cannot parse."),
        "{explain}"
    );
    Ok(())
}

/// The policy in README.md is one the API server and the semantic validator accept, so the
/// README stays true.
#[tokio::test]
async fn readme_policy_is_accepted() -> TestResult {
    let readme = std::fs::read_to_string(support::cluster::repo("README.md"))?;
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .filter(|block| block.contains("kind: DatabaseAccessPolicy"))
        .collect();
    assert!(!blocks.is_empty(), "README.md has no policy example");
    let cp = control_plane().await?;
    for block in blocks {
        let policy: DatabaseAccessPolicy = serde_yaml::from_str(block)?;
        policy.validate()?;
        cp.kubectl_with_input(
            &ADMIN,
            &["apply", "--dry-run=server", "-f", "-"],
            Some(block),
        )
        .await?
        .ok("kubectl apply --dry-run=server (README policy)")?;
    }
    Ok(())
}
