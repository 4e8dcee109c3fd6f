//! Statements that need a person's approval: what a session hands to the [`ApprovalDesk`]
//! (the cluster's `ApprovalRequest`s; standalone mode has none and refuses such statements),
//! and the reason the client gives for them.
//!
//! A reason comes from a leading comment, `/* reason: ticket OPS-1234 */ DROP TABLE ...`, or
//! from `SET dbwarden.reason = '...'` earlier in the session (PostgreSQL accepts the setting as
//! a custom parameter, so the statement also runs upstream harmlessly).

use std::fmt;

use dbwarden_policy::Identity;
use dbwarden_policy::decide::ApprovalNeeded;

use crate::hook::Hold;

/// Longest reason kept (the `ApprovalRequest` field's limit).
pub const MAX_REASON: usize = 1024;

/// One statement that needs approval, as the session saw it.
#[derive(Debug, Clone)]
pub struct ApprovalAsk {
    /// `namespace/name` of the policy whose approval rule matched.
    pub policy: String,
    /// The governed database as `host/name`.
    pub database: String,
    /// The database's environment.
    pub environment: String,
    /// What the engine decided: rule, mode, ttl, fingerprint, tables, ...
    pub needed: ApprovalNeeded,
    /// Who sent it.
    pub identity: Identity,
    /// The statement text as the policy's `audit.statementText` allows (`None`: not recorded).
    pub statement: Option<String>,
    /// The reason the client gave, if any.
    pub reason: Option<String>,
}

/// Files approval requests and waits for (or checks) their decisions.
pub trait ApprovalDesk: Send + Sync + fmt::Debug + 'static {
    /// The decision on `ask`, later: `Allow` once approved (the request is then marked
    /// executed), `Deny` with a message naming the request otherwise.
    fn submit(&self, ask: ApprovalAsk) -> Hold;
}

/// The reason in a leading `/* reason: ... */` comment, if any.
pub fn leading_reason(sql: &str) -> Option<String> {
    let rest = sql.trim_start().strip_prefix("/*")?;
    let (comment, _) = rest.split_once("*/")?;
    let comment = comment.trim();
    let (key, value) = comment.split_once(':')?;
    if !key.trim().eq_ignore_ascii_case("reason") {
        return None;
    }
    clean(value)
}

/// The value of `SET [SESSION] dbwarden.reason = '...'` (or `TO`), if `sql` is exactly that.
/// `RESET dbwarden.reason` gives `Some(None)`.
pub fn set_reason(sql: &str) -> Option<Option<String>> {
    let sql = sql.trim().trim_end_matches(';').trim_end();
    let mut words = sql.splitn(2, char::is_whitespace);
    let verb = words.next()?;
    let rest = words.next()?.trim_start();
    if verb.eq_ignore_ascii_case("reset") {
        return rest.eq_ignore_ascii_case("dbwarden.reason").then_some(None);
    }
    if !verb.eq_ignore_ascii_case("set") {
        return None;
    }
    let rest = strip_word(rest, "session").unwrap_or(rest);
    let rest = strip_word(rest, "dbwarden.reason")?;
    let rest = rest
        .strip_prefix('=')
        .or_else(|| strip_word(rest, "to"))?
        .trim();
    let literal = rest.strip_prefix('\'')?.strip_suffix('\'')?;
    // Inside the quotes only doubled quotes may appear (no escapes, no second literal).
    let unquoted = literal.replace("''", "'");
    if unquoted.matches('\'').count() * 2 != literal.matches('\'').count() {
        return None;
    }
    Some(clean(&unquoted))
}

/// `rest` without a leading case-insensitive `word` followed by a space or `=`.
fn strip_word<'a>(rest: &'a str, word: &str) -> Option<&'a str> {
    let head = rest.get(..word.len())?;
    let tail = &rest[word.len()..];
    (head.eq_ignore_ascii_case(word) && tail.starts_with(|c: char| c.is_whitespace() || c == '='))
        .then(|| tail.trim_start())
}

/// A reason as stored: trimmed, control characters replaced, at most [`MAX_REASON`] bytes.
fn clean(value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(value.len().min(MAX_REASON));
    for c in value.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_REASON {
            break;
        }
        out.push(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_from_a_leading_comment() {
        assert_eq!(
            leading_reason("/* reason: OPS-1234 drop the old table */ DROP TABLE t").as_deref(),
            Some("OPS-1234 drop the old table")
        );
        assert_eq!(
            leading_reason("  /*Reason:x*/DROP TABLE t").as_deref(),
            Some("x")
        );
        assert_eq!(leading_reason("DROP TABLE t /* reason: late */"), None);
        assert_eq!(leading_reason("/* note: x */ DROP TABLE t"), None);
        assert_eq!(leading_reason("/* reason:   */ DROP TABLE t"), None);
        let long = format!("/* reason: {} */ DROP TABLE t", "é".repeat(2000));
        assert!(leading_reason(&long).is_some_and(|r| r.len() <= MAX_REASON));
    }

    #[test]
    fn reasons_from_set() {
        assert_eq!(
            set_reason("SET dbwarden.reason = 'it''s OPS-1'"),
            Some(Some("it's OPS-1".into()))
        );
        assert_eq!(
            set_reason("set session dbwarden.reason to 'x';"),
            Some(Some("x".into()))
        );
        assert_eq!(set_reason("RESET dbwarden.reason"), Some(None));
        assert_eq!(set_reason("SET dbwarden.reasons = 'x'"), None);
        assert_eq!(set_reason("SET dbwarden.reason = 'a'; DROP TABLE t"), None);
        assert_eq!(set_reason("SET search_path = 'x'"), None);
        assert_eq!(set_reason("SELECT 1"), None);
    }
}
