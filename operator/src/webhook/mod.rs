//! The admission webhooks, served over TLS on one port:
//!
//! | path | kind | for |
//! | --- | --- | --- |
//! | `/inject/namespace` | mutating, pods | namespaces labelled `dbwarden.io/inject=enabled` (failure policy Fail) |
//! | `/inject/annotated` | mutating, pods | every other namespace; only annotated pods change (failure policy Ignore) |
//! | `/validate/policies` | validating, DatabaseAccessPolicy | the semantic validator, at apply time |
//! | `/mutate/approvals` | mutating, `approvalrequests/status` | records decisions, enforces four eyes |
//!
//! Two injection paths rather than one let the chart give opted-in namespaces a failing-closed
//! webhook without making every pod in the cluster depend on the operator.

mod approvals;
mod pods;
mod policies;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use dbwarden_crds::DatabaseAccessPolicy;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use kube::runtime::reflector::Store;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::certs::ReloadableCert;
use crate::inject::InjectSettings;

/// What the webhook handlers share.
#[derive(Clone)]
pub struct WebhookState {
    /// Every DatabaseAccessPolicy, kept current by a reflector.
    pub policies: Store<DatabaseAccessPolicy>,
    /// For what the reflector has not seen yet (a policy applied a moment ago).
    pub client: kube::Client,
    /// How sidecars are injected.
    pub settings: Arc<InjectSettings>,
    /// The operator's own user name: its status writes (expiry, conditions) pass unchanged.
    pub operator_username: Arc<str>,
}

impl std::fmt::Debug for WebhookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The webhook routes.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/inject/namespace", post(pods::inject_namespace))
        .route("/inject/annotated", post(pods::inject_annotated))
        .route("/validate/policies", post(policies::validate))
        .route("/mutate/approvals", post(approvals::decide))
        .with_state(state)
}

/// A TLS handshake or request that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over TLS with the certificate in `cert` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    cert: Arc<ReloadableCert>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> Result<(), rustls::Error> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a webhook connection failed");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "webhook connection ended with an error");
            }
        });
    }
}
