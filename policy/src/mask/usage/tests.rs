#![allow(clippy::unwrap_used)]

use dbwarden_crds::policy::Strategy;
use dbwarden_crds::{DatabaseAccessPolicySpec, Operation as Op, Subjects};

use std::sync::Arc;

use super::*;
use crate::analyze::{AnalysisCache, analyze};

fn policy() -> CompiledPolicy {
    let spec = DatabaseAccessPolicySpec::builder()
        .allow("all", Subjects::service_accounts(["api"]), [Op::All], [])
        .mask("t.email", Strategy::Email)
        .build();
    CompiledPolicy::compile("shop", "p", &spec).unwrap()
}

fn api() -> Identity {
    Identity::service_account("shop", "api")
}

/// The check's answer (`ok` or the problem's label) on an uncached analysis.
fn fresh(policy: &CompiledPolicy, sql: &str) -> Result<(), (usize, String)> {
    check_indexed(policy, &api(), sql, &analyze(sql).unwrap()).map_err(|(i, d)| (i, d.reason))
}

#[test]
fn literal_variants_through_the_cache_get_the_uncached_answer() {
    let policy = policy();
    let pairs = [
        (
            "SELECT email, id FROM t ORDER BY 2",
            "SELECT email, id FROM t ORDER BY 1",
        ),
        (
            "SELECT email FROM t GROUP BY 1",
            "SELECT email FROM t GROUP BY 2",
        ),
        (
            "SELECT email FROM t WHERE id = 1",
            "SELECT email FROM t WHERE id = 2",
        ),
        (
            "SELECT id FROM t WHERE email = 'a'",
            "SELECT id FROM t WHERE email = 'b'",
        ),
        (
            "SELECT email FROM t WHERE id = 1; SELECT upper(email) FROM t WHERE id = 1",
            "SELECT email FROM t WHERE id = 2; SELECT upper(email) FROM t WHERE id = 2",
        ),
    ];
    for (a, b) in pairs {
        for (first, second) in [(a, b), (b, a)] {
            let cache = AnalysisCache::new(64);
            for sql in [first, second, first] {
                let analysis = cache.analyze(sql).unwrap();
                let got =
                    check_indexed(&policy, &api(), sql, &analysis).map_err(|(i, d)| (i, d.reason));
                assert_eq!(got, fresh(&policy, sql), "{sql} (after {first})");
            }
            assert_eq!(cache.misses(), 1, "{second} shares the entry of {first}");
        }
    }
    assert!(fresh(&policy, "SELECT email, id FROM t ORDER BY 1").is_err());
    assert!(fresh(&policy, "SELECT email FROM t WHERE id = 1").is_ok());
    assert!(fresh(&policy, "SELECT id FROM t WHERE email = 'a'").is_err());
}

#[test]
fn positional_answers_are_not_remembered() {
    let policy = policy();
    let cache = AnalysisCache::new(64);
    for sql in [
        "SELECT email, id FROM t ORDER BY 2",
        "SELECT email FROM t GROUP BY 1",
    ] {
        let analysis = cache.analyze(sql).unwrap();
        assert!(check_indexed(&policy, &api(), sql, &analysis).is_err());
        assert_eq!(analysis.masked_use.get(policy.id), None, "{sql}");
    }
    let sql = "SELECT id FROM t WHERE email = 'a'";
    let analysis = cache.analyze(sql).unwrap();
    assert!(check_indexed(&policy, &api(), sql, &analysis).is_err());
    assert_eq!(
        analysis.masked_use.get(policy.id),
        Some(Err((0, MaskedColumnUse::Expression)))
    );
}

#[test]
fn remembered_answers_belong_to_one_compiled_policy() {
    let first = policy();
    let sql = "SELECT email FROM t WHERE id = 1";
    let cache = AnalysisCache::new(64);
    let analysis = cache.analyze(sql).unwrap();
    // Plant an answer the walk would never give, to see who reads it.
    analysis
        .masked_use
        .put(first.id, Err((0, MaskedColumnUse::Copy)));
    let variant = "SELECT email FROM t WHERE id = 2";
    let shared = cache.analyze(variant).unwrap();
    assert!(Arc::ptr_eq(&analysis, &shared));
    let planted = check_indexed(&first, &api(), variant, &shared).unwrap_err();
    assert!(planted.1.reason.contains("COPY TO"), "the memo is read");

    // The same spec compiled again is another policy: it walks for itself.
    let second = policy();
    assert_ne!(first.id, second.id);
    assert!(check_indexed(&second, &api(), variant, &shared).is_ok());
    // Nor does an uncached analysis remember anything.
    let uncached = analyze(sql).unwrap();
    uncached
        .masked_use
        .put(first.id, Err((0, MaskedColumnUse::Copy)));
    assert!(check_indexed(&first, &api(), sql, &uncached).is_ok());
}
