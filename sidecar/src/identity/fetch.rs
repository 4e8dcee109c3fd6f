//! Fetching a JWKS over HTTPS: one GET per fetch, bounded in time and size, no redirects.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::error::{FetchError, VerifierError};
use super::{FETCH_TIMEOUT, MAX_JWKS_BYTES};

/// Fetches one `jwksUri`.
pub(super) struct JwksClient {
    uri: Uri,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    tls: TlsConnector,
}

impl fmt::Debug for JwksClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksClient")
            .field("uri", &self.uri)
            .finish()
    }
}

impl JwksClient {
    /// A client for `uri` (must be `https://`), trusting the webpki roots plus the PEM
    /// certificates in `ca_file`.
    pub(super) fn new(uri: &str, ca_file: Option<&Path>) -> Result<Self, VerifierError> {
        let bad = |reason| VerifierError::Uri {
            uri: uri.to_owned(),
            reason,
        };
        let parsed: Uri = uri.parse().map_err(|_| bad("not a URL"))?;
        if parsed.scheme_str() != Some("https") {
            return Err(bad("must be an https:// URL"));
        }
        let host = parsed
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("has no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name =
            ServerName::try_from(host.clone()).map_err(|_| bad("host is not a valid name"))?;
        let port = parsed.port_u16().unwrap_or(443);
        Ok(Self {
            tls: TlsConnector::from(Arc::new(tls_config(ca_file)?)),
            uri: parsed,
            host,
            port,
            server_name,
        })
    }

    /// GETs the document, within [`FETCH_TIMEOUT`] and [`MAX_JWKS_BYTES`].
    pub(super) async fn fetch(&self) -> Result<Bytes, FetchError> {
        tokio::time::timeout(FETCH_TIMEOUT, self.get())
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    async fn get(&self) -> Result<Bytes, FetchError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(FetchError::Connect)?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(FetchError::Tls)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(FetchError::Http)?;
        // The connection is driven beside the request and dropped with this fetch.
        let driver = AbortOnDrop(tokio::spawn(connection));
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = self.uri.authority().map_or("", |a| a.as_str());
        let request = http::Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "dbwarden-sidecar")
            .body(Empty::<Bytes>::new())
            .map_err(FetchError::Request)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(FetchError::Http)?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge
                } else {
                    FetchError::Body
                }
            })?
            .to_bytes();
        drop(driver);
        Ok(body)
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn tls_config(ca_file: Option<&Path>) -> Result<ClientConfig, VerifierError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let ca_error = |reason: String| VerifierError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_error(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_error("no PEM certificate in it".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
