//! What the story adapts from examples/: the policy pointed at the test database, and the pod
//! the ReplicaSet controller would create from the example Deployment (no controller-manager
//! runs on the test control plane).

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

/// Where the example policy must point in the test, and the keys it must trust.
#[derive(Debug)]
pub struct TestDatabase<'a> {
    /// The test PostgreSQL's port on 127.0.0.1.
    pub port: u16,
    /// The Secret (and its key) holding the CA that signed the test database's certificate.
    pub ca_secret: (&'a str, &'a str),
    /// The listener port in the pod.
    pub listen_port: u16,
    /// The inline JWKS of the test's identity provider.
    pub jwks: String,
    /// The test's audit collector.
    pub audit_sink: String,
}

/// examples/production-guardrails.yaml with only what must differ in the test changed, as
/// YAML: the database address and its CA (verify-full stays), the listener port (every "pod"
/// here shares the host's loopback), the JWT keys inline instead of fetched from the example's
/// identity provider, and the audit sink: the test's collector, in NDJSON (what the collector
/// test server and `dbwarden-audit verify` read; OTLP is covered by the audit crate's tests).
/// Rules, guardrails, masking and approvals are the example's own.
pub fn production_policy(example: &str, db: &TestDatabase<'_>) -> anyhow::Result<String> {
    let mut policy: Value = serde_yaml::from_str(example).context("parsing the example policy")?;
    let spec = policy
        .get_mut("spec")
        .context("the example policy has no spec")?;
    spec["database"]["host"] = json!("127.0.0.1");
    spec["database"]["port"] = json!(db.port);
    ensure!(
        spec["database"]["tls"]["mode"] == "verifyFull",
        "the example no longer verifies the database's certificate; revisit this test"
    );
    spec["database"]["tls"]["caSecretRef"] = json!({"name": db.ca_secret.0, "key": db.ca_secret.1});
    spec["listenPort"] = json!(db.listen_port);
    let jwt = spec["identity"]
        .get_mut("jwt")
        .and_then(Value::as_object_mut)
        .context("the example policy has no spec.identity.jwt")?;
    jwt.remove("jwksUri");
    jwt.insert("jwks".into(), json!(db.jwks));
    spec["audit"]["sinkUrl"] = json!(db.audit_sink);
    spec["audit"]["format"] = json!("ndjson");
    Ok(serde_yaml::to_string(&policy)?)
}

/// Creates one pod of `deployment` as the ReplicaSet controller would: named
/// `<deployment>-<pod-template-hash>-<random>`, the template's labels plus `pod-template-hash`,
/// its annotations and spec. Returns the pod as the API server stored it (after the webhooks).
pub async fn create_replica(client: &kube::Client, deployment: &Deployment) -> anyhow::Result<Pod> {
    let namespace = deployment
        .namespace()
        .context("the Deployment has no namespace")?;
    let template = deployment
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .context("the Deployment has no spec")?;
    let hash = pod_template_hash(&serde_json::to_vec(&template)?);
    let mut metadata = template.metadata.unwrap_or_default();
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert("pod-template-hash".into(), hash.clone());
    metadata.generate_name = Some(format!("{}-{hash}-", deployment.name_any()));
    metadata.namespace = Some(namespace.clone());
    let pod = Pod {
        metadata,
        spec: template.spec,
        status: None,
    };
    let created = Api::<Pod>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &pod)
        .await
        .context("creating the pod")?;
    Ok(created)
}

/// The ReplicaSet controller's label value: FNV-1a (32 bit) of the template, its decimal digits
/// mapped onto the alphabet Kubernetes uses for names without vowels.
fn pod_template_hash(template: &[u8]) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u32 = 0x811c_9dc5;
    for byte in template {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|digit| char::from(ALPHABET[usize::from(digit) % ALPHABET.len()]))
        .collect()
}
