//! A throwaway PostgreSQL cluster: initdb on a free port, password users, TLS.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::net::free_port;
use crate::pki::TestCa;
use crate::process::{self, CommandOutput, Process};
use crate::run_as::{RunAs, write};
use crate::{Error, Result, tools};

/// A database role that logs in with a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgUser {
    /// The role name.
    pub name: &'static str,
    /// Its password (a fixed test value: the server listens on loopback only).
    pub password: &'static str,
}

/// The application role, authenticated with SCRAM-SHA-256; owns database `app`.
pub const APP: PgUser = PgUser {
    name: "app",
    password: "app-scram-secret",
};
/// A role whose password is stored as MD5 and authenticated with `md5`.
pub const APP_MD5: PgUser = PgUser {
    name: "app_md5",
    password: "app-md5-secret",
};
/// A role authenticated with a cleartext `password` exchange.
pub const APP_PLAIN: PgUser = PgUser {
    name: "app_plain",
    password: "app-plain-secret",
};

/// The database the test roles use.
pub const DATABASE: &str = "app";

const SUPERUSER: &str = "postgres";

/// A running PostgreSQL server; stopped (fast shutdown) and removed on drop.
#[derive(Debug)]
pub struct Postgres {
    server: Process,
    port: u16,
    started_in: Duration,
    dir: TempDir,
}

impl Postgres {
    /// Creates a cluster with initdb and starts it on a free loopback port, with TLS on, the
    /// roles [`APP`], [`APP_MD5`] and [`APP_PLAIN`], and the database `app`.
    pub async fn start() -> Result<Self> {
        let begun = Instant::now();
        let initdb = tools::pg_tool("initdb")?;
        let postgres = tools::pg_tool("postgres")?;
        tools::pg_tool("psql")?;
        let owner = RunAs::server_user()?;

        let dir = tempfile::Builder::new()
            .prefix("dbwarden-postgres-")
            .tempdir()
            .map_err(Error::io("creating the database's folder"))?;
        let path = |name: &str| dir.path().join(name);
        let data = path("data");

        let ca = TestCa::new("dbwarden test database")?;
        let serving = ca.issue_server(&["127.0.0.1", "localhost"])?;
        write(&path("ca.crt"), ca.cert_pem())?;
        write(&path("server.crt"), &serving.cert_pem)?;
        write(&path("server.key"), &serving.key_pem)?;
        // The server refuses a private key that others can read.
        std::fs::set_permissions(path("server.key"), std::fs::Permissions::from_mode(0o600))
            .map_err(Error::io("restricting server.key"))?;
        for p in [
            dir.path().to_path_buf(),
            path("server.key"),
            path("server.crt"),
        ] {
            owner.give(&p)?;
        }

        let mut cmd = Command::new(&initdb);
        cmd.arg("-D")
            .arg(&data)
            .args([
                "--username",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args([
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]);
        owner.apply(&mut cmd);
        let out = process::run(cmd.into(), None).await?;
        out.ok(format!("initdb -D {}", data.display()))?;

        write(
            &data.join("pg_hba.conf"),
            "# written by dbwarden-testbed
local all all trust
host all app_md5 127.0.0.1/32 md5
hostssl all app_md5 127.0.0.1/32 md5
host all app_plain 127.0.0.1/32 password
hostssl all app_plain 127.0.0.1/32 password
host all all 127.0.0.1/32 scram-sha-256
hostssl all all 127.0.0.1/32 scram-sha-256
",
        )?;

        let port = free_port()?;
        let mut cmd = Command::new(&postgres);
        cmd.arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(dir.path());
        for setting in [
            "listen_addresses=127.0.0.1".to_string(),
            "ssl=on".into(),
            format!("ssl_cert_file={}", path("server.crt").display()),
            format!("ssl_key_file={}", path("server.key").display()),
            "max_connections=200".into(),
            // A throwaway cluster: durability buys nothing and costs start-up and test time.
            "fsync=off".into(),
            "synchronous_commit=off".into(),
            "full_page_writes=off".into(),
            "log_connections=on".into(),
        ] {
            cmd.arg("-c").arg(setting);
        }
        owner.apply(&mut cmd);
        // SIGINT is PostgreSQL's fast shutdown: roll back open transactions and stop.
        let mut server =
            Process::spawn("postgres", &mut cmd, &path("postgres.log"), Signal::SIGINT)?;
        let pid_file = data.join("postmaster.pid");
        server
            .wait_ready(Duration::from_secs(30), || {
                let ready = postmaster_ready(&pid_file);
                async move { ready }
            })
            .await?;

        let pg = Self {
            server,
            port,
            started_in: Duration::ZERO,
            dir,
        };
        pg.psql_superuser(&format!(
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE {app} LOGIN PASSWORD '{app_pw}';
             CREATE DATABASE {DATABASE} OWNER {app};
             SET password_encryption = 'md5';
             CREATE ROLE {md5} LOGIN PASSWORD '{md5_pw}';
             CREATE ROLE {plain} LOGIN PASSWORD '{plain_pw}';",
            app = APP.name,
            app_pw = APP.password,
            md5 = APP_MD5.name,
            md5_pw = APP_MD5.password,
            plain = APP_PLAIN.name,
            plain_pw = APP_PLAIN.password,
        ))
        .await?;
        let started_in = begun.elapsed();
        tracing::info!(port, ?started_in, dir = %pg.dir.path().display(), "postgres ready");
        Ok(Self { started_in, ..pg })
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How long [`Postgres::start`] took, initdb included.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The CA that signed the server certificate (for `sslmode=verify-full`).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The server's log (connections are logged with their authentication method).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A libpq connection string for `user` over TCP with TLS verified against the test CA.
    pub fn conninfo(&self, user: &PgUser) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={DATABASE} user={} password={} sslmode=verify-full sslrootcert={}",
            self.port,
            user.name,
            user.password,
            self.ca_cert_path().display()
        )
    }

    /// Runs `sql` with the real psql as `user` over TCP and TLS (see [`psql`]).
    pub async fn psql(&self, user: &PgUser, sql: &str) -> Result<CommandOutput> {
        psql(&self.conninfo(user), sql).await
    }

    /// Runs the script `sql` as the superuser over the Unix socket (trust), one statement at a
    /// time (so `CREATE DATABASE` may appear), failing on the first error.
    pub async fn psql_superuser(&self, sql: &str) -> Result<String> {
        let mut cmd = tokio::process::Command::new(tools::pg_tool("psql")?);
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-h",
        ])
        .arg(self.dir.path())
        .arg("-p")
        .arg(self.port.to_string())
        .args(["-f", "-"]);
        process::run(cmd, Some(sql)).await?.ok("psql as superuser")
    }

    /// The server's process id, for tests that stop it on purpose.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}

/// PostgreSQL writes `ready` as the eighth line of postmaster.pid once it accepts connections.
/// Runs `sql` with the real psql against `conninfo` (a libpq connection string), with `-X -A -t`
/// (no psqlrc; unaligned tuples only, so stdout is just the values) and `ON_ERROR_STOP`.
pub async fn psql(conninfo: &str, sql: &str) -> Result<CommandOutput> {
    let mut cmd = tokio::process::Command::new(tools::pg_tool("psql")?);
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(conninfo)
        .arg("-c")
        .arg(sql);
    process::run(cmd, None).await
}

fn postmaster_ready(pid_file: &Path) -> bool {
    std::fs::read_to_string(pid_file)
        .map(|text| text.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
        .unwrap_or(false)
}
