//! TLS towards the database: `require` (encrypt, do not verify) and `verify-full`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::Digest;

use crate::config::{TlsMode, UpstreamConfig};

/// Why the upstream TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    /// The CA file could not be read.
    #[error("reading CA certificates from {path}")]
    Ca {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the configuration.
    #[error("building the upstream TLS configuration")]
    Rustls(#[from] rustls::Error),
    /// The verifier could not be built from the CA.
    #[error("building the certificate verifier")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    /// The host is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// A ready TLS connector towards one database.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// The rustls configuration.
    pub config: Arc<ClientConfig>,
    /// The name checked against the certificate (and sent as SNI).
    pub server_name: ServerName<'static>,
}

/// Builds the connector for `upstream`, or `None` for `tls.mode: disable`.
pub fn connector(upstream: &UpstreamConfig) -> Result<Option<UpstreamTls>, UpstreamTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match upstream.tls.mode {
        TlsMode::Disable => return Ok(None),
        TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth(),
        TlsMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            if let Some(path) = &upstream.tls.ca_file {
                let ca_err = |source| UpstreamTlsError::Ca {
                    path: path.display().to_string(),
                    source,
                };
                for cert in CertificateDer::pem_file_iter(path).map_err(ca_err)? {
                    roots.add(cert.map_err(ca_err)?)?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    let name = upstream
        .tls
        .server_name
        .clone()
        .unwrap_or_else(|| upstream.host.clone());
    let server_name =
        ServerName::try_from(name.clone()).map_err(|_| UpstreamTlsError::ServerName(name))?;
    Ok(Some(UpstreamTls {
        config: Arc::new(config),
        server_name,
    }))
}

/// `sslmode=require`: the chain is not checked, but the handshake signatures still are.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The `tls-server-end-point` channel binding data (RFC 5929): the server certificate's
/// hash, with the certificate's own signature hash, SHA-256 for MD5/SHA-1/SHA-256.
pub fn server_end_point(cert: &[u8]) -> Vec<u8> {
    // DER of the signature algorithm OIDs that use SHA-384 and SHA-512.
    const SHA384: [&[u8]; 2] = [
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
        &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c,
        ],
    ];
    const SHA512: [&[u8]; 2] = [
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
        &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d,
        ],
    ];
    let has = |oids: [&[u8]; 2]| {
        oids.iter()
            .any(|oid| cert.windows(oid.len()).any(|w| w == *oid))
    };
    if has(SHA512) {
        sha2::Sha512::digest(cert).to_vec()
    } else if has(SHA384) {
        sha2::Sha384::digest(cert).to_vec()
    } else {
        sha2::Sha256::digest(cert).to_vec()
    }
}
