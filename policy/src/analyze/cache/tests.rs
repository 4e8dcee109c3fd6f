#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn hit_returns_the_same_arc() {
    let cache = AnalysisCache::new(32);
    let a = cache.analyze("SELECT * FROM t").unwrap();
    let b = cache.analyze("SELECT * FROM t").unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!((cache.hits(), cache.misses()), (1, 1));
}

#[test]
fn stays_bounded_and_keeps_hot_entries() {
    let cache = AnalysisCache::new(SHARDS * 4);
    let hot = "SELECT 1 FROM hot";
    cache.analyze(hot).unwrap();
    for i in 0..1000 {
        cache.analyze(&format!("SELECT {i} FROM t{i}")).unwrap();
        cache.analyze(hot).unwrap();
    }
    assert!(cache.len() <= cache.capacity());
    let before = cache.hits();
    cache.analyze(hot).unwrap();
    assert_eq!(cache.hits(), before + 1, "a hot entry survives eviction");
}

#[test]
fn errors_and_oversized_entries_are_not_kept() {
    let cache = AnalysisCache::with_config(64, 16, AnalyzeConfig::default());
    assert!(cache.analyze("SELEC nonsense").is_err());
    cache.analyze("SELECT * FROM a_long_table_name").unwrap();
    assert!(cache.is_empty());
}

#[test]
fn shared_across_threads() {
    let cache = Arc::new(AnalysisCache::new(64));
    let handles: Vec<_> = (0..4)
        .map(|n| {
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let table = (i + n) % 10;
                    cache.analyze(&format!("SELECT {i} FROM t{table}")).unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    // Ten shapes, each analysed by whichever threads missed on it at once (at most four).
    assert_eq!(
        cache
            .shards
            .iter()
            .map(|s| s.lock().unwrap().shapes.len())
            .sum::<usize>(),
        10
    );
    assert!(cache.misses() <= 40, "{}", cache.misses());
    assert_eq!(cache.hits() + cache.misses(), 200);
}

/// A fresh, uncached analysis.
fn fresh(sql: &str) -> Result<Analysis, AnalyzeError> {
    analyze_with(sql, &AnalyzeConfig::default())
}

/// Analyses `first` then `second` through one cache; checks `second` against a fresh analysis and
/// returns whether it was a hit.
fn second_hits(first: &str, second: &str) -> bool {
    let cache = AnalysisCache::new(64);
    let _ = cache.analyze(first);
    let hits = cache.hits();
    let got = cache.analyze(second);
    assert_eq!(
        got.as_deref().map_err(Clone::clone),
        fresh(second).as_ref().map_err(Clone::clone),
        "{second} (after {first})"
    );
    cache.hits() > hits
}

#[test]
fn literal_variants_share_an_entry_and_equal_a_fresh_analysis() {
    let variants = [
        (
            "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 7;",
        ),
        (
            "UPDATE pgbench_accounts SET abalance = abalance + -4000 WHERE aid = 1;",
            "UPDATE pgbench_accounts SET abalance = abalance + -12 WHERE aid = 99999;",
        ),
        (
            "SELECT * FROM users WHERE name = 'bob' AND note = E'it\\'s'",
            "SELECT * FROM users WHERE name = '; DROP TABLE x; --' AND note = E'\\\\'",
        ),
        (
            "SELECT $$a$$, $fn$b$fn$ FROM t",
            "SELECT $$'; DROP TABLE t; --$$, $fn$$$ x $$$fn$ FROM t",
        ),
        (
            "SELECT N'a', X'1F', B'0101', U&'d\\0061t' FROM t",
            "SELECT N'bb', X'00', B'1', U&'x' FROM t",
        ),
        (
            "SELECT id FROM t WHERE id IN (1, 2, 3) AND price > 9.99",
            "SELECT id FROM t WHERE id IN (4, 4, 6) AND price > 0.5",
        ),
        (
            "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')",
            "INSERT INTO t (a, b) VALUES (3, 'z'), (3, 'z')",
        ),
        (
            "BEGIN; UPDATE t SET a = 'x' WHERE id = 1; SELECT 2; COMMIT",
            "BEGIN; UPDATE t SET a = 'y' WHERE id = 5; SELECT 9; COMMIT",
        ),
        (
            "PREPARE p AS SELECT * FROM t WHERE a = 1 LIMIT 10",
            "PREPARE p AS SELECT * FROM t WHERE a = 2 LIMIT 20",
        ),
        (
            "EXPLAIN ANALYZE DELETE FROM t WHERE id = 1",
            "EXPLAIN ANALYZE DELETE FROM t WHERE id = 2",
        ),
        // A tag per request in a comment (sqlcommenter, job names): not part of the shape.
        (
            "SELECT * FROM users WHERE id = 1 /*route='%2Fusers',traceparent='00-4bf92f-00f067-01'*/",
            "SELECT * FROM users WHERE id = 2 /*route='%2Fitems',traceparent='00-a3ce92-5e1b11-01'*/",
        ),
        (
            "-- job 17\nUPDATE t SET a = 1 WHERE id = 3",
            "-- job 18: nightly, /* retried */\nUPDATE t SET a = 5 WHERE id = 9",
        ),
    ];
    for (first, second) in variants {
        assert!(second_hits(first, second), "{second} should share {first}");
        assert!(second_hits(second, first), "{first} should share {second}");
    }
}

#[test]
fn plain_literal_variants_are_found_without_the_tokenizer() {
    let cache = AnalysisCache::new(64);
    let first = cache
        .analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 1 /* a */")
        .unwrap();
    for aid in 2..10 {
        let sql = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid} /* {aid} */");
        assert!(Arc::ptr_eq(&first, &cache.analyze(&sql).unwrap()), "{sql}");
    }
    assert_eq!(cache.quick_hits.load(Ordering::Relaxed), 8);
    // Outside the quick path (a parameter), the shape is still found, through the tokenizer.
    let param = cache.analyze("SELECT 1, $1").unwrap();
    assert!(Arc::ptr_eq(&param, &cache.analyze("SELECT 2, $1").unwrap()));
    assert_eq!(cache.quick_hits.load(Ordering::Relaxed), 8);
}

#[test]
fn statements_whose_literals_matter_are_not_shared() {
    // Each pair has one shape, but a literal is more than a value in it: never shared, and the
    // second text gets its own analysis.
    let pairs = [
        // The option's value decides whether the DELETE runs.
        (
            "EXPLAIN (ANALYZE 0) DELETE FROM t",
            "EXPLAIN (ANALYZE 1) DELETE FROM t",
        ),
        (
            "EXPLAIN (ANALYZE 'off') DELETE FROM t",
            "EXPLAIN (ANALYZE 'on') DELETE FROM t",
        ),
        // Type lengths are part of the tree, not values: they show in the fingerprint (and such a
        // statement is never shared, even with the same length: the check is per literal).
        (
            "SELECT x::varchar(10) FROM t",
            "SELECT x::varchar(20) FROM t",
        ),
        (
            "SELECT x::varchar(10) FROM t WHERE z = 1",
            "SELECT x::varchar(10) FROM t WHERE z = 2",
        ),
        // A DO block keeps its body in the fingerprint (it only parses statement by statement).
        (
            "DO $$ BEGIN PERFORM 1; END $$",
            "DO $$ BEGIN DROP TABLE t; END $$",
        ),
        (
            "SELECT 1; DO $$ BEGIN PERFORM 1; END $$",
            "SELECT 2; DO $$ BEGIN PERFORM 2; END $$",
        ),
    ];
    for (first, second) in pairs {
        assert!(!second_hits(first, second), "{second} after {first}");
        assert!(!second_hits(second, first), "{first} after {second}");
    }
    let explained = fresh("EXPLAIN (ANALYZE 0) DELETE FROM t").unwrap();
    let ran = fresh("EXPLAIN (ANALYZE 1) DELETE FROM t").unwrap();
    assert_ne!(explained, ran, "the case above matters");
}

#[test]
fn texts_differing_in_more_than_literal_values_never_share() {
    let pairs = [
        // With standard_conforming_strings the backslash is plain: two statements, a DROP.
        ("SELECT 'b'", "SELECT 'a\\' ; DROP TABLE x; --'"),
        ("SELECT 'a'", "SELECT E'a\\'; DROP TABLE x; --'"),
        ("SELECT E'a\\'b'", "SELECT 'a\\'b'"),
        ("SELECT $$x$$", "SELECT $a$x$a$"),
        ("SELECT $a$x$a$", "SELECT $b$x$b$"),
        ("SELECT 1", "SELECT 1 /* ; DROP TABLE x */"),
        ("SELECT 1", "SELECT 1 -- ; DROP TABLE x\n"),
        ("SELECT 1 /* a */", "SELECT 1 /* a */ ; DROP TABLE x"),
        ("SELECT 1 -- a\n", "SELECT 1 -- a\n; DROP TABLE x"),
        (
            "SELECT /*+ SeqScan(t) */ * FROM t",
            "SELECT /*+ IndexScan(t) */ * FROM t",
        ),
        (
            "SELECT --+ SeqScan(t)\n * FROM t",
            "SELECT --+ IndexScan(t)\n * FROM t",
        ),
        // sqlparser reads what follows a COPY ... FROM STDIN, comments too, as its data, also
        // behind EXPLAIN or PREPARE: such strings are analysed statement by statement, unshared.
        (
            "EXPLAIN COPY t FROM STDIN;/*a*/\n",
            "EXPLAIN COPY t FROM STDIN;/*b*/\n",
        ),
        (
            "PREPARE p AS COPY t FROM STDIN;-- a\n",
            "PREPARE p AS COPY t FROM STDIN;-- b\n",
        ),
        ("SELECT * FROM users", "SELECT * FROM \"Users\""),
        ("SELECT * FROM users", "SELECT * FROM \"users\""),
        (
            "SELECT * FROM t WHERE a = 1",
            "SELECT * FROM t WHERE a = $1",
        ),
        (
            "SELECT * FROM t WHERE a = 1",
            "SELECT * FROM t WHERE a = '1'",
        ),
        (
            "SELECT * FROM t WHERE a = 1",
            "SELECT * FROM t WHERE a = true",
        ),
        (
            "SELECT * FROM t WHERE a = 1",
            "SELECT * FROM t WHERE a = NULL",
        ),
        (
            "SELECT id FROM t WHERE id IN (1, 2)",
            "SELECT id FROM t WHERE id IN (1, 2, 3)",
        ),
        ("SELECT 1 FROM t", "SELECT 1 FROM u"),
    ];
    for (first, second) in pairs {
        assert!(!second_hits(first, second), "{second} after {first}");
        assert!(!second_hits(second, first), "{first} after {second}");
    }
    let hidden = fresh("SELECT 'a\\' ; DROP TABLE x; --'").unwrap();
    assert_eq!(hidden.statements.len(), 2, "the DROP is really there");
}

#[test]
fn errors_are_the_same_as_uncached() {
    // A literal the parser reads as an integer: ok when it fits, an error when it does not.
    let cases = [
        (
            "SELECT x::varchar(10) FROM t",
            "SELECT x::varchar(99999999999999999999) FROM t",
        ),
        ("SELECT 1 FROM t", "SELECT 1 FROM t WHERE"),
        ("SELECT 'a' FROM t", "SELECT 'a FROM t"),
    ];
    for (first, second) in cases {
        assert!(fresh(second).is_err(), "{second}");
        assert!(!second_hits(first, second));
    }
}
