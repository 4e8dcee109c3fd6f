//! The TLS server configuration presented to clients.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the client TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A PEM file could not be read or parsed.
    #[error("reading {what} from {path}")]
    Pem {
        /// Certificate or key.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the certificate/key pair.
    #[error("building the TLS configuration")]
    Rustls(#[from] rustls::Error),
}

/// Loads a certificate chain and key into a rustls server configuration (TLS 1.2 and 1.3, ring).
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let pem_err = |what, path: &Path| {
        let path = path.display().to_string();
        move |source| TlsConfigError::Pem { what, path, source }
    };
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(pem_err("certificates", cert_file))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err("certificates", cert_file))?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(pem_err("private key", key_file))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}
