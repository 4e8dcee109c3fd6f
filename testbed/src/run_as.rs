//! PostgreSQL's programs and pgbouncer refuse to run as root; as root, the test bed runs them as
//! the `postgres` system user (which Debian's postgresql-common creates) and hands it their files.

use std::path::Path;
use std::process::Command;

use nix::unistd::{Gid, Uid};

use crate::{Error, Result};

const SERVER_USER: &str = "postgres";

/// Who a server process runs as: this process's user, or `postgres` when that is root.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunAs(Option<(Uid, Gid)>);

impl RunAs {
    /// Decides once per server: unprivileged callers run servers as themselves.
    pub(crate) fn server_user() -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(Self(None));
        }
        match nix::unistd::User::from_name(SERVER_USER) {
            Ok(Some(user)) => Ok(Self(Some((user.uid, user.gid)))),
            Ok(None) => Err(Error::SystemUser {
                user: SERVER_USER,
                reason: "no such user; PostgreSQL refuses to run as root, and the test bed runs \
                         it as 'postgres' (apt-get install postgresql creates it)"
                    .into(),
            }),
            Err(e) => Err(Error::SystemUser {
                user: SERVER_USER,
                reason: e.to_string(),
            }),
        }
    }

    /// Makes `command` run as this user.
    pub(crate) fn apply(self, command: &mut Command) {
        use std::os::unix::process::CommandExt;
        if let Some((uid, gid)) = self.0 {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
    }

    /// Gives `path` to this user, so the server can read (or, for a folder, write) it.
    pub(crate) fn give(self, path: &Path) -> Result<()> {
        let Some((uid, gid)) = self.0 else {
            return Ok(());
        };
        nix::unistd::chown(path, Some(uid), Some(gid)).map_err(|e| Error::Io {
            what: format!("handing {} to {SERVER_USER}", path.display()),
            source: e.into(),
        })
    }
}

/// Writes a whole file, with the path in the error.
pub(crate) fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(Error::io(format!("writing {}", path.display())))
}
