//! Where the test bed finds the programs it runs.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

const BUILD_GO_TOOLS: &str = "make tools   (runs hack/tools.sh)";
const INSTALL_POSTGRES: &str = "apt-get install postgresql postgresql-client";

/// The root of the dbwarden workspace (the folder holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // This crate lives one level below the root; resolved at compile time, so it also holds for
    // test binaries started from any working directory.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The folder `hack/tools.sh` builds kube-apiserver, kubectl and helm into
/// (`DBWARDEN_TOOLS_DIR` overrides it).
pub fn tools_bin_dir() -> PathBuf {
    match std::env::var_os("DBWARDEN_TOOLS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join(".tools").join("bin"),
    }
}

/// A Go-built tool from [`tools_bin_dir`]: `kube-apiserver`, `kubectl` or `helm`.
pub(crate) fn go_tool(tool: &'static str) -> Result<PathBuf> {
    let path = tools_bin_dir().join(tool);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::ToolMissing {
            tool,
            looked: path.display().to_string(),
            install: BUILD_GO_TOOLS,
        })
    }
}

/// The official etcd binary shipped by the `etcd-bin-vendored` crate.
pub(crate) fn etcd() -> Result<PathBuf> {
    etcd_bin_vendored::etcd_bin_path()
        .map(Path::to_path_buf)
        .map_err(|e| Error::ToolMissing {
            tool: "etcd",
            looked: e.to_string(),
            install: "a linux x86_64 machine (etcd-bin-vendored feature linux-x86_64)",
        })
}

/// A PostgreSQL server program (`initdb`, `postgres`, `psql`, ...).
///
/// Looks in `DBWARDEN_PG_BIN`, then the newest `/usr/lib/postgresql/<major>/bin` (where Debian
/// and Ubuntu put the server programs, off the `PATH`), then the `PATH`.
pub fn pg_tool(tool: &'static str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("DBWARDEN_PG_BIN") {
        dirs.push(dir.into());
    }
    dirs.extend(debian_pg_bin_dirs());
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.iter()
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::ToolMissing {
            tool,
            looked: "$DBWARDEN_PG_BIN, /usr/lib/postgresql/*/bin, $PATH".into(),
            install: INSTALL_POSTGRES,
        })
}

/// A program from a distribution package, on the `PATH` or in `/usr/sbin` (off a non-root
/// `PATH`); `install` is the command that installs it.
pub(crate) fn system_tool(tool: &'static str, install: &'static str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.iter()
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::ToolMissing {
            tool,
            looked: "$PATH, /usr/sbin".into(),
            install,
        })
}

/// `/usr/lib/postgresql/<major>/bin`, newest major first.
fn debian_pg_bin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut majors: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    majors.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    majors.into_iter().map(|(_, dir)| dir).collect()
}
