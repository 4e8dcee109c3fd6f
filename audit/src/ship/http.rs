//! One HTTP(S) POST of an encoded batch.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::config::{Format, ShipperConfig};
use super::otlp;
use crate::spool::Batch;

/// Delivery errors. None of them carries the bearer token.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The URL does not parse or is not http(s).
    #[error("collector URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// TLS setup (the CA bundle) failed.
    #[error("collector TLS setup: {0}")]
    Tls(String),
    /// The bearer token cannot be sent as a header (its value is not shown).
    #[error("bearer token is not a valid HTTP header value")]
    BadToken,
    /// The shipper's thread or its runtime could not be started.
    #[error("starting the audit shipper's thread")]
    Start(#[source] std::io::Error),
    /// Encoding the batch failed.
    #[error("encoding the batch: {0}")]
    Encode(#[from] otlp::OtlpError),
    /// Compressing the batch failed.
    #[error("gzip: {0}")]
    Gzip(#[source] std::io::Error),
    /// Building the request failed.
    #[error("building the request: {0}")]
    Request(#[from] http::Error),
    /// Connecting or sending failed.
    #[error("sending to the collector: {0}")]
    Send(#[from] hyper_util::client::legacy::Error),
    /// Reading the answer failed.
    #[error("reading the collector's answer: {0}")]
    Answer(#[from] hyper::Error),
    /// No answer within the request timeout.
    #[error("collector did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// A non-2xx answer.
    #[error("collector answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Start of the answer body.
        body: String,
    },
}

impl ShipError {
    /// Bounded metric label.
    pub fn label(&self) -> &'static str {
        match self {
            ShipError::Url { .. } => "url",
            ShipError::Tls(_) | ShipError::BadToken => "config",
            ShipError::Start(_) => "start",
            ShipError::Encode(_) | ShipError::Gzip(_) | ShipError::Request(_) => "encode",
            ShipError::Send(_) | ShipError::Answer(_) => "connect",
            ShipError::Timeout(_) => "timeout",
            ShipError::Status { .. } => "status",
        }
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A reusable client for one collector.
#[derive(Debug, Clone)]
pub struct Sender {
    client: HttpClient,
    uri: http::Uri,
    cfg: Arc<ShipperConfig>,
}

impl Sender {
    /// Checks the URL and builds the client (public roots plus `ca_pem`).
    pub fn new(cfg: Arc<ShipperConfig>) -> Result<Self, ShipError> {
        // What errors show of the URL: never its credentials.
        let shown = without_userinfo(&cfg.url);
        let uri: http::Uri =
            cfg.url
                .parse()
                .map_err(|e: http::uri::InvalidUri| ShipError::Url {
                    url: shown.clone(),
                    reason: e.to_string(),
                })?;
        if shown != cfg.url {
            return Err(ShipError::Url {
                url: shown,
                reason: "credentials in the URL are not accepted (the URL is logged): use a \
                         bearer token from a Secret"
                    .into(),
            });
        }
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ShipError::Url {
                url: cfg.url.clone(),
                reason: "want http(s)://host/...".into(),
            });
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots_anchors());
        if let Some(pem) = &cfg.ca_pem {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ShipError::Tls(format!("CA bundle: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ShipError::Tls(format!("CA certificate: {e}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ShipError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Sender { client, uri, cfg })
    }

    /// Encodes `records` per the configured format (and gzip).
    pub fn encode(&self, batch: &Batch) -> Result<Bytes, ShipError> {
        let body = match self.cfg.format {
            // The spool's lines are the body as they are.
            Format::Ndjson if !self.cfg.gzip => return Ok(batch.lines.clone()),
            Format::Ndjson => batch.lines.to_vec(),
            Format::Otlp => otlp::encode(batch.records())?,
        };
        if !self.cfg.gzip {
            return Ok(Bytes::from(body));
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).map_err(ShipError::Gzip)?;
        Ok(Bytes::from(gz.finish().map_err(ShipError::Gzip)?))
    }

    /// POSTs an encoded body; `Ok` only on a 2xx answer.
    pub async fn post(&self, body: Bytes) -> Result<(), ShipError> {
        let content_type = match self.cfg.format {
            Format::Ndjson => "application/x-ndjson",
            Format::Otlp => "application/json",
        };
        let mut req = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, content_type)
            .header(
                http::header::USER_AGENT,
                concat!("dbwarden-audit/", env!("CARGO_PKG_VERSION")),
            );
        if self.cfg.gzip {
            req = req.header(http::header::CONTENT_ENCODING, "gzip");
        }
        if let Some(token) = &self.cfg.bearer_token {
            let mut value = http::HeaderValue::try_from(format!("Bearer {}", token.0))
                .map_err(|_| ShipError::BadToken)?;
            value.set_sensitive(true);
            req = req.header(http::header::AUTHORIZATION, value);
        }
        let req = req.body(Full::new(body))?;
        let timeout = self.cfg.request_timeout;
        let exchange = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, ShipError>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ShipError::Timeout(timeout))??;
        if status.is_success() {
            return Ok(());
        }
        let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        Err(ShipError::Status {
            status: status.as_u16(),
            body: snippet,
        })
    }
}

fn webpki_roots_anchors() -> impl Iterator<Item = rustls::pki_types::TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS.iter().cloned()
}

/// `url` for error messages and logs: whatever stands between the scheme and the last `@`
/// before the query is replaced, so credentials (even a password with a `/` in it) never show.
pub fn without_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}…{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_collector_url_are_refused_and_not_repeated() {
        let cfg = Arc::new(crate::ShipperConfig::new(
            "https://audit:s3cret@collector.example/ingest",
        ));
        let Err(e) = Sender::new(cfg) else {
            panic!("a URL with credentials was accepted");
        };
        let shown = e.to_string();
        assert!(
            !shown.contains("s3cret") && !shown.contains("audit:"),
            "{shown}"
        );
        assert!(
            shown.contains("https://…@collector.example/ingest"),
            "{shown}"
        );
        assert_eq!(without_userinfo("https://u:a/b@h/x"), "https://…@h/x");
        assert_eq!(without_userinfo("http://h:1/p?q=a@b"), "http://h:1/p?q=a@b");
        assert_eq!(without_userinfo("u:p@h"), "…@h");
    }
}
