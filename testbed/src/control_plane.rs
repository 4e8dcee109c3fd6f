//! A Kubernetes control plane without nodes, as envtest runs one: etcd and kube-apiserver as
//! local processes, token authentication for several users, and RBAC authorization.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::net::free_port;
use crate::pki::{self, TestCa};
use crate::process::{self, CommandOutput, Process};
use crate::run_as::write;
use crate::{Error, Result, tools};

/// A person who uses the cluster in tests, authenticated by a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    /// The username the API server sees (`userInfo.username`).
    pub name: &'static str,
    /// The groups the API server sees (`userInfo.groups`, besides `system:authenticated`).
    pub groups: &'static [&'static str],
}

/// The cluster administrator (group `system:masters`: every permission, RBAC not consulted).
pub const ADMIN: User = User {
    name: "admin",
    groups: &["system:masters"],
};
/// A database administrator, the usual approver (group `dba`).
pub const ALICE: User = User {
    name: "alice",
    groups: &["dba"],
};
/// A developer, the usual requester (group `developers`).
pub const BOB: User = User {
    name: "bob",
    groups: &["developers"],
};
/// An outsider with no role anywhere (group `contractors`).
pub const CAROL: User = User {
    name: "carol",
    groups: &["contractors"],
};
/// A second database administrator, for approvals that need two people (group `dba`).
pub const DAVE: User = User {
    name: "dave",
    groups: &["dba"],
};

const USERS: [User; 5] = [ADMIN, ALICE, BOB, CAROL, DAVE];

/// How long the API server may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running etcd and kube-apiserver; stopped and removed on drop.
pub struct ControlPlane {
    // Fields drop in order: the API server stops before its etcd, the folder goes last.
    apiserver: Process,
    etcd: Process,
    admin: kube::Client,
    server: String,
    kubectl: PathBuf,
    started_in: Duration,
    dir: TempDir,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver on free loopback ports and waits for `/readyz`.
    pub async fn start() -> Result<Self> {
        let begun = Instant::now();
        let apiserver_bin = tools::go_tool("kube-apiserver")?;
        let kubectl = tools::go_tool("kubectl")?;
        let etcd_bin = tools::etcd()?;
        let dir = tempfile::Builder::new()
            .prefix("dbwarden-control-plane-")
            .tempdir()
            .map_err(Error::io("creating the control plane's folder"))?;
        let path = |name: &str| dir.path().join(name);

        let etcd_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let mut etcd = Process::spawn(
            "etcd",
            Command::new(&etcd_bin)
                .arg(format!("--data-dir={}", path("etcd").display()))
                .arg(format!("--listen-client-urls={etcd_url}"))
                .arg(format!("--advertise-client-urls={etcd_url}"))
                .arg(format!(
                    "--listen-peer-urls=http://127.0.0.1:{}",
                    free_port()?
                ))
                .args(["--unsafe-no-fsync", "--log-level=warn"]),
            &path("etcd.log"),
            Signal::SIGTERM,
        )?;
        etcd.wait_ready(Duration::from_secs(20), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", etcd_port))
                .await
                .is_ok()
        })
        .await?;

        let ca = TestCa::new("dbwarden test control plane")?;
        let serving = ca.issue_server(&[
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
        ])?;
        write(&path("ca.crt"), ca.cert_pem())?;
        write(&path("apiserver.crt"), &serving.cert_pem)?;
        write(&path("apiserver.key"), &serving.key_pem)?;
        let (sa_private, sa_public) = pki::key_pair_pem()?;
        write(&path("service-account.key"), &sa_private)?;
        write(&path("service-account.pub"), &sa_public)?;

        let tokens: Vec<(User, String)> = USERS.iter().map(|u| (*u, pki::random_hex(24))).collect();
        let token_file: String = tokens
            .iter()
            .map(|(user, token)| {
                format!(
                    "{token},{},{},\"{}\"\n",
                    user.name,
                    user.name,
                    user.groups.join(",")
                )
            })
            .collect();
        write(&path("tokens.csv"), &token_file)?;

        let port = free_port()?;
        let server = format!("https://127.0.0.1:{port}");

        let mut apiserver = Process::spawn(
            "kube-apiserver",
            Command::new(&apiserver_bin)
                .arg(format!("--etcd-servers={etcd_url}"))
                .arg(format!("--secure-port={port}"))
                .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
                .arg(format!("--cert-dir={}", path("certs").display()))
                .arg(format!(
                    "--tls-cert-file={}",
                    path("apiserver.crt").display()
                ))
                .arg(format!(
                    "--tls-private-key-file={}",
                    path("apiserver.key").display()
                ))
                .arg(format!("--client-ca-file={}", path("ca.crt").display()))
                .arg(format!(
                    "--token-auth-file={}",
                    path("tokens.csv").display()
                ))
                .args([
                    "--authorization-mode=RBAC",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--allow-privileged=true",
                    // No controller-manager runs, so nothing would create the default
                    // ServiceAccounts this plugin insists on.
                    "--disable-admission-plugins=ServiceAccount",
                    "--endpoint-reconciler-type=none",
                ])
                .arg(format!("--service-account-issuer={server}/"))
                .arg(format!(
                    "--service-account-key-file={}",
                    path("service-account.pub").display()
                ))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    path("service-account.key").display()
                )),
            &path("kube-apiserver.log"),
            Signal::SIGTERM,
        )?;

        let admin_kubeconfig = write_kubeconfig(dir.path(), &server, &ADMIN, &tokens)?;
        for (user, _) in &tokens {
            write_kubeconfig(dir.path(), &server, user, &tokens)?;
        }
        // Wait for the port, then for /readyz (asked with kubectl: a kube::Client would log each
        // 500 "not ready yet" answer as an error).
        apiserver
            .wait_ready(READY_TIMEOUT, || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            })
            .await?;
        let readyz = || {
            let mut command = tokio::process::Command::new(&kubectl);
            command.arg(format!("--kubeconfig={}", admin_kubeconfig.display()));
            command.args(["get", "--raw=/readyz"]);
            async move {
                process::run(command, None)
                    .await
                    .is_ok_and(|out| out.status.success())
            }
        };
        apiserver.wait_ready(READY_TIMEOUT, readyz).await?;
        let admin = client_from(&admin_kubeconfig).await?;

        let started_in = begun.elapsed();
        tracing::info!(%server, ?started_in, dir = %dir.path().display(), "control plane ready");
        Ok(Self {
            apiserver,
            etcd,
            admin,
            server,
            kubectl,
            started_in,
            dir,
        })
    }

    /// The API server's URL, `https://127.0.0.1:PORT`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// How long [`ControlPlane::start`] took, from the call to `/readyz` answering.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The CA certificate that signed the API server's serving certificate.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The folder holding the logs, certificates and kubeconfigs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The kubeconfig file that authenticates as `user`.
    pub fn kubeconfig(&self, user: &User) -> PathBuf {
        kubeconfig_path(self.dir.path(), user)
    }

    /// A kubeconfig that acts as `username` (e.g. `system:serviceaccount:NS:NAME`) through
    /// impersonation by the administrator, so a process runs with exactly that user's RBAC.
    pub fn kubeconfig_impersonating(&self, username: &str) -> Result<PathBuf> {
        let admin = std::fs::read_to_string(self.kubeconfig(&ADMIN))
            .map_err(Error::io("reading the admin kubeconfig"))?;
        let token_line = admin
            .lines()
            .find(|l| l.trim_start().starts_with("token:"))
            .unwrap_or_default()
            .to_string();
        let impersonating =
            admin.replace(&token_line, &format!("{token_line}\n    as: {username}"));
        let path = self
            .dir
            .path()
            .join(format!("as-{}.kubeconfig", username.replace(':', "_")));
        write(&path, &impersonating)?;
        Ok(path)
    }

    /// Runs the real helm as the administrator.
    pub async fn helm(&self, args: &[&str]) -> Result<CommandOutput> {
        let mut command = tokio::process::Command::new(tools::go_tool("helm")?);
        command
            .env("KUBECONFIG", self.kubeconfig(&ADMIN))
            .args(args);
        // Helm keeps caches and repositories under HOME; give it this control plane's folder.
        command.env("HELM_CACHE_HOME", self.dir.path().join("helm/cache"));
        command.env("HELM_CONFIG_HOME", self.dir.path().join("helm/config"));
        command.env("HELM_DATA_HOME", self.dir.path().join("helm/data"));
        process::run(command, None).await
    }

    /// Installs dbwarden's Helm chart as release `dbwarden` in namespace `dbwarden-system`, in
    /// its "operator outside the cluster" mode: the API server calls the webhooks at
    /// `https://127.0.0.1:<webhook_port>`, where the caller runs the operator (as the chart's
    /// ServiceAccount, [`ControlPlane::DBWARDEN_OPERATOR`], to have exactly its RBAC).
    pub async fn install_dbwarden_chart(&self, webhook_port: u16) -> Result<String> {
        let chart = tools::workspace_root()
            .join("charts/dbwarden")
            .display()
            .to_string();
        let url = format!("webhook.url=https://127.0.0.1:{webhook_port}");
        let args = [
            "install",
            "dbwarden",
            &chart,
            "--namespace",
            "dbwarden-system",
            "--create-namespace",
            "--set",
            "operator.enabled=false",
            "--set",
            &url,
        ];
        self.helm(&args).await?.ok("helm install dbwarden")
    }

    /// The user name of the chart's operator ServiceAccount, for [`ControlPlane::kubeconfig_impersonating`].
    pub const DBWARDEN_OPERATOR: &str = "system:serviceaccount:dbwarden-system:dbwarden";

    /// A client authenticated as the administrator.
    pub fn admin_client(&self) -> kube::Client {
        self.admin.clone()
    }

    /// A client authenticated as `user`.
    pub async fn client(&self, user: &User) -> Result<kube::Client> {
        client_from(&self.kubeconfig(user)).await
    }

    /// Runs the real kubectl as `user`; the caller decides what a failure means.
    pub async fn kubectl(&self, user: &User, args: &[&str]) -> Result<CommandOutput> {
        self.kubectl_with_input(user, args, None).await
    }

    /// Runs the real kubectl as `user` with `stdin` as its input (for `-f -`).
    pub async fn kubectl_with_input(
        &self,
        user: &User,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<CommandOutput> {
        let mut command = tokio::process::Command::new(&self.kubectl);
        // kubectl caches discovery under HOME by server address; a control plane of an earlier
        // test on the same port must not answer for this one.
        let cache = self.dir.path().join("kube-cache");
        command
            .arg(format!("--kubeconfig={}", self.kubeconfig(user).display()))
            .arg(format!("--cache-dir={}", cache.display()))
            .args(args);
        process::run(command, stdin).await
    }

    /// Runs kubectl as `user` and returns its stdout, or an error with its stderr.
    pub async fn kubectl_ok(&self, user: &User, args: &[&str]) -> Result<String> {
        self.kubectl(user, args)
            .await?
            .ok(format!("kubectl {}", args.join(" ")))
    }

    /// `kubectl apply -f -` of `yaml` as `user`.
    pub async fn apply(&self, user: &User, yaml: &str) -> Result<String> {
        self.kubectl_with_input(user, &["apply", "-f", "-"], Some(yaml))
            .await?
            .ok("kubectl apply -f -")
    }

    /// Applies CustomResourceDefinition files as the administrator and waits until each is
    /// Established.
    pub async fn install_crds(&self, files: &[PathBuf]) -> Result<()> {
        for file in files {
            let file = file.display().to_string();
            self.kubectl_ok(&ADMIN, &["apply", "--server-side", "-f", &file])
                .await?;
            self.kubectl_ok(
                &ADMIN,
                &[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=30s",
                    "-f",
                    &file,
                ],
            )
            .await?;
        }
        Ok(())
    }

    /// Installs dbwarden's CustomResourceDefinitions, the Helm chart's copy (what users
    /// install; `crdgen --check` keeps it equal to `crds/`), without the rest of the chart.
    pub async fn install_dbwarden_crds(&self) -> Result<()> {
        let crds = tools::workspace_root().join("charts/dbwarden/crds");
        self.install_crds(&[
            crds.join("databaseaccesspolicies.yaml"),
            crds.join("approvalrequests.yaml"),
        ])
        .await
    }

    /// What a kubelet would run for `container` of `pod` (the Pod as the API server stored it),
    /// reading the Secrets it mounts as the administrator; see [`crate::kubelet`].
    pub async fn prepare_container(
        &self,
        pod: &k8s_openapi::api::core::v1::Pod,
        container: &str,
    ) -> Result<crate::PreparedContainer> {
        crate::kubelet::prepare_container(&self.admin, pod, container).await
    }

    /// Process ids of etcd and the API server, for tests that stop them on purpose.
    pub fn pids(&self) -> (u32, u32) {
        (self.etcd.pid(), self.apiserver.pid())
    }
}

fn kubeconfig_path(dir: &Path, user: &User) -> PathBuf {
    dir.join(format!("{}.kubeconfig", user.name))
}

fn write_kubeconfig(
    dir: &Path,
    server: &str,
    user: &User,
    tokens: &[(User, String)],
) -> Result<PathBuf> {
    let token = tokens
        .iter()
        .find(|(u, _)| u == user)
        .map(|(_, t)| t.as_str())
        .unwrap_or_default();
    let ca = dir.join("ca.crt");
    let name = user.name;
    let yaml = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: dbwarden-test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {name}
  user:
    token: {token}
contexts:
- name: {name}
  context:
    cluster: dbwarden-test
    user: {name}
    namespace: default
current-context: {name}
",
        ca = ca.display()
    );
    let path = kubeconfig_path(dir, user);
    write(&path, &yaml)?;
    Ok(path)
}

async fn client_from(kubeconfig: &Path) -> Result<kube::Client> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}
