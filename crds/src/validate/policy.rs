//! Semantic checks of a `DatabaseAccessPolicy` spec.

use std::collections::BTreeSet;

use super::{Report, ValidationError, checks};
use crate::common::Subjects;
use crate::duration::parse_duration;
use crate::glob::{ColumnPattern, TablePattern};
use crate::policy::{
    ApprovalMode, ApprovalRule, DatabaseAccessPolicySpec, Detector, Masking, PartialMask, Strategy,
    TlsMode,
};

/// Checks a policy spec; `name` (`namespace/name` or a file name) goes into the error.
pub fn validate_policy(name: &str, spec: &DatabaseAccessPolicySpec) -> Result<(), ValidationError> {
    let mut report = Report::default();
    let r = &mut report;

    let db = &spec.database;
    if let Err(reason) = checks::host(&db.host) {
        r.push("spec.database.host", &db.host, reason);
    }
    port(r, "spec.database.port", db.port);
    if !checks::dns_label(&db.environment) {
        r.push(
            "spec.database.environment",
            &db.environment,
            "must be a lower-case DNS label, e.g. production",
        );
    }
    if let Some(ca) = &db.tls.ca_secret_ref
        && db.tls.mode != TlsMode::VerifyFull
    {
        r.push(
            "spec.database.tls.caSecretRef",
            &ca.name,
            "is only used with mode: verifyFull",
        );
    }
    port(r, "spec.listenPort", spec.listen_port);
    if spec.listen_port == db.port && matches!(db.host.as_str(), "127.0.0.1" | "localhost" | "::1")
    {
        r.push(
            "spec.listenPort",
            spec.listen_port,
            "is the database's own port on this host; choose another",
        );
    }

    if let Some(jwt) = spec.identity.as_ref().map(|i| &i.jwt) {
        let path = "spec.identity.jwt";
        if let Err(reason) = checks::url(&jwt.issuer, true) {
            r.push(
                format!("{path}.issuer"),
                checks::shown_url(&jwt.issuer),
                reason,
            );
        }
        if jwt.audiences.is_empty() {
            r.push(
                format!("{path}.audiences"),
                "[]",
                "needs at least one audience",
            );
        }
        match (&jwt.jwks_uri, &jwt.jwks) {
            (Some(_), Some(_)) => r.push(
                path,
                "jwksUri and jwks",
                "set exactly one of jwksUri or jwks, not both",
            ),
            (None, None) => r.push(
                path,
                "{}",
                "set jwksUri (keys fetched over HTTPS) or jwks (inline keys)",
            ),
            (Some(uri), None) => {
                if let Err(reason) = checks::url(uri, true) {
                    r.push(format!("{path}.jwksUri"), checks::shown_url(uri), reason);
                }
            }
            (None, Some(jwks)) => {
                if let Err(reason) = checks::jwks(jwks) {
                    r.push(format!("{path}.jwks"), jwks, reason);
                }
            }
        }
    }

    let mut names = BTreeSet::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        let path = format!("spec.rules[{i}]");
        name_check(r, &format!("{path}.name"), &rule.name, &mut names);
        subjects(r, &format!("{path}.subjects"), &rule.subjects);
        if rule.operations.is_empty() {
            r.push(
                format!("{path}.operations"),
                "[]",
                "needs at least one operation",
            );
        }
        tables(r, &format!("{path}.tables"), &rule.tables);
    }

    let g = &spec.guardrails;
    for (i, function) in g.blocked_functions.iter().enumerate() {
        if !checks::function_name(function) {
            r.push(
                format!("spec.guardrails.blockedFunctions[{i}]"),
                function,
                "is not a function name; write name or schema.name without parentheses",
            );
        }
    }
    if let Some(max) = g.max_rows
        && max < 1
    {
        r.push(
            "spec.guardrails.maxRows",
            max,
            "must be at least 1 (leave it out for no limit)",
        );
    }

    if let Some(masking) = &spec.masking {
        masking_check(r, masking);
    }

    let mut names = BTreeSet::new();
    for (i, rule) in spec.approvals.iter().enumerate() {
        approval_rule(
            r,
            &format!("spec.approvals[{i}]"),
            rule,
            &db.environment,
            &mut names,
        );
    }

    if let Some(audit) = &spec.audit
        && let Err(reason) = checks::url(&audit.sink_url, false)
    {
        r.push(
            "spec.audit.sinkUrl",
            checks::shown_url(&audit.sink_url),
            reason,
        );
    }

    report.finish("DatabaseAccessPolicy", name.to_string())
}

fn port(r: &mut Report, path: &str, port: i32) {
    if !(1..=65535).contains(&port) {
        r.push(path, port, "must be a port from 1 to 65535");
    }
}

fn name_check(r: &mut Report, path: &str, name: &str, seen: &mut BTreeSet<String>) {
    if !checks::dns_label(name) {
        r.push(
            path,
            name,
            "must be a lower-case DNS label (letters, digits, -), at most 63 characters",
        );
    }
    if !seen.insert(name.to_string()) {
        r.push(
            path,
            name,
            "is used by an earlier entry; names must be unique",
        );
    }
}

fn subjects(r: &mut Report, path: &str, subjects: &Subjects) {
    if subjects.is_empty() {
        r.push(
            path,
            "{}",
            "name at least one subject: users, groups or serviceAccounts",
        );
    }
    for (i, account) in subjects.service_accounts.iter().enumerate() {
        if let Err(reason) = checks::service_account(account) {
            r.push(format!("{path}.serviceAccounts[{i}]"), account, reason);
        }
    }
}

fn tables(r: &mut Report, path: &str, tables: &[String]) {
    if tables.is_empty() {
        r.push(
            path,
            "[]",
            "needs at least one table pattern (\"*\" for every table)",
        );
    }
    for (i, table) in tables.iter().enumerate() {
        if let Err(e) = TablePattern::parse(table) {
            r.push(
                format!("{path}[{i}]"),
                table,
                format!("is not a table pattern: it {e}"),
            );
        }
    }
}

fn masking_check(r: &mut Report, masking: &Masking) {
    let mut uses_hash = false;
    for (i, mask) in masking.columns.iter().enumerate() {
        let path = format!("spec.masking.columns[{i}]");
        if mask.columns.is_empty() {
            r.push(
                format!("{path}.columns"),
                "[]",
                "needs at least one column pattern",
            );
        }
        for (j, column) in mask.columns.iter().enumerate() {
            if let Err(e) = ColumnPattern::parse(column) {
                r.push(
                    format!("{path}.columns[{j}]"),
                    column,
                    format!("is not a column pattern: it {e}"),
                );
            }
        }
        strategy(r, &path, mask.strategy, mask.partial.as_ref());
        uses_hash |= mask.strategy == Strategy::Hash;
    }
    for (i, mask) in masking.detectors.iter().enumerate() {
        let path = format!("spec.masking.detectors[{i}]");
        strategy(r, &path, mask.strategy, mask.partial.as_ref());
        if mask.strategy == Strategy::Email && mask.kind != Detector::Email {
            r.push(
                format!("{path}.strategy"),
                "email",
                "keeps an email address's shape and only fits kind: email; use redact, partial, hash or null",
            );
        }
        uses_hash |= mask.strategy == Strategy::Hash;
    }
    if uses_hash && masking.hash_key_secret_ref.is_none() {
        r.push(
            "spec.masking.hashKeySecretRef",
            "",
            "is required when a mask uses strategy: hash",
        );
    }
    if let Some(exempt) = &masking.exempt_subjects {
        subjects(r, "spec.masking.exemptSubjects", exempt);
    }
}

fn strategy(r: &mut Report, path: &str, strategy: Strategy, partial: Option<&PartialMask>) {
    let Some(partial) = partial else { return };
    if strategy != Strategy::Partial {
        r.push(
            format!("{path}.partial"),
            "set",
            "is only used with strategy: partial",
        );
        return;
    }
    for (field, value) in [
        ("keepFirst", partial.keep_first),
        ("keepLast", partial.keep_last),
    ] {
        if !(0..=64).contains(&value) {
            r.push(
                format!("{path}.partial.{field}"),
                value,
                "must be from 0 to 64",
            );
        }
    }
    if partial.keep_first == 0 && partial.keep_last == 0 {
        r.push(
            format!("{path}.partial"),
            "keepFirst: 0, keepLast: 0",
            "keeps nothing; use strategy: redact",
        );
    }
}

fn approval_rule(
    r: &mut Report,
    path: &str,
    rule: &ApprovalRule,
    environment: &str,
    names: &mut BTreeSet<String>,
) {
    name_check(r, &format!("{path}.name"), &rule.name, names);
    if rule.when.operations.is_empty() {
        r.push(
            format!("{path}.when.operations"),
            "[]",
            "needs at least one operation",
        );
    }
    tables(r, &format!("{path}.when.tables"), &rule.when.tables);
    if !rule.when.environments.is_empty()
        && !rule.when.environments.iter().any(|e| e == environment)
    {
        r.push(
            format!("{path}.when.environments"),
            rule.when.environments.join(","),
            format!("never matches: this policy's database is in environment {environment:?}"),
        );
    }
    let approvers = &rule.approvers;
    if approvers.users.is_empty() && approvers.groups.is_empty() {
        r.push(
            format!("{path}.approvers"),
            "{}",
            "name at least one approver: users or groups",
        );
    }
    if rule.required_approvals < 1 {
        r.push(
            format!("{path}.requiredApprovals"),
            rule.required_approvals,
            "must be at least 1",
        );
    } else if approvers.groups.is_empty()
        && rule.required_approvals as usize > approvers.users.len()
    {
        r.push(
            format!("{path}.requiredApprovals"),
            rule.required_approvals,
            "is more than the number of approvers; name more users or a group",
        );
    }
    let ttl = match parse_duration(&rule.ttl) {
        Ok(ttl) => Some(ttl),
        Err(e) => {
            r.push(
                format!("{path}.ttl"),
                &rule.ttl,
                format!("is not a duration: it {e}"),
            );
            None
        }
    };
    if let Some(hold) = &rule.hold_timeout {
        if rule.mode != ApprovalMode::Hold {
            r.push(
                format!("{path}.holdTimeout"),
                hold,
                "is only used with mode: hold",
            );
        }
        match parse_duration(hold) {
            Err(e) => r.push(
                format!("{path}.holdTimeout"),
                hold,
                format!("is not a duration: it {e}"),
            ),
            Ok(hold_for) if ttl.is_some_and(|ttl| hold_for > ttl) => {
                r.push(
                    format!("{path}.holdTimeout"),
                    hold,
                    format!("is longer than ttl {}", rule.ttl),
                );
            }
            Ok(_) => {}
        }
    }
}
