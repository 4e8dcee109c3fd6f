//! Random values of the Rust types, within the documented constraints, for property tests.
//! A small seeded generator keeps failures reproducible (the seed is in the test's message).

use std::collections::BTreeMap;

use dbwarden_crds::policy::*;
use dbwarden_crds::{
    ApprovalPhase, ApprovalRequestSpec, ApprovalRequestStatus, Decision, DecisionKind, Operation,
    Requester, SecretKeyRef, Subjects,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, Time,
};

/// xorshift64*: tiny, deterministic, good enough to spread choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }

    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    pub fn maybe<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.coin() { Some(f(self)) } else { None }
    }

    /// 0..=max distinct items made by `f` (distinct by their Debug form).
    pub fn list<T: std::fmt::Debug>(
        &mut self,
        max: usize,
        mut f: impl FnMut(&mut Self) -> T,
    ) -> Vec<T> {
        let n = self.below(max + 1);
        let mut out: Vec<T> = Vec::new();
        for _ in 0..n {
            let item = f(self);
            if !out.iter().any(|o| format!("{o:?}") == format!("{item:?}")) {
                out.push(item);
            }
        }
        out
    }

    pub fn label(&mut self) -> String {
        let word = self.pick(&[
            "orders",
            "billing",
            "ro",
            "etl",
            "analytics",
            "a",
            "x1",
            "read-only",
            "ops-2",
        ]);
        format!("{word}-{}", self.below(1000))
    }

    pub fn unicode_text(&mut self) -> String {
        let piece = self.pick(&[
            "délai",
            "注文",
            "emoji 🎉",
            "tab\tand \"quotes\"",
            "plain",
            "line\nbreak",
            "'single'",
        ]);
        format!("{piece} {}", self.below(100))
    }
}

const OPERATIONS: [Operation; 8] = [
    Operation::Select,
    Operation::Insert,
    Operation::Delete,
    Operation::Ddl,
    Operation::All,
    Operation::Copy,
    Operation::Maintenance,
    Operation::Read,
];

fn table(rng: &mut Rng) -> String {
    rng.pick(&[
        "*",
        "orders",
        "public.orders",
        "public.*",
        "audit_*",
        "billing.card_$x",
        "*.users",
    ])
    .to_string()
}

fn subjects(rng: &mut Rng) -> Subjects {
    let mut s = Subjects {
        users: rng.list(3, |r| format!("{}@example.com", r.label())),
        groups: rng.list(3, |r| r.label()),
        service_accounts: rng.list(2, |r| {
            if r.coin() {
                r.label()
            } else {
                format!("{}/{}", r.label(), r.label())
            }
        }),
    };
    if s.is_empty() {
        s.groups.push("dba".into());
    }
    s
}

fn secret(rng: &mut Rng) -> SecretKeyRef {
    SecretKeyRef {
        name: rng.label(),
        key: rng.pick(&["key", "token", "ca.crt"]).into(),
    }
}

fn strategy(rng: &mut Rng) -> (Strategy, Option<PartialMask>) {
    match rng.below(5) {
        0 => (Strategy::Redact, None),
        1 => {
            let partial = rng.maybe(|r| PartialMask {
                keep_first: r.below(3) as i32,
                keep_last: 1 + r.below(5) as i32,
            });
            (Strategy::Partial, partial)
        }
        2 => (Strategy::Hash, None),
        3 => (Strategy::Null, None),
        _ => (Strategy::Redact, None),
    }
}

/// A policy spec that satisfies the schema, the CEL rules and the semantic validator.
pub fn policy(rng: &mut Rng) -> DatabaseAccessPolicySpec {
    let environment = rng.pick(&["production", "staging", "dev"]).to_string();
    let mut match_labels = BTreeMap::new();
    match_labels.insert("app".to_string(), rng.label());
    let selector = LabelSelector {
        match_labels: Some(match_labels),
        match_expressions: rng.maybe(|r| {
            vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec![r.label()]),
            }]
        }),
    };
    let masking = rng.maybe(|r| {
        let columns = r.list(4, |r| {
            let (strategy, partial) = strategy(r);
            ColumnMask {
                columns: vec![
                    r.pick(&[
                        "public.users.email",
                        "*.ssn",
                        "users.phone",
                        "billing.*.card_*",
                    ])
                    .into(),
                ],
                strategy,
                partial,
            }
        });
        let detectors = r.list(3, |r| {
            let kind = r.pick(&[
                Detector::Email,
                Detector::CardNumber,
                Detector::Jwt,
                Detector::IpAddress,
            ]);
            let (mut strategy, partial) = strategy(r);
            if kind == Detector::Email && partial.is_none() && r.coin() {
                strategy = Strategy::Email;
            }
            DetectorMask {
                kind,
                strategy,
                partial,
            }
        });
        Masking {
            columns,
            detectors,
            exempt_subjects: r.maybe(subjects),
            hash_key_secret_ref: Some(secret(r)),
            on_unmaskable: r.pick(&[OnUnmaskable::Deny, OnUnmaskable::Null]),
        }
    });
    let mut rule_number = 0;
    let rules = rng.list(4, |r| {
        rule_number += 1;
        AccessRule {
            name: format!("rule-{rule_number}"),
            subjects: subjects(r),
            action: r.pick(&[Action::Allow, Action::Deny]),
            operations: {
                let mut ops = r.list(3, |r| r.pick(&OPERATIONS));
                if ops.is_empty() {
                    ops.push(Operation::Select);
                }
                ops
            },
            tables: {
                let mut tables = r.list(3, table);
                if tables.is_empty() {
                    tables.push("*".into());
                }
                tables
            },
        }
    });
    let mut approval_number = 0;
    let approvals = rng.list(3, |r| {
        approval_number += 1;
        let mode = r.pick(&[ApprovalMode::Hold, ApprovalMode::Reject]);
        let users: Vec<String> = (0..1 + r.below(3))
            .map(|i| format!("approver-{i}"))
            .collect();
        ApprovalRule {
            name: format!("approval-{approval_number}"),
            when: ApprovalWhen {
                operations: vec![r.pick(&OPERATIONS)],
                tables: vec![table(r)],
                environments: if r.coin() {
                    vec![environment.clone()]
                } else {
                    vec![]
                },
            },
            required_approvals: 1 + r.below(users.len()) as i32,
            approvers: Approvers {
                users,
                groups: if r.coin() { vec!["dba".into()] } else { vec![] },
            },
            ttl: r.pick(&["1h", "30m", "1d", "1h30m", "10m"]).into(),
            hold_timeout: if mode == ApprovalMode::Hold {
                r.maybe(|r| r.pick(&["30s", "5m"]).into())
            } else {
                None
            },
            mode,
            require_reason: r.coin(),
        }
    });
    DatabaseAccessPolicySpec {
        database: Database {
            engine: Engine::Postgres,
            host: rng.pick(&["orders-db.payments.svc", "10.1.2.3", "db"]).into(),
            port: 1 + rng.below(65535) as i32,
            name: rng.label(),
            environment,
            credentials_secret_ref: CredentialsSecretRef {
                name: rng.label(),
                username_key: "username".into(),
                password_key: rng.pick(&["password", "pass"]).into(),
            },
            tls: {
                let mode = rng.pick(&[TlsMode::Disable, TlsMode::Require, TlsMode::VerifyFull]);
                Tls { mode, ca_secret_ref: if mode == TlsMode::VerifyFull { rng.maybe(secret) } else { None } }
            },
        },
        workload_selector: selector,
        listen_port: 1024 + rng.below(60000) as i32,
        identity: rng.maybe(|r| Identity {
            jwt: Jwt {
                issuer: "https://login.example.com/realms/acme".into(),
                audiences: vec!["dbwarden".into()],
                jwks_uri: None,
                jwks: None,
                username_claim: r.pick(&["sub", "email", "preferred_username"]).into(),
                groups_claim: "groups".into(),
                require_end_user_token: r.coin(),
            },
        })
        .map(|mut identity| {
            if rng.coin() {
                identity.jwt.jwks_uri = Some("https://login.example.com/realms/acme/certs".into());
            } else {
                identity.jwt.jwks = Some(r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#.into());
            }
            identity
        }),
        rules,
        guardrails: Guardrails {
            block_ddl: rng.coin(),
            block_drop: rng.coin(),
            block_truncate: rng.coin(),
            require_where_for_update_delete: rng.coin(),
            block_copy_program: rng.coin(),
            blocked_functions: rng.list(3, |r| r.pick(&["pg_sleep", "pg_catalog.pg_read_file", "dblink"]).to_string()),
            max_rows: rng.maybe(|r| 1 + r.below(1_000_000) as i64),
            on_max_rows: rng.pick(&[OnMaxRows::Error, OnMaxRows::Truncate]),
            unparseable: rng.pick(&[Unparseable::Deny, Unparseable::Allow]),
            observe_only: rng.coin(),
        },
        masking,
        approvals,
        audit: rng.maybe(|r| Audit {
            sink_url: r.pick(&["https://audit.example.com/v1/events", "http://collector.observability:4318/v1/logs"]).into(),
            format: r.pick(&[AuditFormat::Ndjson, AuditFormat::Otlp]),
            statement_text: r.pick(&[StatementText::Full, StatementText::Redacted, StatementText::None]),
            failure_policy: r.pick(&[AuditFailurePolicy::Open, AuditFailurePolicy::Closed]),
            bearer_token_secret_ref: r.maybe(secret),
        }),
    }
}

/// An ApprovalRequest spec as a sidecar would write it.
pub fn approval(rng: &mut Rng) -> ApprovalRequestSpec {
    ApprovalRequestSpec {
        policy: rng.label(),
        rule: rng.label(),
        database: format!(
            "{}/{}",
            rng.pick(&["orders-db.payments.svc", "10.0.0.7"]),
            rng.label()
        ),
        environment: rng.pick(&["production", "staging"]).into(),
        requester: Requester {
            user: rng
                .pick(&["bob@example.com", "system:serviceaccount:payments:api"])
                .into(),
            groups: rng.list(2, |r| r.label()),
            service_account: rng.maybe(|r| format!("payments/{}", r.label())),
            pod: rng.maybe(|r| format!("api-{}-x7k2p", r.below(99))),
        },
        statement: format!(
            "DELETE FROM public.orders WHERE note = '{}'",
            rng.unicode_text().replace('\'', "''")
        ),
        fingerprint: format!("{:016x}", rng.next()),
        operation: rng.pick(&[
            Operation::Delete,
            Operation::Create,
            Operation::Drop,
            Operation::Update,
        ]),
        tables: rng.list(3, |r| {
            format!("public.{}", r.pick(&["orders", "users", "items"]))
        }),
        reason: rng.maybe(Rng::unicode_text),
        expires_at: Time(jiff_timestamp(1_800_000_000 + rng.below(10_000_000) as i64)),
    }
}

/// A status somewhere along the state machine, consistent with its decisions.
pub fn approval_status(rng: &mut Rng) -> ApprovalRequestStatus {
    let phase = rng.pick(&[
        ApprovalPhase::Pending,
        ApprovalPhase::Approved,
        ApprovalPhase::Denied,
        ApprovalPhase::Executed,
    ]);
    let mut decisions = Vec::new();
    let approvers = if matches!(phase, ApprovalPhase::Approved | ApprovalPhase::Executed) {
        1 + rng.below(3)
    } else {
        0
    };
    for i in 0..approvers {
        decisions.push(Decision {
            by: format!("approver-{i}"),
            groups: vec!["dba".into()],
            decision: DecisionKind::Approve,
            at: Time(jiff_timestamp(1_800_000_000 + i as i64)),
            comment: rng.maybe(Rng::unicode_text),
        });
    }
    if phase == ApprovalPhase::Denied {
        decisions.push(Decision {
            by: "alice".into(),
            groups: vec![],
            decision: DecisionKind::Deny,
            at: Time(jiff_timestamp(1_800_000_100)),
            comment: Some("not during business hours".into()),
        });
    }
    ApprovalRequestStatus {
        phase,
        decisions,
        approvals: approvers as i32,
        executed_at: (phase == ApprovalPhase::Executed)
            .then(|| Time(jiff_timestamp(1_800_000_200))),
        conditions: vec![],
        observed_generation: rng.maybe(|r| 1 + r.below(3) as i64),
    }
}

fn jiff_timestamp(seconds: i64) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}
