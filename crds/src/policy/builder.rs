//! A builder for policies in tests and examples:
//! `DatabaseAccessPolicySpec::builder().allow("read", Subjects::groups(["dev"]), [Operation::Read], ["*"]).build()`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::*;
use crate::common::Subjects;
use crate::operation::Operation;

/// Builds a [`DatabaseAccessPolicySpec`], starting from a minimal valid one.
#[derive(Debug, Clone)]
pub struct PolicyBuilder(DatabaseAccessPolicySpec);

impl DatabaseAccessPolicySpec {
    /// A builder starting from database `app` on `127.0.0.1:5432` (TLS off), environment `test`,
    /// credentials Secret `app-db`, pods labelled `app: test`, default guardrails, no rules.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder(DatabaseAccessPolicySpec {
            database: Database {
                engine: Engine::Postgres,
                host: "127.0.0.1".into(),
                port: 5432,
                name: "app".into(),
                environment: "test".into(),
                credentials_secret_ref: CredentialsSecretRef {
                    name: "app-db".into(),
                    username_key: "username".into(),
                    password_key: "password".into(),
                },
                tls: Tls {
                    mode: TlsMode::Disable,
                    ca_secret_ref: None,
                },
            },
            workload_selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), "test".to_string())])),
                match_expressions: None,
            },
            listen_port: DEFAULT_LISTEN_PORT,
            identity: None,
            rules: Vec::new(),
            guardrails: Guardrails::default(),
            masking: None,
            approvals: Vec::new(),
            audit: None,
        })
    }
}

impl Subjects {
    /// Subjects naming these users.
    pub fn users<const N: usize>(users: [&str; N]) -> Self {
        Self {
            users: users.map(String::from).to_vec(),
            ..Self::default()
        }
    }

    /// Subjects naming these groups.
    pub fn groups<const N: usize>(groups: [&str; N]) -> Self {
        Self {
            groups: groups.map(String::from).to_vec(),
            ..Self::default()
        }
    }

    /// Subjects naming these ServiceAccounts (`name` or `namespace/name`).
    pub fn service_accounts<const N: usize>(accounts: [&str; N]) -> Self {
        Self {
            service_accounts: accounts.map(String::from).to_vec(),
            ..Self::default()
        }
    }
}

impl PolicyBuilder {
    /// The upstream database.
    pub fn database(mut self, host: &str, port: i32, name: &str) -> Self {
        self.0.database.host = host.into();
        self.0.database.port = port;
        self.0.database.name = name.into();
        self
    }

    /// The database's environment.
    pub fn environment(mut self, environment: &str) -> Self {
        self.0.database.environment = environment.into();
        self
    }

    /// The sidecar's local port.
    pub fn listen_port(mut self, port: i32) -> Self {
        self.0.listen_port = port;
        self
    }

    fn rule<const N: usize, const M: usize>(
        mut self,
        action: Action,
        name: &str,
        subjects: Subjects,
        operations: [Operation; N],
        tables: [&str; M],
    ) -> Self {
        self.0.rules.push(AccessRule {
            name: name.into(),
            subjects,
            action,
            operations: operations.to_vec(),
            tables: if M == 0 {
                vec!["*".into()]
            } else {
                tables.map(String::from).to_vec()
            },
        });
        self
    }

    /// Adds an `allow` rule; no tables means every table.
    pub fn allow<const N: usize, const M: usize>(
        self,
        name: &str,
        subjects: Subjects,
        operations: [Operation; N],
        tables: [&str; M],
    ) -> Self {
        self.rule(Action::Allow, name, subjects, operations, tables)
    }

    /// Adds a `deny` rule; no tables means every table.
    pub fn deny<const N: usize, const M: usize>(
        self,
        name: &str,
        subjects: Subjects,
        operations: [Operation; N],
        tables: [&str; M],
    ) -> Self {
        self.rule(Action::Deny, name, subjects, operations, tables)
    }

    /// Changes the guardrails.
    pub fn guardrails(mut self, change: impl FnOnce(&mut Guardrails)) -> Self {
        change(&mut self.0.guardrails);
        self
    }

    fn masking_mut(&mut self) -> &mut Masking {
        self.0.masking.get_or_insert_with(|| Masking {
            columns: Vec::new(),
            detectors: Vec::new(),
            exempt_subjects: None,
            hash_key_secret_ref: None,
            on_unmaskable: OnUnmaskable::Deny,
        })
    }

    /// Masks the columns matching `pattern` (e.g. `users.email`); `hash` also sets a key Secret
    /// `masking-key` (key `key`).
    pub fn mask(mut self, pattern: &str, strategy: Strategy) -> Self {
        let masking = self.masking_mut();
        masking.columns.push(ColumnMask {
            columns: vec![pattern.into()],
            strategy,
            partial: None,
        });
        if strategy == Strategy::Hash && masking.hash_key_secret_ref.is_none() {
            masking.hash_key_secret_ref = Some(crate::SecretKeyRef {
                name: "masking-key".into(),
                key: "key".into(),
            });
        }
        self
    }

    /// Masks values a detector recognizes.
    pub fn detect(mut self, kind: Detector, strategy: Strategy) -> Self {
        self.masking_mut().detectors.push(DetectorMask {
            kind,
            strategy,
            partial: None,
        });
        self
    }

    /// Adds an approval rule for `operations` on every table, decided by one member of `groups`,
    /// `ttl` 1h, `reject` mode.
    pub fn approval<const N: usize, const G: usize>(
        mut self,
        name: &str,
        operations: [Operation; N],
        groups: [&str; G],
    ) -> Self {
        self.0.approvals.push(ApprovalRule {
            name: name.into(),
            when: ApprovalWhen {
                operations: operations.to_vec(),
                tables: vec!["*".into()],
                environments: Vec::new(),
            },
            approvers: Approvers {
                users: Vec::new(),
                groups: groups.map(String::from).to_vec(),
            },
            required_approvals: 1,
            ttl: "1h".into(),
            mode: ApprovalMode::Reject,
            hold_timeout: None,
            require_reason: false,
        });
        self
    }

    /// The spec.
    pub fn build(self) -> DatabaseAccessPolicySpec {
        self.0
    }

    /// A whole object named `name` in `namespace`.
    pub fn policy(self, namespace: &str, name: &str) -> DatabaseAccessPolicy {
        let mut policy = DatabaseAccessPolicy::new(name, self.0);
        policy.metadata.namespace = Some(namespace.into());
        policy
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn built_policies_are_valid() {
        let policy = DatabaseAccessPolicySpec::builder()
            .allow(
                "devs-read",
                Subjects::groups(["developers"]),
                [Operation::Read],
                [],
            )
            .deny(
                "no-drop",
                Subjects::groups(["developers"]),
                [Operation::Drop],
                ["public.*"],
            )
            .mask("users.email", Strategy::Email)
            .mask("*.ssn", Strategy::Hash)
            .detect(Detector::CardNumber, Strategy::Redact)
            .approval("deletes", [Operation::Delete], ["dba"])
            .guardrails(|g| g.max_rows = Some(100))
            .policy("payments", "test");
        policy.validate().unwrap();
        assert_eq!(policy.spec.rules[0].tables, ["*"]);
        assert!(
            policy
                .spec
                .masking
                .as_ref()
                .unwrap()
                .hash_key_secret_ref
                .is_some()
        );
    }
}
