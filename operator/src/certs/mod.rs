//! The webhook serving certificate: a self-signed CA and a serving certificate, kept in a Secret
//! so every replica serves the same one, with the CA patched into the webhook configurations'
//! `caBundle` (the alternative, cert-manager, is the chart's to configure).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

mod bundle;

pub use bundle::{Bundles, trust_ca};

/// Why the serving certificate could not be made, stored or served.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters.
    #[error("generating the webhook certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The PEM could not be read back.
    #[error("reading the webhook certificate PEM: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    /// rustls refused the key or the configuration.
    #[error("loading the webhook certificate into TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The Secret holds something other than a CA, certificate and key.
    #[error("Secret {secret} lacks key {key}; delete the Secret to have a new certificate made")]
    Incomplete {
        /// `namespace/name`.
        secret: String,
        /// The missing key.
        key: &'static str,
    },
    /// The API server refused.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// A CA certificate and the serving certificate and key it signed, PEM-encoded.
#[derive(Clone)]
pub struct ServingCert {
    /// What the API server trusts (`caBundle`).
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// Its private key; never logged.
    pub key_pem: String,
    /// When the certificate lapses, when the operator made it (cert-manager's have none: it
    /// renews them itself).
    pub not_after: Option<Timestamp>,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// What certificate to make, and when to renew it.
#[derive(Debug, Clone)]
pub struct CertPolicy {
    /// DNS names or IP addresses the serving certificate is for.
    pub names: Vec<String>,
    /// How long a new certificate (and its CA) is valid.
    pub validity: Duration,
    /// Renew this long before the certificate lapses.
    pub renew_before: Duration,
}

const CA_KEY: &str = "ca.crt";
const CERT_KEY: &str = "tls.crt";
const KEY_KEY: &str = "tls.key";
/// Annotation on the Secret recording when the operator's certificate lapses (RFC 3339).
const NOT_AFTER_ANNOTATION: &str = "dbwarden.io/not-after";

impl ServingCert {
    /// A new CA and a serving certificate for `policy.names` (DNS names, or IP addresses, which
    /// become IP SANs as the API server requires), both valid for `policy.validity`.
    pub fn generate(policy: &CertPolicy) -> Result<Self, CertError> {
        let now = Timestamp::now();
        let not_after = now
            .checked_add(
                SignedDuration::try_from(policy.validity)
                    .unwrap_or(SignedDuration::from_hours(24 * 365)),
            )
            .unwrap_or(now);
        let (not_before, expires) = (
            offset(
                now.saturating_sub(SignedDuration::from_hours(1))
                    .unwrap_or(now),
            ),
            offset(not_after),
        );

        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name
            .push(DnType::CommonName, "dbwarden webhook CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (ca.not_before, ca.not_after) = (not_before, expires);
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(policy.names.clone())?;
        let common_name = policy
            .names
            .first()
            .map(String::as_str)
            .unwrap_or("dbwarden-webhook");
        serving
            .distinguished_name
            .push(DnType::CommonName, common_name);
        serving.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        (serving.not_before, serving.not_after) = (not_before, expires);
        let cert_pem = serving.signed_by(&key, &issuer)?.pem();
        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem: key.serialize_pem(),
            not_after: Some(not_after),
        })
    }

    /// True when the certificate should be renewed now.
    pub fn due(&self, renew_before: Duration, now: Timestamp) -> bool {
        let margin = SignedDuration::try_from(renew_before).unwrap_or(SignedDuration::MAX);
        self.not_after.is_some_and(|lapses| {
            lapses
                .checked_sub(margin)
                .is_ok_and(|renew_at| renew_at <= now)
        })
    }

    /// The certificate kept in Secret `namespace/name`, or a new one stored there. When replicas
    /// race, the first to create the Secret wins and the others read it.
    pub async fn ensure_in_secret(
        client: &kube::Client,
        namespace: &str,
        name: &str,
        policy: &CertPolicy,
    ) -> Result<Self, CertError> {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        if let Some(secret) = secrets.get_opt(name).await? {
            return Self::from_secret(&secret, &format!("{namespace}/{name}"));
        }
        let fresh = Self::generate(policy)?;
        let mut secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            ..Default::default()
        };
        fresh.store_in(&mut secret);
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(%namespace, %name, not_after = ?fresh.not_after, "stored a new webhook serving certificate");
                Ok(fresh)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Self::from_secret(&secrets.get(name).await?, &format!("{namespace}/{name}"))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn store_in(&self, secret: &mut Secret) {
        secret.data = Some(
            [
                (CA_KEY, &self.ca_pem),
                (CERT_KEY, &self.cert_pem),
                (KEY_KEY, &self.key_pem),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
        );
        if let Some(not_after) = self.not_after {
            secret
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(NOT_AFTER_ANNOTATION.into(), not_after.to_string());
        }
    }

    fn from_secret(secret: &Secret, id: &str) -> Result<Self, CertError> {
        let get = |key: &'static str| -> Result<String, CertError> {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .filter(|pem| !pem.trim().is_empty())
                .ok_or_else(|| CertError::Incomplete {
                    secret: id.into(),
                    key,
                })
        };
        let not_after = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(NOT_AFTER_ANNOTATION))
            .and_then(|t| t.parse().ok());
        Ok(Self {
            ca_pem: get(CA_KEY)?,
            cert_pem: get(CERT_KEY)?,
            key_pem: get(KEY_KEY)?,
            not_after,
        })
    }

    /// The certificate and key as rustls serves them.
    pub fn certified_key(&self) -> Result<CertifiedKey, CertError> {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())?;
        let provider = rustls::crypto::ring::default_provider();
        Ok(CertifiedKey::from_der(chain, key, &provider)?)
    }
}

fn offset(at: Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(at.as_second())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Keeps the served certificate current until `shutdown`: at once and then every `every`,
/// renews the Secret's certificate when it is due (a compare-and-swap among replicas), makes
/// sure the webhook configurations trust the CA of the Secret's certificate (bundled with the
/// CA served until then, so replicas still serving the old certificate stay trusted), and only
/// then serves whatever the Secret holds if it differs from what is served (renewed by another
/// replica, or by cert-manager).
#[allow(clippy::too_many_arguments)]
pub async fn keep_fresh(
    client: kube::Client,
    namespace: String,
    name: String,
    policy: CertPolicy,
    bundles: Option<Bundles>,
    resolver: Arc<ReloadableCert>,
    mut served: ServingCert,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        // Check at once too: a certificate may have come due while no operator ran.
        let checked = refresh(
            &client,
            &namespace,
            &name,
            &policy,
            bundles.as_ref(),
            &served,
        )
        .await;
        match checked {
            Ok(None) => {}
            Ok(Some(current)) => match current.certified_key() {
                Ok(key) => {
                    resolver.set(key);
                    tracing::info!(not_after = ?current.not_after, "serving a renewed webhook certificate");
                    served = current;
                }
                Err(error) => {
                    tracing::error!(%error, "the renewed webhook certificate cannot be served")
                }
            },
            Err(error) => {
                tracing::warn!(%error, "checking the webhook certificate failed; retrying")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = &mut shutdown => return,
        }
    }
}

/// One check: the certificate to serve when it differs from `served`.
async fn refresh(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    policy: &CertPolicy,
    bundles: Option<&Bundles>,
    served: &ServingCert,
) -> Result<Option<ServingCert>, CertError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let id = format!("{namespace}/{name}");
    let current = match secrets.get_opt(name).await? {
        None => ServingCert::ensure_in_secret(client, namespace, name, policy).await?,
        Some(secret) => {
            let stored = ServingCert::from_secret(&secret, &id)?;
            if stored.due(policy.renew_before, Timestamp::now()) {
                let fresh = ServingCert::generate(policy)?;
                let mut renewed = secret.clone();
                fresh.store_in(&mut renewed);
                // The resourceVersion read above makes this a compare-and-swap among replicas.
                match secrets
                    .replace(name, &PostParams::default(), &renewed)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(secret = %id, not_after = ?fresh.not_after, "renewed the webhook certificate");
                        fresh
                    }
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        ServingCert::from_secret(&secrets.get(name).await?, &id)?
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                stored
            }
        }
    };
    // Before it is served, the API server must trust its CA (beside the one served until
    // now, for replicas still switching over). Checked every time, so an update that failed
    // (here or on the replica that renewed) is made again. The API server learns of an
    // updated configuration through a watch, so a certificate whose CA was only just added
    // is served from the next check on (the one served now stays valid long after).
    let changed = current.cert_pem != served.cert_pem;
    if let Some(bundles) = bundles
        && trust_ca(client, bundles, &current.ca_pem, &served.ca_pem).await?
        && changed
    {
        tracing::info!("serving the renewed webhook certificate from the next check on");
        return Ok(None);
    }
    Ok(changed.then_some(current))
}

/// Serves whichever certificate was last set, so a rotated one takes effect without a restart.
#[derive(Debug)]
pub struct ReloadableCert(RwLock<Arc<CertifiedKey>>);

impl ReloadableCert {
    /// Starts serving `cert`.
    pub fn new(cert: CertifiedKey) -> Self {
        Self(RwLock::new(Arc::new(cert)))
    }

    /// Serves `cert` from the next handshake on.
    pub fn set(&self, cert: CertifiedKey) {
        if let Ok(mut current) = self.0.write() {
            *current = Arc::new(cert);
        }
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|current| current.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(validity_secs: u64) -> CertPolicy {
        CertPolicy {
            names: vec![
                "127.0.0.1".into(),
                "dbwarden-webhook.dbwarden-system.svc".into(),
            ],
            validity: Duration::from_secs(validity_secs),
            renew_before: Duration::from_secs(30 * 86400),
        }
    }

    #[test]
    fn renewal_is_due_within_the_margin_only() {
        let cert = ServingCert::generate(&policy(365 * 86400)).unwrap();
        let now = Timestamp::now();
        assert!(!cert.due(Duration::from_secs(30 * 86400), now));
        let later = now
            .checked_add(SignedDuration::from_hours(24 * 340))
            .unwrap();
        assert!(cert.due(Duration::from_secs(30 * 86400), later));
        // A certificate the operator did not make (cert-manager's) is never due here.
        let foreign = ServingCert {
            not_after: None,
            ..cert
        };
        assert!(!foreign.due(Duration::from_secs(30 * 86400), later));
    }

    #[test]
    fn generated_certificate_loads_into_rustls_and_round_trips_through_a_secret() {
        let cert = ServingCert::generate(&policy(3600)).unwrap();
        cert.certified_key().unwrap();
        let mut secret = Secret::default();
        cert.store_in(&mut secret);
        let back = ServingCert::from_secret(&secret, "ns/name").unwrap();
        assert_eq!(back.cert_pem, cert.cert_pem);
        assert_eq!(
            back.not_after.map(|t| t.as_second()),
            cert.not_after.map(|t| t.as_second())
        );
    }
}
