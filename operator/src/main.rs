//! `dbwarden-operator`: reconciles dbwarden's custom resources, serves the admission webhooks
//! over TLS, and its plain HTTP endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use dbwarden_crds::DatabaseAccessPolicy;
use dbwarden_operator::approval::notify::Notifier;
use dbwarden_operator::certs::{self, Bundles, CertPolicy, ReloadableCert, ServingCert};
use dbwarden_operator::http::{self, Readiness};
use dbwarden_operator::inject::InjectSettings;
use dbwarden_operator::leader::{self, Candidate};
use dbwarden_operator::telemetry::{self, LogFormat};
use dbwarden_operator::webhook::{self, WebhookState};
use dbwarden_operator::{Context, Metrics, approval, policy};
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};

/// The dbwarden operator: reconciles DatabaseAccessPolicy objects, injects the dbwarden sidecar
/// into pods that ask for it, and refuses invalid policies at apply time.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address of the plain HTTP endpoints: /metrics, /healthz and /readyz.
    #[arg(long, env = "DBWARDEN_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,

    /// Address of the admission webhooks (HTTPS).
    #[arg(long, env = "DBWARDEN_WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
    webhook_addr: SocketAddr,

    /// Namespace of the Secret holding the webhook's certificate (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "dbwarden-system")]
    namespace: String,

    /// Secret holding the webhook's CA and serving certificate; made when absent.
    #[arg(
        long,
        env = "DBWARDEN_WEBHOOK_SECRET",
        default_value = "dbwarden-webhook-tls"
    )]
    webhook_secret: String,

    /// Names the serving certificate is valid for: the webhook Service's DNS name, or an IP
    /// address when the API server calls the webhook by URL.
    #[arg(
        long,
        env = "DBWARDEN_WEBHOOK_NAMES",
        value_delimiter = ',',
        default_value = "dbwarden-webhook.dbwarden-system.svc"
    )]
    webhook_names: Vec<String>,

    /// MutatingWebhookConfigurations whose caBundle the operator keeps current.
    #[arg(
        long,
        env = "DBWARDEN_MUTATING_WEBHOOKS",
        value_delimiter = ',',
        default_value = "dbwarden-injector"
    )]
    mutating_webhooks: Vec<String>,

    /// ValidatingWebhookConfigurations whose caBundle the operator keeps current.
    #[arg(
        long,
        env = "DBWARDEN_VALIDATING_WEBHOOKS",
        value_delimiter = ',',
        default_value = "dbwarden-validator"
    )]
    validating_webhooks: Vec<String>,

    /// How long a certificate the operator makes is valid, e.g. 365d.
    #[arg(long, env = "DBWARDEN_WEBHOOK_CERT_VALIDITY", default_value = "365d", value_parser = parse_duration)]
    webhook_cert_validity: Duration,

    /// Renew the certificate this long before it lapses, e.g. 30d.
    #[arg(long, env = "DBWARDEN_WEBHOOK_CERT_RENEW_BEFORE", default_value = "30d", value_parser = parse_duration)]
    webhook_cert_renew_before: Duration,

    /// How often every replica checks the certificate Secret (to renew it, or to serve the one
    /// another replica or cert-manager renewed).
    #[arg(long, env = "DBWARDEN_WEBHOOK_CERT_CHECK_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    webhook_cert_check_interval: Duration,

    /// Leave caBundle alone (cert-manager's CA injector sets it).
    #[arg(long, env = "DBWARDEN_SKIP_CA_BUNDLE_PATCH")]
    skip_ca_bundle_patch: bool,

    /// The sidecar image injected into pods.
    #[arg(long, env = "DBWARDEN_SIDECAR_IMAGE")]
    sidecar_image: String,

    /// Inject native sidecars (init containers with restartPolicy Always): auto decides from the
    /// API server's version (1.29 and later).
    #[arg(long, env = "DBWARDEN_NATIVE_SIDECAR", value_enum, default_value_t = Native::Auto)]
    native_sidecar: Native,

    /// Log format.
    #[arg(long, env = "DBWARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// This replica's name in leader election and in the Events it publishes (the pod name in
    /// a cluster; a name from the process id otherwise).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,

    /// The Lease, in --namespace, that elects the replica running the controllers.
    #[arg(long, env = "DBWARDEN_LEASE_NAME", default_value = "dbwarden-operator")]
    lease_name: String,

    /// How long decided ApprovalRequests (Denied, Expired, Executed) are kept, e.g. 7d or 12h.
    #[arg(long, env = "DBWARDEN_APPROVAL_RETENTION", default_value = "7d", value_parser = parse_duration)]
    approval_retention: Duration,

    /// Slack-compatible incoming-webhook URL to announce new approval requests to (a credential:
    /// set it from a Secret; the chart's `approvals.notifications.webhookSecret` does).
    #[arg(long, env = "DBWARDEN_APPROVAL_WEBHOOK_URL", hide_env_values = true)]
    approval_webhook_url: Option<String>,

    /// Seconds a leader's Lease holds without renewal before another replica takes over.
    #[arg(long, env = "DBWARDEN_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    lease_duration_seconds: u64,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    dbwarden_crds::parse_duration(text).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Native {
    Auto,
    Always,
    Never,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(args.log_format);
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let notifier = args
        .approval_webhook_url
        .as_deref()
        .map(|url| Notifier::new(url, metrics.clone()))
        .transpose()
        .context("--approval-webhook-url")?;
    let readiness = Readiness::default();

    let native_sidecar = match args.native_sidecar {
        Native::Always => true,
        Native::Never => false,
        Native::Auto => {
            let version = client
                .apiserver_version()
                .await
                .context("reading the API server's version")?;
            let minor: u32 = version.minor.trim_end_matches('+').parse().unwrap_or(0);
            version.major == "1" && minor >= 29
        }
    };
    let settings = InjectSettings {
        native_sidecar,
        ..InjectSettings::new(args.sidecar_image.clone())
    };

    let cert_policy = CertPolicy {
        names: args.webhook_names.clone(),
        validity: args.webhook_cert_validity,
        renew_before: args.webhook_cert_renew_before,
    };
    let serving =
        ServingCert::ensure_in_secret(&client, &args.namespace, &args.webhook_secret, &cert_policy)
            .await
            .context("preparing the webhook serving certificate")?;
    let bundles = (!args.skip_ca_bundle_patch).then(|| Bundles {
        mutating: args.mutating_webhooks.clone(),
        validating: args.validating_webhooks.clone(),
    });
    if let Some(bundles) = &bundles {
        // Added to what the bundles hold: other replicas may still serve an older certificate.
        certs::trust_ca(&client, bundles, &serving.ca_pem, "")
            .await
            .context("setting caBundle on the webhook configurations")?;
    }
    let cert = Arc::new(ReloadableCert::new(serving.certified_key()?));
    let renewals = certs::keep_fresh(
        client.clone(),
        args.namespace.clone(),
        args.webhook_secret.clone(),
        cert_policy,
        bundles,
        cert.clone(),
        serving,
        args.webhook_cert_check_interval,
        shutdown_signal(),
    );

    // The webhooks answer from a reflector's view of every policy.
    let (policies, writer) = reflector::store::<DatabaseAccessPolicy>();
    let reflect = reflector(
        writer,
        watcher(Api::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|_| async {});
    let operator_username = whoami(&client).await?;
    let webhook_state = WebhookState {
        policies: policies.clone(),
        client: client.clone(),
        settings: Arc::new(settings),
        operator_username: operator_username.into(),
    };
    let webhook_listener = tokio::net::TcpListener::bind(args.webhook_addr)
        .await
        .with_context(|| format!("binding {}", args.webhook_addr))?;
    let webhooks = webhook::serve(
        webhook_listener,
        cert,
        webhook::router(webhook_state),
        shutdown_signal(),
    );

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    let endpoints = axum::serve(listener, http::router(metrics.clone(), readiness.clone()))
        .with_graceful_shutdown(shutdown_signal());

    let identity = args
        .instance
        .clone()
        .unwrap_or_else(|| format!("dbwarden-operator-{}", std::process::id()));
    let candidate = Candidate {
        namespace: args.namespace.clone(),
        lease: args.lease_name.clone(),
        identity: identity.clone(),
        duration: Duration::from_secs(args.lease_duration_seconds),
        renew: Duration::from_secs(args.lease_duration_seconds / 3).max(Duration::from_secs(1)),
    };
    let (leading, election) = leader::elect(client.clone(), candidate, shutdown_signal());
    let ctx = Context::new(client, metrics, Some(identity));
    let ready = async {
        if policies.wait_until_ready().await.is_ok() {
            readiness.set_ready();
            tracing::info!(webhook_addr = %args.webhook_addr, metrics_addr = %args.metrics_addr, native_sidecar, "dbwarden-operator ready");
        }
    };
    let (served, webhooks_served, (), (), (), elected, ()) = tokio::join!(
        endpoints,
        webhooks,
        run_controllers_while_leading(ctx, args.approval_retention, notifier, leading),
        async {
            tokio::select! {
                () = reflect => {}
                () = shutdown_signal() => {}
            }
        },
        ready,
        election,
        renewals,
    );
    elected.context("leader election")?;
    served.context("serving HTTP endpoints")?;
    webhooks_served.context("serving the webhooks")?;
    tracing::info!("dbwarden-operator stopped");
    Ok(())
}

/// The operator's own user name as the API server sees it (a ServiceAccount in a cluster; any
/// user outside one), so the approval webhook can tell the operator's writes from people's.
async fn whoami(client: &kube::Client) -> anyhow::Result<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(
            &kube::api::PostParams::default(),
            &SelfSubjectReview::default(),
        )
        .await
        .context("asking the API server who the operator is (SelfSubjectReview)")?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .context("the API server did not say who the operator is")
}

/// Runs the controllers whenever this replica leads, stopping them when it stops leading.
async fn run_controllers_while_leading(
    ctx: Context,
    retention: Duration,
    notifier: Option<Notifier>,
    mut leading: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if leading.wait_for(|leads| *leads).await.is_err() {
            return; // the election ended: shutting down
        }
        tracing::info!("leading: starting the controllers");
        let deposed = |mut leading: tokio::sync::watch::Receiver<bool>| async move {
            let _ = leading.wait_for(|leads| !*leads).await;
        };
        tokio::join!(
            policy::run(ctx.clone(), deposed(leading.clone())),
            approval::controller::run(
                ctx.clone(),
                retention,
                notifier.clone(),
                deposed(leading.clone())
            ),
        );
        tracing::info!("controllers stopped");
    }
}

/// Completes on SIGTERM (as the kubelet stops a pod) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; stop with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
