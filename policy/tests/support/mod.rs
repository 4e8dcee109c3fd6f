//! The policy, identities and decision summaries the decision tests share.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use dbwarden_crds::{DatabaseAccessPolicySpec, Operation as Op, Subjects};
use dbwarden_policy::analyze::analyze;
use dbwarden_policy::decide::{DenyCause, StringDecision};
use dbwarden_policy::{CompiledPolicy, Decision, Identity};

/// The policy every case runs against (namespace `shop`, environment `test`).
pub fn spec() -> DatabaseAccessPolicySpec {
    let mut spec = DatabaseAccessPolicySpec::builder()
        .allow(
            "analysts-read",
            Subjects::groups(["analysts"]),
            [Op::Read],
            ["public.*", "reporting.*"],
        )
        .deny(
            "no-pii",
            Subjects::groups(["analysts"]),
            [Op::Select],
            ["public.pii_*"],
        )
        .allow(
            "api-rw",
            Subjects::service_accounts(["api"]),
            [Op::Select, Op::Insert, Op::Update, Op::Delete],
            ["orders", "order_items"],
        )
        .allow(
            "api-customers-read",
            Subjects::service_accounts(["api"]),
            [Op::Select],
            ["customers"],
        )
        .allow("dba-all", Subjects::groups(["dba"]), [Op::All], [])
        .allow(
            "backup",
            Subjects::service_accounts(["ops/backup"]),
            [Op::Select, Op::Copy],
            [],
        )
        .allow("eve-read", Subjects::users(["eve"]), [Op::Read], [])
        .deny("eve-blocked", Subjects::users(["eve"]), [Op::All], [])
        .allow(
            "ian-read",
            Subjects::users(["ian"]),
            [Op::Select],
            ["public.orders"],
        )
        .allow(
            "archiver-insert",
            Subjects::service_accounts(["archiver"]),
            [Op::Insert],
            ["archive"],
        )
        .allow(
            "archiver-read",
            Subjects::service_accounts(["archiver"]),
            [Op::Select],
            ["orders"],
        )
        .approval("big-deletes", [Op::Delete], ["dba"])
        .build();
    spec.approvals[0].when.tables = vec!["orders".into()];
    spec.approvals[0].when.environments = vec!["test".into()];
    spec
}

pub fn compile(spec: &DatabaseAccessPolicySpec) -> CompiledPolicy {
    CompiledPolicy::compile("shop", "orders", spec).unwrap()
}

pub fn identity(who: &str) -> Identity {
    match who {
        "api" => Identity::service_account("shop", "api"),
        "api-elsewhere" => Identity::service_account("other", "api"),
        "bob-via-api" => Identity::user("shop", "api", "bob", []),
        "alice" => Identity::user("shop", "web", "alice", ["analysts"]),
        "dan" => Identity::user("shop", "web", "dan", ["dba"]),
        "eve" => Identity::user("shop", "web", "eve", []),
        "ian" => Identity::user("shop", "web", "ian", []),
        "backup" => Identity::service_account("ops", "backup"),
        "archiver" => Identity::service_account("shop", "archiver"),
        "nobody" => Identity::service_account("shop", "nobody"),
        other => panic!("no identity {other}"),
    }
}

/// `allow:RULE` (`allow:-` for no rule), `deny:RULE`, `deny:default`, `guard:LABEL`,
/// `approval:RULE`.
pub fn summary(decision: &Decision) -> String {
    match decision {
        Decision::Allow(allowed) => {
            format!("allow:{}", allowed.rule.as_deref().unwrap_or("-"))
        }
        Decision::Deny(denial) => match &denial.cause {
            DenyCause::Rule(rule) => format!("deny:{rule}"),
            DenyCause::NoRule => "deny:default".into(),
            DenyCause::Guardrail(g) => format!("guard:{}", g.label()),
        },
        Decision::NeedsApproval(needed) => format!("approval:{}", needed.rule),
    }
}

pub fn decide_one(policy: &CompiledPolicy, who: &str, sql: &str) -> Decision {
    let analysis = analyze(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let statement = analysis
        .single()
        .unwrap_or_else(|| panic!("{sql}: not one statement"));
    policy.decide(&identity(who), statement)
}

/// A whole string's decision, as corpus.yaml writes it: the single statement's [`summary`]; for
/// several, the first refused one's with its position (`guard:drop (statement 2)`) or every
/// statement's, comma-separated; `none` for an empty string.
pub fn string_summary(decided: &StringDecision) -> String {
    if let [one] = decided.decisions.as_slice() {
        return summary(one);
    }
    if decided.decisions.is_empty() {
        return "none".into();
    }
    match decided.first_refused() {
        Some((index, refused)) => format!("{} (statement {})", summary(refused), index + 1),
        None => decided
            .decisions
            .iter()
            .map(summary)
            .collect::<Vec<_>>()
            .join(", "),
    }
}
