//! Literal variants of every corpus statement, through the cache: whether or not a variant shares
//! the original's cached analysis, it must get exactly what an uncached analysis gives it, and the
//! same masked-column answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbwarden_crds::policy::Strategy;
use dbwarden_crds::{DatabaseAccessPolicySpec, Operation as Op, Subjects};
use dbwarden_policy::analyze::{AnalysisCache, analyze};
use dbwarden_policy::mask::check_masked_column_use;
use dbwarden_policy::{CompiledPolicy, Identity};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Location, Token, Tokenizer};

/// Byte offset of a tokenizer location (1-based line and character column).
fn offset(sql: &str, at: Location) -> usize {
    let (mut line, mut column) = (1, 1);
    for (index, c) in sql.char_indices() {
        if line == at.line && column == at.column {
            return index;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    sql.len()
}

/// `sql` with every literal replaced by another value of the same kind.
fn variant(sql: &str) -> Option<String> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let mut out = String::new();
    let mut copied = 0;
    for token in tokens {
        let replacement = match &token.token {
            Token::Number(n, false) if n.bytes().all(|b| b.is_ascii_digit()) => "7".to_owned(),
            Token::Number(n, false) if n.contains('.') => "3.25".to_owned(),
            Token::SingleQuotedString(_) => "'zz'".to_owned(),
            Token::EscapedStringLiteral(_) => "E'z\\'z'".to_owned(),
            Token::NationalStringLiteral(_) => "N'zz'".to_owned(),
            Token::HexStringLiteral(_) => "X'AB'".to_owned(),
            Token::DollarQuotedString(d) => {
                let tag = d.tag.clone().unwrap_or_default();
                format!("${tag}$zz${tag}$")
            }
            _ => continue,
        };
        let (start, end) = (offset(sql, token.span.start), offset(sql, token.span.end));
        out.push_str(&sql[copied..start]);
        out.push_str(&replacement);
        copied = end;
    }
    out.push_str(&sql[copied..]);
    (out != sql).then_some(out)
}

fn masking_policy() -> CompiledPolicy {
    let spec = DatabaseAccessPolicySpec::builder()
        .allow("all", Subjects::service_accounts(["api"]), [Op::All], [])
        .mask("*.email", Strategy::Email)
        .mask("*.id", Strategy::Redact)
        .mask("*.a", Strategy::Redact)
        .build();
    CompiledPolicy::compile("shop", "p", &spec).unwrap()
}

#[test]
fn corpus_variants_get_the_uncached_answers() {
    let cases: Vec<serde_yaml::Value> = serde_yaml::from_str(include_str!("corpus.yaml")).unwrap();
    let policy = masking_policy();
    let me = Identity::service_account("shop", "api");
    let (mut variants, mut shared) = (0, 0);
    let mut failures = Vec::new();
    for case in &cases {
        let sql = case["sql"].as_str().unwrap();
        let Some(other) = variant(sql) else {
            continue;
        };
        variants += 1;
        for (first, second) in [(sql, other.as_str()), (other.as_str(), sql)] {
            let cache = AnalysisCache::new(64);
            let _ = cache.analyze(first);
            let hits = cache.hits();
            let cached = cache.analyze(second);
            if cache.hits() > hits {
                shared += 1;
            }
            let fresh = analyze(second);
            if cached.as_deref().ok() != fresh.as_ref().ok()
                || cached.as_ref().err() != fresh.as_ref().err()
            {
                failures.push(format!("analysis of {second} (after {first})"));
                continue;
            }
            let (Ok(cached), Ok(fresh)) = (cached, fresh) else {
                continue;
            };
            // Twice: the first check may remember its answer, the second reads it.
            let _ = check_masked_column_use(&policy, &me, first, &cache.analyze(first).unwrap());
            for _ in 0..2 {
                let got = check_masked_column_use(&policy, &me, second, &cached);
                let want = check_masked_column_use(&policy, &me, second, &fresh);
                if got != want {
                    failures.push(format!("masked use in {second} (after {first})"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Most corpus statements with literals are plain DML and queries: they should share.
    assert!(variants > 50, "{variants} variants");
    eprintln!("{shared} of {} lookups shared", variants * 2);
    assert!(
        shared > variants,
        "{shared} of {} lookups shared",
        variants * 2
    );
}
