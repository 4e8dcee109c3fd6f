//! The sidecar's configuration in a pod, derived from the policies that selected it at
//! admission: one loopback listener per policy's `listenPort`, its upstream from
//! `spec.database`, credentials and CA from the Secrets the injector mounted.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use dbwarden_crds::DatabaseAccessPolicy;
use dbwarden_crds::policy::{
    AuditFailurePolicy, AuditFormat as PolicyAuditFormat, StatementText, TlsMode as PolicyTlsMode,
};

use super::env::PodEnv;
use crate::config::{
    AuditFileConfig, AuditFormat, ClientAuth, Config, CredentialsConfig, FailureMode, HealthConfig,
    LimitsConfig, ListenerConfig, TextMode, TlsMode, UpstreamConfig, UpstreamTlsConfig,
    WorkloadIdentityConfig,
};

/// Why a listener could not be derived.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListenerError {
    /// A policy named in `DBWARDEN_POLICIES` is not in the namespace (deleted since admission).
    #[error(
        "policy {0} selected this pod at admission but no longer exists: its port stays closed"
    )]
    Missing(String),
    /// Two policies ask for the same port with different databases.
    #[error("policies {first} and {second} both listen on port {port} for different databases")]
    PortClash {
        /// The policy that got the port.
        first: String,
        /// The one refused.
        second: String,
        /// The port.
        port: i32,
    },
    /// The port is not a valid TCP port.
    #[error("policy {policy}: listenPort {port} is not a TCP port")]
    BadPort {
        /// The policy.
        policy: String,
        /// The port.
        port: i32,
    },
}

/// The configuration for `env` from the namespace's `policies`, and the listeners that could
/// not be made (the sidecar serves the others; those ports stay closed, so the app fails
/// visibly instead of reaching an ungoverned database).
pub fn config(
    env: &PodEnv,
    policies: &BTreeMap<String, DatabaseAccessPolicy>,
) -> (Config, Vec<ListenerError>) {
    let mut listeners: Vec<ListenerConfig> = Vec::new();
    let mut problems = Vec::new();
    let mut by_port: BTreeMap<i32, (String, UpstreamConfig)> = BTreeMap::new();
    for name in &env.policies {
        let Some(policy) = policies.get(name) else {
            problems.push(ListenerError::Missing(name.clone()));
            continue;
        };
        let port = policy.spec.listen_port;
        let Ok(tcp_port) = u16::try_from(port) else {
            problems.push(ListenerError::BadPort {
                policy: name.clone(),
                port,
            });
            continue;
        };
        let upstream = upstream(policy, &env.secrets_dir);
        if let Some((first, existing)) = by_port.get(&port) {
            if !same_upstream(existing, &upstream) {
                problems.push(ListenerError::PortClash {
                    first: first.clone(),
                    second: name.clone(),
                    port,
                });
            }
            continue;
        }
        by_port.insert(port, (name.clone(), upstream.clone()));
        listeners.push(ListenerConfig {
            name: name.clone(),
            // Loopback only: the pod's own containers are the only clients; anything else
            // would reach the database without the pod's identity.
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, tcp_port)),
            upstream,
        });
    }
    let config = Config {
        listeners,
        client_tls: None,
        client_auth: ClientAuth::Password,
        limits: LimitsConfig::default(),
        health: Some(HealthConfig {
            listen: env.health_addr,
        }),
        policies: None,
        identity: Some(WorkloadIdentityConfig {
            service_account: format!("{}/{}", env.namespace, env.service_account),
            pod: Some(env.pod.clone()),
            jwks_ca_file: None,
        }),
        secrets_dir: Some(env.secrets_dir.clone()),
        audit: audit(env, policies),
    };
    (config, problems)
}

/// The `spec.audit` of the first admitted policy that has one, with the pod's spool. One
/// process keeps one hash chain, so it has one collector; others are logged and ignored.
fn audit(
    env: &PodEnv,
    policies: &BTreeMap<String, DatabaseAccessPolicy>,
) -> Option<AuditFileConfig> {
    let mut with_audit = env
        .policies
        .iter()
        .filter_map(|name| Some((name, policies.get(name)?.spec.audit.as_ref()?)));
    let (name, audit) = with_audit.next()?;
    for (other, _) in with_audit {
        tracing::warn!(
            policy = %other, used = %name,
            "one audit collector per sidecar: this policy's spec.audit is not used"
        );
    }
    let mut config = AuditFileConfig::new(audit.sink_url.clone(), env.spool_dir.clone());
    config.format = match audit.format {
        PolicyAuditFormat::Ndjson => AuditFormat::Ndjson,
        PolicyAuditFormat::Otlp => AuditFormat::Otlp,
    };
    config.statement_text = match audit.statement_text {
        StatementText::Full => TextMode::Full,
        StatementText::Redacted => TextMode::Redacted,
        StatementText::None => TextMode::None,
    };
    config.failure_policy = match audit.failure_policy {
        AuditFailurePolicy::Open => FailureMode::Open,
        AuditFailurePolicy::Closed => FailureMode::Closed,
    };
    config.bearer_token_file = audit
        .bearer_token_secret_ref
        .as_ref()
        .map(|token| env.secrets_dir.join(&token.name).join(&token.key));
    config.instance = Some(env.pod.clone());
    Some(config)
}

fn upstream(policy: &DatabaseAccessPolicy, secrets: &Path) -> UpstreamConfig {
    let database = &policy.spec.database;
    let credentials = &database.credentials_secret_ref;
    let secret = secrets.join(&credentials.name);
    UpstreamConfig {
        host: database.host.clone(),
        port: u16::try_from(database.port).unwrap_or(5432),
        database: database.name.clone(),
        tls: UpstreamTlsConfig {
            mode: match database.tls.mode {
                PolicyTlsMode::Disable => TlsMode::Disable,
                PolicyTlsMode::Require => TlsMode::Require,
                PolicyTlsMode::VerifyFull => TlsMode::VerifyFull,
            },
            ca_file: database
                .tls
                .ca_secret_ref
                .as_ref()
                .map(|ca| secrets.join(&ca.name).join(&ca.key)),
            server_name: None,
        },
        credentials: CredentialsConfig {
            username: None,
            username_env: None,
            username_file: Some(secret.join(&credentials.username_key)),
            password_file: Some(secret.join(&credentials.password_key)),
            password_env: None,
        },
    }
}

fn same_upstream(a: &UpstreamConfig, b: &UpstreamConfig) -> bool {
    a.host == b.host && a.port == b.port && a.database == b.database
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use dbwarden_crds::DatabaseAccessPolicySpec;

    use super::*;

    fn env(policies: &[&str]) -> PodEnv {
        PodEnv {
            pod: "api-1".into(),
            namespace: "shop".into(),
            uid: "uid".into(),
            service_account: "api".into(),
            labels_file: "/labels".into(),
            policies: policies.iter().map(|p| p.to_string()).collect(),
            secrets_dir: "/var/run/dbwarden/secrets".into(),
            spool_dir: "/spool".into(),
            health_addr: "0.0.0.0:15020".parse().unwrap(),
        }
    }

    fn policy(name: &str, port: i32, database: &str) -> (String, DatabaseAccessPolicy) {
        let spec = DatabaseAccessPolicySpec::builder()
            .database("db.shop.svc", 5432, database)
            .listen_port(port)
            .build();
        (name.into(), DatabaseAccessPolicy::new(name, spec))
    }

    #[test]
    fn one_loopback_listener_per_policy_with_mounted_credentials() {
        let secrets = tempfile::tempdir().unwrap();
        let mounted = secrets.path().join("app-db");
        std::fs::create_dir(&mounted).unwrap();
        std::fs::write(mounted.join("username"), "orders_app\n").unwrap();
        std::fs::write(mounted.join("password"), "s3cret\n").unwrap();
        let mut env = env(&["orders"]);
        env.secrets_dir = secrets.path().to_owned();

        let policies = BTreeMap::from([policy("orders", 15432, "orders")]);
        let (config, problems) = config(&env, &policies);
        assert!(problems.is_empty());
        let listener = &config.listeners[0];
        assert_eq!(listener.listen.to_string(), "127.0.0.1:15432");
        assert_eq!(listener.upstream.database, "orders");
        config.validate().unwrap();
        let credentials = listener.upstream.credentials.resolve("test").unwrap();
        assert_eq!(credentials.username, "orders_app");
        assert_eq!(credentials.password.expose(), "s3cret");
    }

    #[test]
    fn missing_policies_and_port_clashes_are_reported_not_served() {
        let policies = BTreeMap::from([
            policy("a", 15432, "orders"),
            policy("b", 15432, "ledger"),
            policy("c", 15432, "orders"),
        ]);
        let (config, problems) = config(&env(&["a", "b", "c", "gone"]), &policies);
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(
            problems,
            [
                ListenerError::PortClash {
                    first: "a".into(),
                    second: "b".into(),
                    port: 15432
                },
                ListenerError::Missing("gone".into()),
            ]
        );
    }
}
