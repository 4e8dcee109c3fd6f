//! Equivalence of the two old pattern implementations (crds' validator, policy's compiler) with
//! the shared one that replaces them: identical acceptance, identical matches, identical errors.
//! The old code is copied here verbatim (minus comments) so the comparison outlives its deletion.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::glob::{ColumnGlob, Qualify, TableGlob};
use crate::analyze::TableRef;

/// `crds/src/glob.rs` before the merge.
mod old_crds {
    use dbwarden_crds::GlobError;

    const MAX_PART: usize = 63;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Part(String);

    impl Part {
        fn parse(text: &str) -> Result<Self, GlobError> {
            if text.is_empty() {
                return Err(GlobError::EmptyPart);
            }
            if text.len() > MAX_PART {
                return Err(GlobError::TooLong);
            }
            if let Some(c) = text
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '*')))
            {
                return Err(GlobError::BadChar(c));
            }
            if text.contains("**") {
                return Err(GlobError::DoubleStar);
            }
            Ok(Self(text.to_ascii_lowercase()))
        }

        fn matches(&self, name: &str) -> bool {
            wildcard(self.0.as_bytes(), name.to_ascii_lowercase().as_bytes())
        }
    }

    fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some(b'*') => {
                    star = Some((p + 1, t));
                    p += 1;
                }
                Some(c) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((after, stretched)) => {
                        p = after;
                        t = stretched + 1;
                        star = Some((after, stretched + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p.min(pattern.len())..].iter().all(|c| *c == b'*')
    }

    fn split(
        text: &str,
        expected: &'static str,
        allowed: std::ops::RangeInclusive<usize>,
    ) -> Result<Vec<Part>, GlobError> {
        if text.is_empty() {
            return Err(GlobError::Empty);
        }
        let pieces: Vec<&str> = text.split('.').collect();
        if pieces.iter().any(|p| p.is_empty()) {
            return Err(GlobError::EmptyPart);
        }
        if !allowed.contains(&pieces.len()) {
            return Err(GlobError::Parts {
                found: pieces.len(),
                expected,
            });
        }
        pieces.into_iter().map(Part::parse).collect()
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct TablePattern {
        schema: Option<Part>,
        table: Part,
    }

    impl TablePattern {
        pub(super) fn parse(text: &str) -> Result<Self, GlobError> {
            let mut parts = split(text, "table or schema.table", 1..=2)?;
            let table = parts.pop().ok_or(GlobError::Empty)?;
            Ok(Self {
                schema: parts.pop(),
                table,
            })
        }

        pub(super) fn matches(&self, schema: &str, table: &str) -> bool {
            self.schema.as_ref().is_none_or(|s| s.matches(schema)) && self.table.matches(table)
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct ColumnPattern {
        table: TablePattern,
        column: Part,
    }

    impl ColumnPattern {
        pub(super) fn parse(text: &str) -> Result<Self, GlobError> {
            let mut parts = split(text, "table.column or schema.table.column", 2..=3)?;
            let column = parts.pop().ok_or(GlobError::Empty)?;
            let table = parts.pop().ok_or(GlobError::Empty)?;
            Ok(Self {
                table: TablePattern {
                    schema: parts.pop(),
                    table,
                },
                column,
            })
        }

        pub(super) fn matches(&self, schema: &str, table: &str, column: &str) -> bool {
            self.table.matches(schema, table) && self.column.matches(column)
        }
    }
}

/// `policy/src/compile/glob.rs` before the merge.
mod old_policy {
    use super::super::glob::Qualify;
    use crate::analyze::TableRef;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct Part(Box<[u8]>);

    impl Part {
        fn parse(text: &str) -> Option<Self> {
            let valid = !text.is_empty()
                && text.len() <= 63
                && !text.contains("**")
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'*'));
            valid.then(|| Self(text.to_ascii_lowercase().into_bytes().into_boxed_slice()))
        }

        pub(super) fn is_star(&self) -> bool {
            &*self.0 == b"*"
        }

        pub(super) fn matches(&self, name: &str) -> bool {
            let (pattern, text) = (&self.0, name.as_bytes());
            let (mut p, mut t) = (0, 0);
            let mut star: Option<(usize, usize)> = None;
            while t < text.len() {
                match pattern.get(p) {
                    Some(b'*') => {
                        star = Some((p + 1, t));
                        p += 1;
                    }
                    Some(c) if *c == text[t].to_ascii_lowercase() => {
                        p += 1;
                        t += 1;
                    }
                    _ => match star {
                        Some((after, stretched)) => {
                            p = after;
                            t = stretched + 1;
                            star = Some((after, stretched + 1));
                        }
                        None => return false,
                    },
                }
            }
            pattern
                .get(p..)
                .unwrap_or_default()
                .iter()
                .all(|c| *c == b'*')
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct TableGlob {
        schema: Option<Part>,
        table: Part,
    }

    impl TableGlob {
        pub(super) fn parse(text: &str) -> Option<Self> {
            let mut parts = text.split('.').map(Part::parse);
            match (parts.next(), parts.next(), parts.next()) {
                (Some(table), None, None) => Some(Self {
                    schema: None,
                    table: table?,
                }),
                (Some(schema), Some(table), None) => Some(Self {
                    schema: Some(schema?),
                    table: table?,
                }),
                _ => None,
            }
        }

        pub(super) fn matches(&self, schema: &str, table: &str) -> bool {
            self.schema.as_ref().is_none_or(|s| s.matches(schema)) && self.table.matches(table)
        }

        pub(super) fn matches_ref(&self, table: &TableRef, qualify: Qualify) -> bool {
            match (&table.schema, qualify) {
                (Some(schema), _) => self.matches(schema, &table.name),
                (None, Qualify::Possible) => self.table.matches(&table.name),
                (None, Qualify::Certain) => {
                    self.schema.as_ref().is_none_or(Part::is_star)
                        && self.table.matches(&table.name)
                }
            }
        }

        pub(super) fn is_match_all(&self) -> bool {
            self.table.is_star() && self.schema.as_ref().is_none_or(Part::is_star)
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct ColumnGlob {
        pub(super) table: TableGlob,
        pub(super) column: Part,
    }

    impl ColumnGlob {
        pub(super) fn parse(text: &str) -> Option<Self> {
            let (table, column) = text.rsplit_once('.')?;
            Some(Self {
                table: TableGlob::parse(table)?,
                column: Part::parse(column)?,
            })
        }

        pub(super) fn matches(&self, schema: &str, table: &str, column: &str) -> bool {
            self.table.matches(schema, table) && self.column.matches(column)
        }
    }
}

/// The new policy wrappers, as `Option` so old and new read alike.
fn new_table(text: &str) -> Option<TableGlob> {
    TableGlob::parse(text).ok()
}

fn new_column(text: &str) -> Option<ColumnGlob> {
    ColumnGlob::parse(text).ok()
}

/// Every string of length `0..=max` over `alphabet`.
fn strings(alphabet: &[&str], max: usize) -> Vec<String> {
    let mut all = vec![String::new()];
    let mut last = vec![String::new()];
    for _ in 0..max {
        last = last
            .iter()
            .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
            .collect();
        all.extend(last.iter().cloned());
    }
    all
}

/// Parts of patterns: wildcards at start, middle, end, several, `**`, empty, case, `$`, `_`,
/// digits, 63 and 64 characters, non-ASCII, and characters outside the syntax.
fn pattern_parts() -> Vec<String> {
    let mut parts: Vec<String> = [
        "", "*", "**", "a", "A", "a*", "*a", "a*b", "*a*", "a**b", "A*B*C", "a*b*c", "*_*", "$*",
        "_", "$", "x$y_1", "1", "é", "É*", "a-b", "a b", "a;b", "\"a\"", "*é", "ſ", "K",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    parts.push("a".repeat(63));
    parts.push("a".repeat(64));
    parts.push(format!("{}*", "b".repeat(62)));
    parts.push(format!("*{}", "b".repeat(63)));
    parts.push(format!("{}é", "c".repeat(61))); // 63 bytes, 62 characters
    parts
}

/// Names a statement might carry (already folded by the analyser, but case is not relied on).
fn names() -> Vec<String> {
    let mut names: Vec<String> = [
        "", "a", "A", "b", "ab", "aXb", "axxbyyc", "AXXBYYC", "axxbyy", "_", "$", "x$y_1", "X$Y_1",
        "é", "É", "a.b", "*", "**", "a*b", "1", "ſ", "k", "\u{212a}",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.push("a".repeat(63));
    names.push("a".repeat(64));
    names.push("b".repeat(63));
    names.push(format!("{}x", "b".repeat(62)));
    names
}

#[test]
fn single_parts_agree_exhaustively() {
    // Every pattern part of up to 4 symbols against every name of up to 3 symbols.
    let patterns = strings(&["a", "B", "*", "$", "_", "-", "é"], 4);
    let names = strings(&["a", "b", "A", "B", "$", "_", ".", "é", "1"], 3);
    let (mut accepted, mut compared, mut matched) = (0, 0, 0);
    for pattern in &patterns {
        let crds = old_crds::TablePattern::parse(pattern);
        let policy = old_policy::TableGlob::parse(pattern);
        let new = new_table(pattern);
        let shared = dbwarden_crds::TablePattern::parse(pattern);
        assert_eq!(
            crds.is_ok(),
            policy.is_some(),
            "old acceptance of {pattern:?}"
        );
        assert_eq!(
            policy.is_some(),
            new.is_some(),
            "new acceptance of {pattern:?}"
        );
        assert_eq!(
            crds.clone().err(),
            shared.clone().err(),
            "error for {pattern:?}"
        );
        let (Ok(crds), Some(policy), Some(new)) = (crds, policy, new) else {
            continue;
        };
        accepted += 1;
        for name in &names {
            let want = crds.matches("s", name);
            assert_eq!(
                want,
                policy.matches("s", name),
                "old: {pattern:?} vs {name:?}"
            );
            assert_eq!(want, new.matches("s", name), "new: {pattern:?} vs {name:?}");
            assert_eq!(
                want,
                shared.as_ref().unwrap().matches("s", name),
                "crds: {pattern:?} vs {name:?}"
            );
            compared += 1;
            matched += usize::from(want);
        }
    }
    // The generator really produced both outcomes in bulk.
    assert!(
        accepted > 700 && matched > 5_000 && compared - matched > 500_000,
        "{accepted} {matched} {compared}"
    );
}

#[test]
fn table_patterns_agree() {
    let parts = pattern_parts();
    let names = names();
    let mut patterns: Vec<String> = Vec::new();
    for a in &parts {
        patterns.push(a.clone());
        for b in &parts {
            patterns.push(format!("{a}.{b}"));
        }
    }
    for extra in ["a.b.c", "*.*.*", ".", "..", "a.", ".a", "a..b", "*.", ".*"] {
        patterns.push(extra.to_owned());
    }
    let refs: Vec<TableRef> = names
        .iter()
        .flat_map(|table| {
            std::iter::once(TableRef::new(None, table)).chain(
                names
                    .iter()
                    .map(|schema| TableRef::new(Some(schema), table)),
            )
        })
        .collect();
    let mut accepted = 0;
    for pattern in &patterns {
        let crds = old_crds::TablePattern::parse(pattern);
        let policy = old_policy::TableGlob::parse(pattern);
        let new = new_table(pattern);
        let shared = dbwarden_crds::TablePattern::parse(pattern);
        assert_eq!(
            crds.is_ok(),
            policy.is_some(),
            "old acceptance of {pattern:?}"
        );
        assert_eq!(
            policy.is_some(),
            new.is_some(),
            "new acceptance of {pattern:?}"
        );
        assert_eq!(
            crds.clone().err(),
            shared.clone().err(),
            "error for {pattern:?}"
        );
        let (Ok(crds), Some(policy), Some(new), Ok(shared)) = (crds, policy, new, shared) else {
            continue;
        };
        accepted += 1;
        assert_eq!(policy.is_match_all(), new.is_match_all(), "{pattern:?}");
        for table in &refs {
            if let Some(schema) = &table.schema {
                let want = crds.matches(schema, &table.name);
                assert_eq!(
                    want,
                    policy.matches(schema, &table.name),
                    "{pattern:?} {table}"
                );
                assert_eq!(
                    want,
                    new.matches(schema, &table.name),
                    "{pattern:?} {table}"
                );
                assert_eq!(
                    want,
                    shared.matches(schema, &table.name),
                    "{pattern:?} {table}"
                );
            }
            for qualify in [Qualify::Certain, Qualify::Possible] {
                assert_eq!(
                    policy.matches_ref(table, qualify),
                    new.matches_ref(table, qualify),
                    "{pattern:?} {table} {qualify:?}"
                );
            }
        }
    }
    assert!(accepted > 300, "{accepted}");
}

#[test]
fn column_patterns_agree() {
    let parts = pattern_parts();
    let names: Vec<String> = names().into_iter().step_by(3).collect();
    let few: Vec<&String> = parts.iter().step_by(2).collect();
    let mut patterns: Vec<String> = Vec::new();
    for a in &parts {
        patterns.push(a.clone());
        for b in &parts {
            patterns.push(format!("{a}.{b}"));
        }
    }
    for a in &few {
        for b in &few {
            for c in &few {
                patterns.push(format!("{a}.{b}.{c}"));
            }
        }
    }
    for extra in [
        "a.b.c.d", "*.*.*.*", "..", "...", "a.b.", ".a.b", "a..b", "*.ssn",
    ] {
        patterns.push(extra.to_owned());
    }
    let mut accepted = 0;
    for pattern in &patterns {
        let crds = old_crds::ColumnPattern::parse(pattern);
        let policy = old_policy::ColumnGlob::parse(pattern);
        let new = new_column(pattern);
        let shared = dbwarden_crds::ColumnPattern::parse(pattern);
        assert_eq!(
            crds.is_ok(),
            policy.is_some(),
            "old acceptance of {pattern:?}"
        );
        assert_eq!(
            policy.is_some(),
            new.is_some(),
            "new acceptance of {pattern:?}"
        );
        assert_eq!(
            crds.clone().err(),
            shared.clone().err(),
            "error for {pattern:?}"
        );
        let (Ok(crds), Some(policy), Some(new), Ok(shared)) = (crds, policy, new, shared) else {
            continue;
        };
        accepted += 1;
        for schema in &names {
            for table in &names {
                let unqualified = TableRef::new(None, table);
                for qualify in [Qualify::Certain, Qualify::Possible] {
                    assert_eq!(
                        policy.table.matches_ref(&unqualified, qualify),
                        new.table.matches_ref(&unqualified, qualify),
                        "{pattern:?} {table} {qualify:?}"
                    );
                }
                for column in &names {
                    let want = crds.matches(schema, table, column);
                    let at = format!("{pattern:?} vs {schema}.{table}.{column}");
                    assert_eq!(want, policy.matches(schema, table, column), "{at}");
                    assert_eq!(want, new.matches(schema, table, column), "{at}");
                    assert_eq!(want, shared.matches(schema, table, column), "{at}");
                    assert_eq!(
                        policy.column.matches(column),
                        new.column.matches(column),
                        "{at}"
                    );
                }
            }
        }
    }
    assert!(accepted > 800, "{accepted}");
}
