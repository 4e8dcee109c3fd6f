//! The stand-in's pure parts: file format, expansion, re-rooting, refusals.

use std::collections::BTreeMap;

use super::*;

fn defined(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn labels_file_is_sorted_go_quoted_without_a_final_newline() {
    let labels: BTreeMap<String, String> = [
        ("tier", "a \"b\"\\c"),
        ("app", "orders-api"),
        ("note", "x\ny\u{1}"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        format_map(&labels),
        "app=\"orders-api\"\nnote=\"x\\ny\\x01\"\ntier=\"a \\\"b\\\"\\\\c\""
    );
    assert_eq!(format_map(&BTreeMap::new()), "");
}

#[test]
fn expands_references_like_the_kubelet() {
    let vars = defined(&[("A", "1"), ("B", "x$(A)")]);
    assert_eq!(expand("$(A)/$(B)", &vars), "1/x$(A)");
    assert_eq!(expand("$$(A) $(C) $ $(", &vars), "$(A) $(C) $ $(");
    assert_eq!(expand("no refs", &vars), "no refs");
}

#[test]
fn reroots_paths_on_under_and_above_mounts_only() {
    let mounts = vec![(
        "/var/run/dbwarden/secrets/db".to_string(),
        PathBuf::from("/r/var/run/dbwarden/secrets/db"),
    )];
    let root = Path::new("/r");
    let r = |v: &str| reroot(v, &mounts, root);
    assert_eq!(
        r("/var/run/dbwarden/secrets"),
        "/r/var/run/dbwarden/secrets"
    );
    assert_eq!(
        r("/var/run/dbwarden/secrets/db/password"),
        "/r/var/run/dbwarden/secrets/db/password"
    );
    assert_eq!(r("/etc/other"), "/etc/other");
    assert_eq!(r("/"), "/");
    assert_eq!(r("0.0.0.0:15020"), "0.0.0.0:15020");
    assert_eq!(
        r("/var/run/dbwarden/secrets-x"),
        "/var/run/dbwarden/secrets-x"
    );
}

/// A client for an address where nothing listens: the cases below must not need the API.
fn offline_client() -> kube::Client {
    let url: http::Uri = "http://127.0.0.1:9".parse().unwrap_or_default();
    kube::Client::try_from(kube::Config::new(url)).unwrap_or_else(|e| panic!("{e}"))
}

fn pod(container: serde_json::Value, volumes: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "api-1", "namespace": "shop", "uid": "u-1",
                     "labels": {"app": "api", "tier": "web"}},
        "spec": {"serviceAccountName": "api", "containers": [container], "volumes": volumes},
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn resolves_the_downward_api_and_reroots_mount_paths() {
    let pod = pod(
        serde_json::json!({"name": "c", "args": ["--labels", "$(LABELS)"],
            "env": [
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                {"name": "LABELS", "value": "/etc/podinfo/labels"},
                {"name": "SPOOL", "value": "/var/spool"}],
            "volumeMounts": [{"name": "info", "mountPath": "/etc/podinfo"},
                             {"name": "spool", "mountPath": "/var/spool"}]}),
        serde_json::json!([
            {"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "spool", "emptyDir": {}}]),
    );
    let prepared = prepare_container(&offline_client(), &pod, "c")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let labels = prepared.host_path("/etc/podinfo/labels");
    assert_eq!(prepared.env_value("POD"), Some("api-1"));
    assert_eq!(prepared.env_value("SA"), Some("api"));
    assert_eq!(prepared.env_value("TIER"), Some("web"));
    assert_eq!(prepared.env_value("LABELS"), labels.to_str());
    assert_eq!(
        prepared.args,
        ["--labels".to_string(), labels.display().to_string()]
    );
    assert_eq!(
        std::fs::read_to_string(&labels).ok().as_deref(),
        Some("app=\"api\"\ntier=\"web\"")
    );
    assert!(prepared.host_path("/var/spool").is_dir());
}

#[tokio::test]
async fn refuses_what_it_cannot_do_as_a_kubelet_would() {
    let cases = [
        (
            serde_json::json!({"name": "c", "command": ["/bin/app"]}),
            serde_json::json!([]),
            "`command` replaces the image's entrypoint",
        ),
        (
            serde_json::json!({"name": "c", "volumeMounts": [{"name": "cm", "mountPath": "/cfg"}]}),
            serde_json::json!([{"name": "cm", "configMap": {"name": "x"}}]),
            "volume \"cm\": only secret, downwardAPI and emptyDir volumes are supported",
        ),
        (
            serde_json::json!({"name": "c",
                "volumeMounts": [{"name": "e", "mountPath": "/d", "subPath": "x"}]}),
            serde_json::json!([{"name": "e", "emptyDir": {}}]),
            "subPath is not supported",
        ),
        (
            serde_json::json!({"name": "c", "env": [{"name": "IP",
                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}),
            serde_json::json!([]),
            "env IP: fieldRef status.podIP: the pod has no value",
        ),
        (
            serde_json::json!({"name": "c", "env": [{"name": "CPU",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}),
            serde_json::json!([]),
            "env CPU: only valueFrom.fieldRef, secretKeyRef and configMapKeyRef",
        ),
    ];
    for (container, volumes, expected) in cases {
        let pod = pod(container, volumes);
        let error = prepare_container(&offline_client(), &pod, "c")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("kubelet stand-in, container shop/api-1/c: ")
                && error.contains(expected),
            "expected {expected:?}, got {error:?}"
        );
    }
    let missing = prepare_container(
        &offline_client(),
        &pod(serde_json::json!({"name": "c"}), serde_json::json!([])),
        "other",
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        missing.contains("no container or init container of that name"),
        "{missing}"
    );
}
