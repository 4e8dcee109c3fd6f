//! A control plane with the dbwarden CRDs installed, and helpers to read kubectl's output.

use std::path::PathBuf;

use dbwarden_testbed::{ADMIN, ControlPlane};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// A control plane with the CRDs installed and the namespace `payments`.
pub async fn control_plane() -> Result<ControlPlane, Box<dyn std::error::Error>> {
    dbwarden_testbed::init_tracing();
    let cp = ControlPlane::start().await?;
    cp.install_crds(&[
        repo("crds/databaseaccesspolicies.yaml"),
        repo("crds/approvalrequests.yaml"),
    ])
    .await?;
    cp.kubectl_ok(&ADMIN, &["create", "namespace", "payments"])
        .await?;
    Ok(cp)
}

pub fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Lines of `kubectl get` output, split into whitespace-separated cells.
pub fn table(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}
