//! Notifications of new approval requests: a Slack-compatible incoming-webhook POST
//! (`{"text": "..."}`) for every request that becomes `Pending`, so approvers hear of it.
//!
//! Best effort, off the reconcile path: up to three attempts with a short backoff, each with a
//! timeout; the outcome is counted in `dbwarden_operator_approval_notifications_total`. The
//! webhook URL is a credential (whoever holds it can post), so it comes from a Secret through
//! the environment and is never logged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::Metrics;

/// Attempts per notification.
const ATTEMPTS: u32 = 3;
/// Time for one attempt.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The webhook URL could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Not an absolute http(s) URL (the value is not repeated: it is a credential).
    #[error("the approval notification URL is not an absolute http:// or https:// URL")]
    Url,
}

/// Posts notifications to one webhook.
#[derive(Clone)]
pub struct Notifier {
    url: http::Uri,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier for `url` (HTTPS with the webpki roots; plain HTTP for in-cluster relays).
    pub fn new(url: &str, metrics: Arc<Metrics>) -> Result<Self, NotifyError> {
        let url: http::Uri = url.trim().parse().map_err(|_| NotifyError::Url)?;
        if !matches!(url.scheme_str(), Some("https" | "http")) || url.host().is_none() {
            return Err(NotifyError::Url);
        }
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|_| NotifyError::Url)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            url,
            client: Client::builder(TokioExecutor::new()).build(connector),
            metrics,
        })
    }

    /// Sends `text` in the background.
    pub fn notify(&self, request: String, text: String) {
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.deliver(&text).await;
            this.metrics.notification(result.is_ok());
            match result {
                Ok(()) => tracing::info!(%request, "approvers notified"),
                Err(error) => {
                    tracing::warn!(%request, %error, "notifying approvers failed; the request stands")
                }
            }
        });
    }

    async fn deliver(&self, text: &str) -> Result<(), String> {
        let body = Bytes::from(serde_json::json!({ "text": text }).to_string());
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
            let request = http::Request::post(self.url.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
                .map_err(|e| e.to_string())?;
            match tokio::time::timeout(TIMEOUT, self.client.request(request)).await {
                Ok(Ok(response)) if response.status().is_success() => return Ok(()),
                Ok(Ok(response)) => last = format!("the webhook answered {}", response.status()),
                // The error's text can carry the URL; say what kind of failure it was.
                Ok(Err(error)) if error.is_connect() => last = "cannot connect".into(),
                Ok(Err(_)) => last = "request failed".into(),
                Err(_) => last = format!("no answer within {}s", TIMEOUT.as_secs()),
            }
        }
        Err(last)
    }
}
