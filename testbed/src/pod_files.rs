//! The files the injected sidecar reads from its pod, for tests that run the sidecar in
//! Kubernetes mode without an admitted pod (and so without [`crate::prepare_container`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::kubelet::format_map;
use crate::run_as::write;
use crate::{Error, PgUser, Result};

/// A pod's labels file and mounted database Secret in a temporary folder, removed on drop.
#[derive(Debug)]
pub struct PodFiles {
    dir: TempDir,
}

impl PodFiles {
    /// Writes `labels` as the kubelet writes the downward API labels file, and the Secret
    /// `secret` holding `user`'s name and password as the Secret volume the injector mounts
    /// (`<secrets_dir>/<secret>/username` and `.../password`).
    pub fn new(labels: &[(&str, &str)], secret: &str, user: &PgUser) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("dbwarden-pod-")
            .tempdir()
            .map_err(Error::io("creating the pod's folder"))?;
        let files = Self { dir };
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        write(&files.labels_file(), &format_map(&labels))?;
        let mounted = files.secrets_dir().join(secret);
        std::fs::create_dir_all(&mounted)
            .map_err(Error::io(format!("creating {}", mounted.display())))?;
        write(&mounted.join("username"), user.name)?;
        write(&mounted.join("password"), user.password)?;
        Ok(files)
    }

    /// The folder holding everything; free for the test's other files (a spool, say).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// For `DBWARDEN_POD_LABELS_FILE`.
    pub fn labels_file(&self) -> PathBuf {
        self.dir.path().join("labels")
    }

    /// For `DBWARDEN_SECRETS_DIR`: one folder per mounted Secret.
    pub fn secrets_dir(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::APP;

    #[test]
    fn files_are_where_the_injected_sidecar_reads_them() {
        let files =
            PodFiles::new(&[("app", "orders-api"), ("tier", "web")], "orders-db", &APP).unwrap();
        let read = |path: PathBuf| std::fs::read_to_string(path).unwrap();
        assert_eq!(
            read(files.labels_file()),
            "app=\"orders-api\"\ntier=\"web\""
        );
        let secret = files.secrets_dir().join("orders-db");
        assert_eq!(read(secret.join("username")), APP.name);
        assert_eq!(read(secret.join("password")), APP.password);
        assert!(files.labels_file().starts_with(files.dir()));
    }
}
