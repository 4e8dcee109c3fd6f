//! Property tests: `analyze` returns (Ok or Err) on any input, never panics, and what it returns is
//! coherent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbwarden_policy::analyze::{AnalysisCache, analyze};
use proptest::prelude::*;

const SEEDS: &[&str] = &[
    "SELECT u.id, lower(u.email) FROM app.users u JOIN orders o ON o.uid = u.id WHERE o.total > $1",
    "WITH d AS (DELETE FROM t WHERE id IN (SELECT id FROM s) RETURNING *) SELECT * FROM d",
    "INSERT INTO t (a, b) SELECT a, b FROM s ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b RETURNING *",
    "UPDATE t SET a = s.a FROM s WHERE s.id = t.id; DELETE FROM r USING q WHERE q.id = r.id",
    "EXPLAIN (ANALYZE, BUFFERS) MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
    "COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv); COPY t FROM PROGRAM 'x'",
    "SELECT $tag$ ; $$ $tag$, 'it''s', E'\\n', \"Quoted\"\"Id\" FROM \"S\".\"T\" -- c\n/* c */",
    "DO $$ BEGIN EXECUTE 'DROP TABLE x'; END $$; ALTER SYSTEM SET a = 'b'",
    "SELECT * FROM t, LATERAL generate_series(1, t.n) g WHERE x > ALL (SELECT 1) FOR UPDATE",
    "PREPARE p (int) AS SELECT * FROM t WHERE id = $1; EXECUTE p(1); DEALLOCATE p",
];

/// Fragments that stress quoting, comments and statement boundaries when spliced in.
const FRAGMENTS: &[&str] = &[
    "'",
    "\"",
    "$$",
    "$a$",
    "--",
    "/*",
    "*/",
    ";",
    "(",
    ")",
    "::",
    "E'",
    "\\",
    "SELECT",
    "WITH",
    "DELETE",
    "FROM",
    "$1",
    "\n",
    "ONLY",
    "LATERAL",
    "RETURNING",
    ",",
    "*",
    "é",
    "\u{0}",
];

fn check(sql: &str) {
    if let Ok(analysis) = analyze(sql) {
        for statement in &analysis.statements {
            assert_eq!(statement.fingerprint.hash.len(), 64);
            // A statement that writes a table is never reported read-only.
            if !statement.tables_written.is_empty() && statement.explain.is_none() {
                assert!(statement.is_write, "{sql}");
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
    Splice(usize, usize),
}

fn apply(sql: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = sql.chars().collect();
    for edit in edits {
        let len = chars.len().max(1);
        match edit {
            Edit::Insert(at, text) => {
                let at = at % (chars.len() + 1);
                chars.splice(at..at, text.chars());
            }
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(chars.len());
                if at < end {
                    chars.drain(at..end);
                }
            }
            Edit::Splice(at, fragment) => {
                let at = at % (chars.len() + 1);
                let fragment = FRAGMENTS[fragment % FRAGMENTS.len()];
                chars.splice(at..at, fragment.chars());
            }
        }
    }
    chars.into_iter().collect()
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), "\\PC{0,4}").prop_map(|(at, s)| Edit::Insert(at, s)),
        (any::<usize>(), 0usize..12).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(at, f)| Edit::Splice(at, f)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings(sql in "\\PC{0,200}") {
        check(&sql);
    }

    #[test]
    fn sql_shaped_noise(parts in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40)) {
        check(&parts.join(" "));
        check(&parts.concat());
    }

    #[test]
    fn mutated_sql(seed in prop::sample::select(SEEDS), edits in prop::collection::vec(edit(), 1..6)) {
        check(&apply(seed, &edits));
    }
}

#[test]
fn seeds_analyse_and_cache() {
    let cache = AnalysisCache::new(64);
    for seed in SEEDS {
        let first = cache
            .analyze(seed)
            .unwrap_or_else(|e| panic!("{seed}: {e}"));
        let again = cache.analyze(seed).unwrap();
        assert!(std::sync::Arc::ptr_eq(&first, &again));
    }
}
