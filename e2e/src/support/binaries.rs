//! Fresh `dbwarden-sidecar` and `dbwarden-operator` binaries for the story.
//!
//! Cargo gives `CARGO_BIN_EXE_*` only to tests of the package that owns the binary, so the story
//! asks cargo itself: `cargo build` of the two binaries into the target directory the running
//! test (or demo) binary was built in, with the same profile. Under `cargo test --workspace` (and
//! `make demo`, which builds the same selection first) the binaries are already built and this is
//! a no-op check; under `cargo test -p dbwarden-e2e` it builds them. Cargo does not hold its
//! build-directory lock while tests run (measured: see docs/testing.md), so the nested build does
//! not wait on the outer one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use dbwarden_testbed::workspace_root;
use tokio::sync::OnceCell;

/// Paths of the binaries the story runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `dbwarden-sidecar`, standing for the sidecar image's entrypoint.
    pub sidecar: PathBuf,
    /// `dbwarden-operator`.
    pub operator: PathBuf,
}

/// Prefixes of the variables cargo sets for the test of one package.
const PACKAGE_VARIABLES: [&str; 7] = [
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "RUST_RECURSION_COUNT",
];

/// What the nested build selects. Selecting this package too makes cargo resolve dependency
/// features as the outer build did: this package's own dependencies (the test bed's `nix` turns on
/// `libc/extra_traits`, `tempfile` turns on `bitflags/std`) change the features of `libc`, and so
/// of tokio and everything above it. Without it the nested build compiled a second copy of most
/// of the dependency tree, minutes of CPU and gigabytes of disk (a CI run ran out of space there).
/// The `Makefile`'s `demo` builds the same selection (`--bins`) for the same reason.
pub const BUILD_SELECTION: [&str; 10] = [
    "-p",
    "dbwarden-sidecar",
    "-p",
    "dbwarden-operator",
    "-p",
    "dbwarden-e2e",
    "--bin",
    "dbwarden-sidecar",
    "--bin",
    "dbwarden-operator",
];

static BUILT: OnceCell<Binaries> = OnceCell::const_new();

/// Builds (or finds up to date) both binaries, once per process.
pub async fn fresh() -> anyhow::Result<Binaries> {
    BUILT.get_or_try_init(build).await.cloned()
}

async fn build() -> anyhow::Result<Binaries> {
    // A test binary is <target>/<profile>/deps/<name>-<hash>; the demo, a binary of this crate,
    // is <target>/<profile>/dbwarden-demo.
    let exe = std::env::current_exe().context("locating the running binary")?;
    let parent = exe
        .parent()
        .context("the running binary is not in <target>/<profile>")?;
    let profile_dir = if parent.file_name().is_some_and(|n| n == "deps") {
        parent
            .parent()
            .context("the test binary is not in <target>/<profile>/deps")?
    } else {
        parent
    };
    let target_dir = profile_dir
        .parent()
        .context("the running binary is not in <target>/<profile>")?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("unreadable profile folder name")?;
    let profile = match profile {
        "debug" => "dev",
        other => other,
    };
    // Cargo sets CARGO for the processes it runs; fall back to the one that compiled us.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let begun = Instant::now();
    let mut command = tokio::process::Command::new(&cargo);
    // Cargo gives this test (and `cargo run`, the demo) the variables of its own package (CARGO_MANIFEST_DIR, CARGO_PKG_*,
    // ...). Passed on, they change the fingerprints of dependencies that read them, and the
    // nested build would rebuild what the outer one just built, and back (measured: 1-3 min).
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if PACKAGE_VARIABLES
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(name);
        }
    }
    let output = command
        .current_dir(workspace_root())
        .arg("build")
        .args(BUILD_SELECTION)
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", Path::new(&cargo).display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("cargo build of the binaries failed:\n{stderr}");
    }
    // Under `cargo test --workspace` nothing should compile here; if something does, the
    // selection above no longer matches the outer build's features (see BUILD_SELECTION).
    let compiled = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("Compiling "))
        .count();
    tracing::info!(
        took = ?begun.elapsed(),
        compiled,
        target = %target_dir.display(),
        "binaries up to date (cargo build {})",
        BUILD_SELECTION.join(" ")
    );
    tracing::debug!(%stderr, "cargo build output");
    let binaries = Binaries {
        sidecar: profile_dir.join("dbwarden-sidecar"),
        operator: profile_dir.join("dbwarden-operator"),
    };
    for bin in [&binaries.sidecar, &binaries.operator] {
        ensure!(
            bin.is_file(),
            "cargo built, yet {} is missing",
            bin.display()
        );
    }
    Ok(binaries)
}
