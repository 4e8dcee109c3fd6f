//! The statement hook and reload without a database.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use dbwarden_policy::ServiceAccount;

use super::EnforcingHooks;
use crate::hook::{HookFactory, Identity, SessionInfo, Statement, StatementHook, Verdict};

fn policy(extra_spec: &str) -> String {
    format!(
        "apiVersion: dbwarden.io/v1alpha1
kind: DatabaseAccessPolicy
metadata: {{name: app-access}}
spec:
  database: {{host: db, name: app, environment: prod, credentialsSecretRef: {{name: app-db}}}}
  workloadSelector: {{matchLabels: {{app: api}}}}
  rules:
    - name: api-crud
      subjects: {{serviceAccounts: [api]}}
      operations: [select, insert, update, delete]
      tables: ['public.*']
{extra_spec}"
    )
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("policy.yaml");
    let tmp = dir.join("policy.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, &path).unwrap();
    path
}

fn enforcing(dir: &Path, text: &str) -> EnforcingHooks {
    let path = write(dir, text);
    EnforcingHooks::load(vec![path], ServiceAccount::new("shop", "api"), None).unwrap()
}

/// A workload session on listener `app` to `database`, counting into `metrics`.
pub(super) fn session_info(
    database: &str,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) -> SessionInfo {
    SessionInfo {
        listener: "app".into(),
        database: database.into(),
        peer: "127.0.0.1:1".parse().unwrap(),
        identity: Identity::workload("workload"),
        application_name: None,
        audit: crate::audit::SessionAudit::disabled(metrics),
    }
}

fn session(hooks: &EnforcingHooks, database: &str) -> Box<dyn StatementHook> {
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new().unwrap());
    hooks
        .open(&session_info(database, metrics))
        .statements
        .unwrap()
}

/// An approval rule for deletes.
const DELETE_APPROVALS: &str = "  approvals:
    - name: deletes
      when: {operations: [delete]}
      approvers: {groups: [dba]}
";

fn denied(verdict: Verdict) -> String {
    match verdict {
        Verdict::Deny(denial) => denial.message,
        other => panic!("not denied: {other:?}"),
    }
}

#[test]
fn decides_queries_parses_and_function_calls() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = enforcing(dir.path(), &policy(""));
    let mut s = session(&hooks, "app");
    let allowed = "SELECT id FROM public.t WHERE id = 1";
    assert!(s.check(Statement::Query { sql: allowed }).is_allow());
    assert!(
        s.check(Statement::Parse {
            name: "s1",
            sql: allowed
        })
        .is_allow()
    );
    let message = denied(s.check(Statement::Parse {
        name: "",
        sql: "TRUNCATE public.t",
    }));
    assert!(message.contains("guardrails.blockTruncate"), "{message}");
    let message = denied(s.check(Statement::FunctionCall { oid: 1 }));
    assert!(
        message.contains("fast-path function calls are not allowed"),
        "{message}"
    );
    let message = denied(s.check(Statement::Query {
        sql: "PREPARE p AS SELECT 1; EXECUTE p",
    }));
    assert!(message.contains("policy shop/app-access"), "{message}");
}

#[test]
fn a_database_no_policy_governs_refuses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = enforcing(dir.path(), &policy(""));
    let message = denied(session(&hooks, "other").check(Statement::Query { sql: "SELECT 1" }));
    assert!(
        message.contains("no dbwarden policy governs database \"other\""),
        "{message}"
    );
    let empty = EnforcingHooks::load(Vec::new(), ServiceAccount::new("shop", "api"), None).unwrap();
    denied(session(&empty, "app").check(Statement::Query { sql: "SELECT 1" }));
}

#[test]
fn approvals_are_refused_and_observe_only_lets_statements_run() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = enforcing(dir.path(), &policy(DELETE_APPROVALS));
    let message = denied(session(&hooks, "app").check(Statement::Query {
        sql: "DELETE FROM public.t WHERE id = 1",
    }));
    assert_eq!(
        message,
        "statement needs approval (rule \"deletes\" of policy shop/app-access); approvals need the sidecar in Kubernetes mode"
    );
    let observe = enforcing(dir.path(), &policy("  guardrails: {observeOnly: true}\n"));
    let verdict = session(&observe, "app").check(Statement::Query {
        sql: "DROP TABLE public.t",
    });
    assert!(verdict.is_allow(), "{verdict:?}");
}

#[test]
fn reload_swaps_only_a_set_that_compiles() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = enforcing(dir.path(), &policy(""));
    let mut s = session(&hooks, "app");
    assert!(!hooks.reload_if_changed());
    write(dir.path(), "kind: [");
    assert!(!hooks.reload_if_changed());
    assert!(
        s.check(Statement::Query {
            sql: "SELECT * FROM public.t"
        })
        .is_allow()
    );
    write(
        dir.path(),
        &policy(
            "    - {name: no-t, subjects: {serviceAccounts: [api]}, action: deny, operations: [select], tables: [public.t]}\n",
        ),
    );
    assert!(hooks.reload_if_changed());
    let message = denied(s.check(Statement::Query {
        sql: "SELECT * FROM public.t",
    }));
    assert!(
        message.contains("rule \"no-t\" denies select on public.t"),
        "{message}"
    );
}

#[test]
fn startup_parameters_that_change_the_role_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = enforcing(dir.path(), &policy(""));
    let param = |k: &str| vec![(k.to_string(), "x".to_string())];
    assert!(hooks.check_startup(&param("application_name")).is_ok());
    for key in ["options", "Role", "session_authorization"] {
        assert!(hooks.check_startup(&param(key)).is_err(), "{key}");
    }
}

/// A desk that decides at once (the hook never awaits it itself).
#[derive(Debug)]
struct Desk;

impl super::approval::ApprovalDesk for Desk {
    fn submit(&self, _ask: super::approval::ApprovalAsk) -> crate::hook::Hold {
        crate::hook::Hold(Box::pin(async { Verdict::Allow }))
    }
}

/// `dbwarden_statements_total` for `operation` and `decision`, from the metrics text.
fn counted(metrics: &crate::metrics::Metrics, operation: &str, decision: &str) -> u64 {
    let wanted = format!("operation=\"{operation}\"");
    let decided = format!("decision=\"{decision}\"");
    metrics
        .encode()
        .unwrap()
        .lines()
        .find(|l| {
            l.starts_with("dbwarden_statements_total{")
                && l.contains(&wanted)
                && l.contains(&decided)
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn prepared_statements_count_when_executed_and_a_held_parse_only_once_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = enforcing(dir.path(), &policy(DELETE_APPROVALS));
    hooks.attach_approvals(std::sync::Arc::new(Desk));
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new().unwrap());
    let mut s = hooks
        .open(&session_info("app", metrics.clone()))
        .statements
        .unwrap();
    let select = "SELECT id FROM public.t WHERE id = $1";
    assert!(
        s.check(Statement::Parse {
            name: "",
            sql: select
        })
        .is_allow()
    );
    assert_eq!(counted(&metrics, "select", "allowed"), 0, "not run yet");
    for _ in 0..3 {
        assert!(s.bind(b"", b"").is_allow());
        assert!(s.execute(b"").is_allow());
    }
    assert_eq!(counted(&metrics, "select", "allowed"), 3);

    // A DELETE waits for its approval; refused, the unnamed statement is still the SELECT.
    let delete = "/* reason: cleanup */ DELETE FROM public.t WHERE id = $1";
    let held = s.check(Statement::Parse {
        name: "",
        sql: delete,
    });
    assert!(matches!(held, Verdict::Hold(_)), "{held:?}");
    s.held(false);
    s.bind(b"", b"");
    s.execute(b"");
    assert_eq!(counted(&metrics, "select", "allowed"), 4);
    assert_eq!(counted(&metrics, "delete", "approved"), 0);
    // Approved and forwarded, its executions are the DELETE's.
    let held = s.check(Statement::Parse {
        name: "",
        sql: delete,
    });
    assert!(matches!(held, Verdict::Hold(_)), "{held:?}");
    s.held(true);
    s.bind(b"", b"");
    s.execute(b"");
    assert_eq!(counted(&metrics, "delete", "approved"), 1);

    // An Execute of a portal never bound here is refused, not run unrecorded.
    let message = denied(s.execute(b"elsewhere"));
    assert!(
        message.contains("not bound through the sidecar"),
        "{message}"
    );
}

#[test]
fn a_named_statement_is_not_prepared_twice_until_closed() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = enforcing(dir.path(), &policy(""));
    let mut s = session(&hooks, "app");
    let delete = "DELETE FROM public.t WHERE id = $1";
    assert!(
        s.check(Statement::Parse {
            name: "s1",
            sql: delete
        })
        .is_allow()
    );
    // The server would keep the DELETE under s1; the sidecar must not believe it runs a SELECT.
    let message = denied(s.check(Statement::Parse {
        name: "s1",
        sql: "SELECT 1",
    }));
    assert!(message.contains("already exists"), "{message}");
    s.close(false, b"s1");
    assert!(
        s.check(Statement::Parse {
            name: "s1",
            sql: "SELECT 1"
        })
        .is_allow()
    );
}
