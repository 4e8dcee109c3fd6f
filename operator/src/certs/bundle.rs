//! The webhooks' `caBundle`: the operator keeps the CA of the certificate it serves in it,
//! only ever adding, so replicas still serving an older certificate stay trusted.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use kube::api::{Api, PostParams};

use super::CertError;

/// Where the renewed CA goes: the webhook configurations whose `caBundle` the operator keeps.
#[derive(Debug, Clone)]
pub struct Bundles {
    /// MutatingWebhookConfiguration names.
    pub mutating: Vec<String>,
    /// ValidatingWebhookConfiguration names.
    pub validating: Vec<String>,
}

/// Most CA certificates a webhook's `caBundle` keeps: the newest first, so a few renewals
/// back are still trusted while replicas switch over and older ones drop out.
const BUNDLE_CAS: usize = 3;

/// Makes every webhook of `bundles` trust `ca_pem`. Where a `caBundle` lacks it, it goes in
/// first, followed by `also` (the CA served until now) and the certificates the bundle held
/// (up to `BUNDLE_CAS` in all): nothing another replica may still be serving is dropped.
/// Webhooks that trust it already are left as they are. True when a configuration was written.
pub async fn trust_ca(
    client: &kube::Client,
    bundles: &Bundles,
    ca_pem: &str,
    also: &str,
) -> Result<bool, CertError> {
    let (mutating, validating) = (&bundles.mutating, &bundles.validating);
    let written = set_ca_bundles(client, mutating, validating, |current| {
        let held = current
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default();
        trusting(&held, ca_pem, also).map(|bundle| ByteString(bundle.into_bytes()))
    })
    .await?;
    if written {
        tracing::info!("webhook caBundle updated to trust the serving certificate's CA");
    }
    Ok(written)
}

/// `held` with the certificates of `ca_pem` first, then those of `also`, then the ones it had
/// (up to [`BUNDLE_CAS`], or all of `ca_pem`'s if more); `None` when it holds every
/// certificate of `ca_pem` already (or `ca_pem` has none).
fn trusting(held: &str, ca_pem: &str, also: &str) -> Option<String> {
    let held = pem_certificates(held);
    let wanted = pem_certificates(ca_pem);
    if wanted.iter().all(|cert| held.contains(cert)) {
        return None;
    }
    let most = BUNDLE_CAS.max(wanted.len());
    let mut keep: Vec<&str> = Vec::with_capacity(most);
    for cert in wanted.iter().chain(&pem_certificates(also)).chain(&held) {
        if !keep.contains(cert) && keep.len() < most {
            keep.push(cert);
        }
    }
    Some(keep.iter().map(|cert| format!("{cert}\n")).collect())
}

/// The PEM certificate blocks in `bundle`, without the text around them (a placeholder, or a
/// damaged bundle, is not kept).
fn pem_certificates(bundle: &str) -> Vec<&str> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        certs.push(&rest[start..end]);
        rest = &rest[end..];
    }
    certs
}

/// Sets the `caBundle` that `bundle` makes of each webhook's current one (`None`: leave it) on
/// the named configurations (missing ones are skipped with a log line: the chart may install
/// only some), writing back only those it changed; true when one was written.
async fn set_ca_bundles(
    client: &kube::Client,
    mutating: &[String],
    validating: &[String],
    bundle: impl Fn(&Option<ByteString>) -> Option<ByteString>,
) -> Result<bool, CertError> {
    let set = |config: &mut dyn WebhookClients| {
        let mut changed = false;
        for client in config.clients() {
            if let Some(new) = bundle(&client.ca_bundle) {
                client.ca_bundle = Some(new);
                changed = true;
            }
        }
        changed
    };
    let mutated = update_configs::<MutatingWebhookConfiguration>(client, mutating, &set).await?;
    let validated =
        update_configs::<ValidatingWebhookConfiguration>(client, validating, &set).await?;
    Ok(mutated || validated)
}

/// The client configurations of a webhook configuration's webhooks.
trait WebhookClients {
    fn clients(&mut self) -> Box<dyn Iterator<Item = &mut WebhookClientConfig> + '_>;
}

impl WebhookClients for MutatingWebhookConfiguration {
    fn clients(&mut self) -> Box<dyn Iterator<Item = &mut WebhookClientConfig> + '_> {
        Box::new(
            self.webhooks
                .iter_mut()
                .flatten()
                .map(|w| &mut w.client_config),
        )
    }
}

impl WebhookClients for ValidatingWebhookConfiguration {
    fn clients(&mut self) -> Box<dyn Iterator<Item = &mut WebhookClientConfig> + '_> {
        Box::new(
            self.webhooks
                .iter_mut()
                .flatten()
                .map(|w| &mut w.client_config),
        )
    }
}

/// Applies `change` to each named configuration and writes back those it changed (it says so);
/// true when one was written.
async fn update_configs<K>(
    client: &kube::Client,
    names: &[String],
    change: &dyn Fn(&mut dyn WebhookClients) -> bool,
) -> Result<bool, CertError>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
        + WebhookClients
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api = Api::<K>::all(client.clone());
    let mut written = false;
    for name in names {
        // A conflict (another replica, or an apply, wrote in between) reads it again.
        for attempt in 1..=3 {
            let Some(mut config) = api.get_opt(name).await? else {
                tracing::warn!(%name, kind = std::any::type_name::<K>(), "webhook configuration not found; caBundle not set");
                break;
            };
            if !change(&mut config) {
                break;
            }
            match api.replace(name, &PostParams::default(), &config).await {
                Ok(_) => {
                    written = true;
                    break;
                }
                Err(kube::Error::Api(status)) if status.code == 409 && attempt < 3 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_keep_only_whole_certificates() {
        let a = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----";
        let b = "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----";
        assert_eq!(pem_certificates(&format!("{a}\n{b}\n")), [a, b]);
        assert_eq!(pem_certificates(&format!("junk {a} junk")), [a]);
        assert!(pem_certificates("Cg==").is_empty());
        // A block cut short is not a certificate.
        assert!(pem_certificates("-----BEGIN CERTIFICATE-----\nAAA").is_empty());
    }

    #[test]
    fn a_new_ca_goes_first_and_nothing_still_served_is_dropped() {
        let pem = |x: &str| format!("-----BEGIN CERTIFICATE-----\n{x}\n-----END CERTIFICATE-----");
        let (a, b, c, d) = (pem("A"), pem("B"), pem("C"), pem("D"));
        // Trusted already: left alone.
        assert_eq!(
            trusting(&format!("{b}\n{a}\n"), &format!("{a}\n"), ""),
            None
        );
        // A placeholder gives way; the served CA follows the new one.
        assert_eq!(trusting("Cg==", &a, &b), Some(format!("{a}\n{b}\n")));
        // What the bundle held stays behind them, once, up to three in all.
        assert_eq!(
            trusting(&format!("{b}\n{c}\n{d}\n"), &a, &b),
            Some(format!("{a}\n{b}\n{c}\n"))
        );
        assert_eq!(
            trusting(&format!("{c}\n"), &a, ""),
            Some(format!("{a}\n{c}\n"))
        );
        // A CA file of two certificates, with text around them, is trusted once both are in.
        let two = format!("Bag Attributes\n{a}\nmore\n{b}\n");
        assert_eq!(trusting(&c, &two, ""), Some(format!("{a}\n{b}\n{c}\n")));
        assert_eq!(trusting(&format!("{b}\n{a}\n"), &two, ""), None);
        // Nothing to trust in a CA file without a certificate: left alone.
        assert_eq!(trusting(&c, "garbage", ""), None);
    }
}
