//! The webhook serving certificate: a self-signed CA and a serving certificate, kept in a Secret
//! so every replica serves the same one, with the CA patched into the webhook configurations'
//! `caBundle` (the alternative, cert-manager, is the chart's to configure).

use std::sync::{Arc, RwLock};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

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
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert").finish_non_exhaustive()
    }
}

const CA_KEY: &str = "ca.crt";
const CERT_KEY: &str = "tls.crt";
const KEY_KEY: &str = "tls.key";

impl ServingCert {
    /// A new CA (valid 10 years) and a serving certificate for `names` (DNS names, or IP
    /// addresses, which become IP SANs as the API server requires), valid 1 year.
    pub fn generate(names: &[String]) -> Result<Self, CertError> {
        let year = Timestamp::now()
            .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC)
            .year() as i32;
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name
            .push(DnType::CommonName, "dbwarden webhook CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        ca.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(names.to_vec())?;
        serving.distinguished_name.push(
            DnType::CommonName,
            names
                .first()
                .map(String::as_str)
                .unwrap_or("dbwarden-webhook"),
        );
        serving.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        serving.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        serving.not_after = rcgen::date_time_ymd(year + 1, 1, 1);
        let cert_pem = serving.signed_by(&key, &issuer)?.pem();
        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// The certificate kept in Secret `namespace/name`, or a new one stored there. When replicas
    /// race, the first to create the Secret wins and the others read it.
    pub async fn ensure_in_secret(
        client: &kube::Client,
        namespace: &str,
        name: &str,
        names: &[String],
    ) -> Result<Self, CertError> {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        if let Some(secret) = secrets.get_opt(name).await? {
            return Self::from_secret(&secret, &format!("{namespace}/{name}"));
        }
        let fresh = Self::generate(names)?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(
                [
                    (CA_KEY, &fresh.ca_pem),
                    (CERT_KEY, &fresh.cert_pem),
                    (KEY_KEY, &fresh.key_pem),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
            ),
            ..Default::default()
        };
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(%namespace, %name, "stored a new webhook serving certificate");
                Ok(fresh)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Self::from_secret(&secrets.get(name).await?, &format!("{namespace}/{name}"))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn from_secret(secret: &Secret, id: &str) -> Result<Self, CertError> {
        let get = |key: &'static str| -> Result<String, CertError> {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .ok_or_else(|| CertError::Incomplete {
                    secret: id.into(),
                    key,
                })
        };
        Ok(Self {
            ca_pem: get(CA_KEY)?,
            cert_pem: get(CERT_KEY)?,
            key_pem: get(KEY_KEY)?,
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

/// Sets `caBundle` on every webhook of the named configurations (missing ones are skipped with
/// a log line: the chart may install only some).
pub async fn patch_ca_bundles(
    client: &kube::Client,
    mutating: &[String],
    validating: &[String],
    ca_pem: &str,
) -> Result<(), CertError> {
    let bundle = ByteString(ca_pem.as_bytes().to_vec());
    set_bundles(
        Api::<MutatingWebhookConfiguration>::all(client.clone()),
        mutating,
        |config| {
            for webhook in config.webhooks.iter_mut().flatten() {
                webhook.client_config.ca_bundle = Some(bundle.clone());
            }
        },
    )
    .await?;
    set_bundles(
        Api::<ValidatingWebhookConfiguration>::all(client.clone()),
        validating,
        |config| {
            for webhook in config.webhooks.iter_mut().flatten() {
                webhook.client_config.ca_bundle = Some(bundle.clone());
            }
        },
    )
    .await
}

async fn set_bundles<K>(
    api: Api<K>,
    names: &[String],
    set: impl Fn(&mut K),
) -> Result<(), CertError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    for name in names {
        let Some(mut config) = api.get_opt(name).await? else {
            tracing::warn!(%name, kind = std::any::type_name::<K>(), "webhook configuration not found; caBundle not set");
            continue;
        };
        set(&mut config);
        api.replace(name, &PostParams::default(), &config).await?;
    }
    Ok(())
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
