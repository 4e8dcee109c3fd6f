//! Shared fixtures: a real PostgreSQL, the sidecar in-process in front of it, the policy and
//! tables most tests enforce, raw clients.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use dbwarden_sidecar::audit::AuditSettings;
use dbwarden_sidecar::config::{
    AuditFileConfig, ClientAuth, ClientTlsConfig, Config, CredentialsConfig, HealthConfig,
    LimitsConfig, ListenerConfig, TlsMode, UpstreamConfig, UpstreamTlsConfig,
    WorkloadIdentityConfig,
};
use dbwarden_sidecar::enforce::EnforcingHooks;
use dbwarden_sidecar::frontend::IdentityHook;
use dbwarden_sidecar::hook::HookFactory;
use dbwarden_sidecar::metrics::Metrics;
use dbwarden_sidecar::{Sidecar, SidecarHandle};
use dbwarden_testbed::{APP, PgUser, Postgres};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// How to set the sidecar up for one test.
#[derive(Debug, Clone)]
pub struct Setup {
    pub user: PgUser,
    pub upstream_tls: TlsMode,
    pub client_tls: bool,
    pub client_auth: ClientAuth,
    pub limits: LimitsConfig,
    pub health: bool,
    pub database: String,
    pub password: Option<String>,
    pub hooks: Option<Arc<dyn HookFactory>>,
    pub identity: Option<Arc<dyn IdentityHook>>,
    /// An `audit:` section (the workload is then `shop/api` in pod `api-0`).
    pub audit: Option<AuditFileConfig>,
    /// Metrics shared with the hooks.
    pub metrics: Option<Arc<Metrics>>,
    /// Enforce policy files as the binary does (`EnforcingHooks::from_config`).
    pub enforce: Option<Enforce>,
}

/// `policies:`, `identity:` and `secrets_dir:` of the configuration.
#[derive(Debug, Clone)]
pub struct Enforce {
    pub policies: Vec<PathBuf>,
    pub service_account: String,
    pub secrets_dir: Option<PathBuf>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            user: APP,
            upstream_tls: TlsMode::VerifyFull,
            client_tls: false,
            client_auth: ClientAuth::Password,
            limits: LimitsConfig::default(),
            health: false,
            database: "app".into(),
            password: None,
            hooks: None,
            identity: None,
            enforce: None,
            audit: None,
            metrics: None,
        }
    }
}

/// A running sidecar and the files it reads.
#[derive(Debug)]
pub struct Proxy {
    pub handle: Option<SidecarHandle>,
    pub addr: SocketAddr,
    pub dir: TempDir,
    /// CA of the sidecar's own client-facing certificate, when client TLS is on.
    pub client_ca: Option<PathBuf>,
}

impl Proxy {
    /// A libpq connection string to the sidecar (the password is the optional token).
    pub fn conninfo(&self) -> String {
        let ssl = match &self.client_ca {
            Some(ca) => format!("sslmode=verify-full sslrootcert={}", ca.display()),
            None => "sslmode=disable".into(),
        };
        format!(
            "host=127.0.0.1 port={} user=app dbname=app password=no-token {ssl}",
            self.addr.port()
        )
    }

    /// A connected tokio-postgres client (the connection runs on a spawned task).
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.conninfo(), tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }
}

/// Lets `shop/api` select, insert, update and delete on `public.*`; everything else is refused.
pub const POLICY: &str = "apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata:
  name: app-access
  namespace: shop
spec:
  database:
    host: db.shop.svc
    name: app
    environment: dev
    credentialsSecretRef: {name: app-db}
  workloadSelector: {matchLabels: {app: api}}
  rules:
    - name: api-crud
      subjects: {serviceAccounts: [api]}
      operations: [select, insert, update, delete]
      tables: ['public.*']
";

/// Table `public.t` (two rows) and `audit.log`.
pub async fn tables(pg: &Postgres) -> TestResult {
    pg.psql(
        &APP,
        "CREATE TABLE public.t (id int, name text); INSERT INTO public.t VALUES (1, 'ada'), (2, 'bob');
         CREATE SCHEMA audit; CREATE TABLE audit.log (id int);",
    )
    .await?
    .ok("create tables")?;
    Ok(())
}

pub async fn start_pg() -> Result<Postgres, dbwarden_testbed::Error> {
    dbwarden_testbed::init_tracing();
    Postgres::start().await
}

pub async fn proxy(
    pg: &Postgres,
    setup: Setup,
) -> Result<Proxy, Box<dyn std::error::Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;
    let password_file = dir.path().join("password");
    std::fs::write(
        &password_file,
        setup.password.as_deref().unwrap_or(setup.user.password),
    )?;
    let mut client_ca = None;
    let client_tls = if setup.client_tls {
        let ca = dbwarden_testbed::pki::TestCa::new("sidecar test")?;
        let cert = ca.issue_server(&["127.0.0.1", "localhost"])?;
        let (ca_path, cert_path, key_path) = (
            dir.path().join("ca.crt"),
            dir.path().join("tls.crt"),
            dir.path().join("tls.key"),
        );
        std::fs::write(&ca_path, ca.cert_pem())?;
        std::fs::write(&cert_path, &cert.cert_pem)?;
        std::fs::write(&key_path, &cert.key_pem)?;
        client_ca = Some(ca_path);
        Some(ClientTlsConfig {
            cert_file: cert_path,
            key_file: key_path,
        })
    } else {
        None
    };
    let config = Config {
        listeners: vec![ListenerConfig {
            name: "app".into(),
            listen: "127.0.0.1:0".parse()?,
            upstream: UpstreamConfig {
                host: "127.0.0.1".into(),
                port: pg.port(),
                database: setup.database.clone(),
                tls: UpstreamTlsConfig {
                    mode: setup.upstream_tls,
                    ca_file: Some(pg.ca_cert_path()),
                    server_name: None,
                },
                credentials: CredentialsConfig {
                    username: Some(setup.user.name.into()),
                    username_env: None,
                    username_file: None,
                    password_file: Some(password_file),
                    password_env: None,
                },
            },
        }],
        client_tls,
        client_auth: setup.client_auth,
        limits: setup.limits.clone(),
        health: setup.health.then(|| HealthConfig {
            listen: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        }),
        policies: None,
        identity: setup.audit.as_ref().map(|_| WorkloadIdentityConfig {
            service_account: "shop/api".into(),
            pod: Some("api-0".into()),
            jwks_ca_file: None,
        }),
        secrets_dir: None,
        audit: setup.audit.clone(),
    };
    let mut config = config;
    if let Some(enforce) = &setup.enforce {
        config.policies = Some(enforce.policies.clone());
        config.identity = Some(WorkloadIdentityConfig {
            service_account: enforce.service_account.clone(),
            pod: None,
            jwks_ca_file: None,
        });
        config.secrets_dir = enforce.secrets_dir.clone();
    }
    let audit = AuditSettings::from_config(&config)?;
    let mut sidecar = Sidecar::new(config.clone());
    let metrics = match setup.metrics {
        Some(m) => m,
        None => Arc::new(Metrics::new()?),
    };
    if setup.enforce.is_some() {
        let hooks = EnforcingHooks::from_config(&config)?
            .ok_or("no policies")?
            .with_metrics(metrics.clone());
        sidecar = sidecar.with_hooks(Arc::new(hooks));
    }
    if let Some(settings) = audit {
        sidecar = sidecar.with_audit(settings.open(metrics.clone())?);
    }
    sidecar = sidecar.with_metrics(metrics);
    if let Some(hooks) = setup.hooks {
        sidecar = sidecar.with_hooks(hooks);
    }
    if let Some(identity) = setup.identity {
        sidecar = sidecar.with_identity(identity);
    }
    let handle = sidecar.start().await?;
    let addr = handle.local_addr("app").ok_or("no listener")?;
    Ok(Proxy {
        handle: Some(handle),
        addr,
        dir,
        client_ca,
    })
}

/// A PostgreSQL client program (psql, pgbench) from PATH or the distribution's folder.
pub fn pg_bin(name: &str) -> PathBuf {
    if let Ok(out) = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
    {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !path.is_empty() {
            return PathBuf::from(path);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| PathBuf::from(name))
}

/// Runs a command with a timeout, returning (success, stdout, stderr).
pub async fn run(
    mut cmd: tokio::process::Command,
    timeout: Duration,
) -> Result<(bool, String, String), Box<dyn std::error::Error + Send + Sync>> {
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output()).await??;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A hand-driven protocol client for exact message sequences.
#[derive(Debug)]
pub struct Raw {
    pub stream: TcpStream,
    pub buf: BytesMut,
}

/// One backend message: type byte and body.
pub type Msg = (u8, Vec<u8>);

impl Raw {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            stream: TcpStream::connect(addr).await?,
            buf: BytesMut::new(),
        })
    }

    /// Connects, starts up and authenticates, returning after the first ReadyForQuery.
    pub async fn session(
        addr: SocketAddr,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let mut raw = Self::connect(addr).await?;
        let mut out = BytesMut::new();
        postgres_protocol::message::frontend::startup_message(
            [("user", "app"), ("database", "app")],
            &mut out,
        )?;
        raw.send(&out).await?;
        let (tag, _) = raw.recv().await?.ok_or("closed before auth")?;
        assert_eq!(tag, b'R', "expected an authentication request");
        out.clear();
        postgres_protocol::message::frontend::password_message(b"token", &mut out)?;
        raw.send(&out).await?;
        let msgs = raw.until_ready().await?;
        assert!(
            msgs.iter().any(|(t, _)| *t == b'K'),
            "no BackendKeyData in {msgs:?}"
        );
        Ok(raw)
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next message, or None at end of stream (10 s timeout).
    pub async fn recv(&mut self) -> std::io::Result<Option<Msg>> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    let body = self.buf.split_to(len - 4).to_vec();
                    return Ok(Some((tag, body)));
                }
            }
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 10 s")
                    })?;
            match read {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// Every message up to the end of the stream.
    pub async fn until_closed(&mut self) -> std::io::Result<Vec<Msg>> {
        let mut msgs = Vec::new();
        while let Some(m) = self.recv().await? {
            msgs.push(m);
        }
        Ok(msgs)
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(
        &mut self,
    ) -> Result<Vec<Msg>, Box<dyn std::error::Error + Send + Sync>> {
        let mut msgs = Vec::new();
        loop {
            let m = self
                .recv()
                .await?
                .ok_or_else(|| format!("closed; got {}", tags(&msgs)))?;
            let done = m.0 == b'Z';
            msgs.push(m);
            if done {
                return Ok(msgs);
            }
        }
    }
}

/// The type bytes of `msgs` as a string, e.g. "1 2 T D C Z".
pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter()
        .map(|(t, _)| (*t as char).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The SQLSTATEs of the ErrorResponses among `msgs`, in order ("" for one without).
pub fn error_codes(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|(t, _)| *t == b'E')
        .map(|(_, b)| error_field(b, b'C').unwrap_or_default())
        .collect()
}

/// Reads `raw` to its end; the code and message of the FATAL error it ended with, if any.
pub async fn fatal_at_end(
    raw: &mut Raw,
) -> Result<Option<(Option<String>, Option<String>)>, Box<dyn std::error::Error + Send + Sync>> {
    let said = raw.until_closed().await?;
    Ok(said
        .iter()
        .rfind(|(tag, body)| *tag == b'E' && error_field(body, b'S').as_deref() == Some("FATAL"))
        .map(|(_, body)| (error_field(body, b'C'), error_field(body, b'M'))))
}

/// The value of field `code` in an ErrorResponse body.
pub fn error_field(body: &[u8], code: u8) -> Option<String> {
    let mut rest = body;
    while let Some((&c, tail)) = rest.split_first() {
        if c == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0)?;
        if c == code {
            return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
        }
        rest = &tail[end + 1..];
    }
    None
}

/// Runs each statement through `client` (simple query); returns, one line each, those that did
/// not get 42501 naming `field` and policy `shop/app-access` (every test policy's name).
pub async fn refusals(client: &tokio_postgres::Client, cases: &[(&str, &str)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (sql, field) in cases {
        let shown: String = sql.chars().take(60).collect();
        // Bounded: a statement that got through may leave the session waiting (COPY FROM STDIN).
        let answer = tokio::time::timeout(Duration::from_secs(10), client.simple_query(sql)).await;
        let Ok(answer) = answer else {
            failures.push(format!("{shown}: no answer: it was forwarded"));
            return failures;
        };
        match answer {
            Ok(_) => failures.push(format!("{shown}: ran")),
            Err(err) => match err.as_db_error() {
                Some(db)
                    if db.code() == &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE
                        && db.message().contains(field)
                        && db.message().contains("shop/app-access") => {}
                _ => failures.push(format!("{shown}: want 42501 naming {field}, got {err:?}")),
            },
        }
    }
    failures
}
