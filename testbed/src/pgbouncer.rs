//! pgbouncer in session mode in front of a test [`Postgres`]: the benchmark's baseline for what
//! a well-kept proxy costs.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::net::free_port;
use crate::postgres::{DATABASE, PgUser, Postgres};
use crate::process::Process;
use crate::run_as::{RunAs, write};
use crate::{Error, Result, tools};

/// A running pgbouncer; stopped and removed on drop.
#[derive(Debug)]
pub struct PgBouncer {
    server: Process,
    port: u16,
    _dir: TempDir,
}

impl PgBouncer {
    /// Starts pgbouncer on a free loopback port, pooling `user`'s connections to database `app`
    /// of `pg` in session mode (one server connection per client, like the sidecar), with
    /// SCRAM-SHA-256 towards clients and the server and no TLS on either side.
    pub async fn start(pg: &Postgres, user: &PgUser, max_clients: u32) -> Result<Self> {
        let bin = tools::system_tool("pgbouncer", "apt-get install pgbouncer")?;
        let owner = RunAs::server_user()?;
        let dir = tempfile::Builder::new()
            .prefix("dbwarden-pgbouncer-")
            .tempdir()
            .map_err(Error::io("creating pgbouncer's folder"))?;
        owner.give(dir.path())?;
        let port = free_port()?;
        let config = dir.path().join("pgbouncer.ini");
        write(
            &config,
            &format!(
                "[databases]
{DATABASE} = host=127.0.0.1 port={pg_port} dbname={DATABASE}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {dir}/userlist.txt
pool_mode = session
max_client_conn = {max_clients}
default_pool_size = {max_clients}
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
",
                pg_port = pg.port(),
                dir = dir.path().display(),
            ),
        )?;
        write(
            &dir.path().join("userlist.txt"),
            &format!("\"{}\" \"{}\"\n", user.name, user.password),
        )?;
        let mut cmd = Command::new(bin);
        cmd.arg(&config);
        owner.apply(&mut cmd);
        let mut server = Process::spawn(
            "pgbouncer",
            &mut cmd,
            &dir.path().join("pgbouncer.log"),
            Signal::SIGTERM,
        )?;
        server
            .wait_ready(Duration::from_secs(10), || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            })
            .await?;
        Ok(Self {
            server,
            port,
            _dir: dir,
        })
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id (benchmarks read its CPU time).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// A libpq connection string for `user` through pgbouncer (no TLS).
    pub fn conninfo(&self, user: &PgUser) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={DATABASE} user={} password={} sslmode=disable",
            self.port, user.name, user.password
        )
    }
}
