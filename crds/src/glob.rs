//! Table and column patterns: `orders`, `public.*`, `*.users`, `public.users.email`, `*.ssn`.
//!
//! A pattern is dot-separated parts. Each part is made of identifier characters (`A-Z`, `a-z`,
//! `0-9`, `_`, `$`) and `*`, which matches any run of characters, including none, within one
//! part (never across a dot). Matching ignores ASCII case, as PostgreSQL folds unquoted names to
//! lower case. Quoted identifiers with dots or spaces cannot be written in v1alpha1.
//!
//! - A table pattern has one part (`table`: any schema) or two (`schema.table`).
//! - A column pattern has two parts (`table.column`: any schema) or three (`schema.table.column`).
//!   The shorthand `*.ssn` is two parts: the column `ssn` of any table in any schema.
//!
//! This is the only implementation of the syntax and of matching: the admission webhook validates
//! with it and the sidecar compiles its policies from it (`dbwarden-policy` wraps these types), so
//! a pattern cannot pass validation and then mean something else when enforced.

use std::fmt;

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_PART: usize = 63;

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// Nothing to match.
    #[error("is empty")]
    Empty,
    /// `public..users`, `.users`, `users.`
    #[error("has an empty part (two dots in a row, or a dot at an end)")]
    EmptyPart,
    /// Too few or too many dots.
    #[error("has {found} part(s); write {expected}")]
    Parts {
        /// Parts found.
        found: usize,
        /// What this kind of pattern looks like.
        expected: &'static str,
    },
    /// A character outside identifiers and `*`.
    #[error("has {0:?}; use letters, digits, _, $ and * only")]
    BadChar(char),
    /// `**` is never needed and usually a mistake for something else.
    #[error("has ** (one * already matches any run of characters within a part)")]
    DoubleStar,
    /// A part longer than an identifier can be.
    #[error("has a part longer than 63 characters")]
    TooLong,
}

/// One dot-separated part of a pattern, lower-cased: the unit both the admission webhook and the
/// sidecar match with, so that what validates is exactly what is enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part(Box<str>);

impl Part {
    /// Parses one part (no dots): identifier characters and single `*`s, at most 63 bytes.
    pub fn parse(text: &str) -> Result<Self, GlobError> {
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
        Ok(Self(text.to_ascii_lowercase().into_boxed_str()))
    }

    /// The part as written, lower-cased.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the part `*`, which matches every name.
    #[inline]
    pub fn is_star(&self) -> bool {
        &*self.0 == "*"
    }

    /// True when `name` is matched, ignoring ASCII case. Never allocates (the sidecar calls this
    /// per statement on its hot path).
    #[inline]
    pub fn matches(&self, name: &str) -> bool {
        wildcard(self.0.as_bytes(), name.as_bytes())
    }
}

/// `*` matches any run of bytes; everything else matches itself, `text` folded to ASCII lower case
/// (the pattern already is).
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Position after the last `*` seen, and the text position it is currently stretched to.
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

/// A table pattern: `table` or `schema.table`, with `*` wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    schema: Option<Part>,
    table: Part,
}

impl TablePattern {
    /// Parses `orders`, `public.orders`, `public.*`, `*`.
    pub fn parse(text: &str) -> Result<Self, GlobError> {
        let mut parts = split(text, "table or schema.table", 1..=2)?;
        let table = parts.pop().ok_or(GlobError::Empty)?;
        Ok(Self {
            schema: parts.pop(),
            table,
        })
    }

    /// The schema part, when the pattern has one.
    pub fn schema(&self) -> Option<&Part> {
        self.schema.as_ref()
    }

    /// The table part.
    pub fn table(&self) -> &Part {
        &self.table
    }

    /// True when the table `schema.table` is matched.
    #[inline]
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        self.schema.as_ref().is_none_or(|s| s.matches(schema)) && self.table.matches(table)
    }
}

/// A column pattern: `table.column` or `schema.table.column`, with `*` wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPattern {
    table: TablePattern,
    column: Part,
}

impl ColumnPattern {
    /// Parses `users.email`, `public.users.email`, `*.ssn`, `billing.*.card_*`.
    pub fn parse(text: &str) -> Result<Self, GlobError> {
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

    /// The table (and schema) parts.
    pub fn table(&self) -> &TablePattern {
        &self.table
    }

    /// The column part.
    pub fn column(&self) -> &Part {
        &self.column
    }

    /// Splits into the table pattern and the column part.
    pub fn into_parts(self) -> (TablePattern, Part) {
        (self.table, self.column)
    }

    /// True when the column `schema.table.column` is matched.
    #[inline]
    pub fn matches(&self, schema: &str, table: &str, column: &str) -> bool {
        self.table.matches(schema, table) && self.column.matches(column)
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn table_patterns_match_as_documented() {
        let cases = [
            ("orders", "public", "orders", true),
            ("orders", "sales", "orders", true),
            ("public.orders", "sales", "orders", false),
            ("public.*", "public", "anything", true),
            ("*", "x", "y", true),
            ("audit_*", "public", "audit_2024", true),
            ("audit_*", "public", "audits", false),
            ("PUBLIC.Users", "public", "users", true),
            ("*_log", "public", "log", false),
            ("a*b*c", "s", "aXXbYYc", true),
            ("a*b*c", "s", "aXXbYY", false),
        ];
        for (pattern, schema, table, expected) in cases {
            let p = TablePattern::parse(pattern).unwrap();
            assert_eq!(
                p.matches(schema, table),
                expected,
                "{pattern} vs {schema}.{table}"
            );
        }
    }

    /// Kept from the equivalence test that retired the sidecar's own copy of the matcher: one
    /// part against one name, covering where `*` sits, case, `$`/`_`, dots and non-ASCII names.
    #[test]
    fn parts_match_by_the_regression_table() {
        let long = "a".repeat(63);
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything.with.dots", true),
            ("a*", "a", true),
            ("a*", "ba", false),
            ("*a", "ba", true),
            ("*a", "ab", false),
            ("a*b", "ab", true),
            ("a*b", "aXb", true),
            ("a*b", "aXbY", false),
            ("*a*", "bab", true),
            ("*a*", "bbb", false),
            ("a*b*c", "abbc", true),
            ("a*b*c", "acbc", true),
            ("a*b*c", "acb", false),
            ("*_*", "a_b", true),
            ("*_*", "ab", false),
            ("$*", "$x", true),
            ("$*", "x$", false),
            ("x$y_1", "X$Y_1", true),
            ("x$y_1", "x$y_2", false),
            ("users", "USERS", true),
            ("USERS", "users", true),
            ("users", "user", false),
            ("users", "users2", false),
            ("a*", "a.b", true),
            ("a", "a.b", false),
            // Only ASCII folds, as in PostgreSQL's unquoted identifiers: é is not É, and the
            // Kelvin sign and long s do not fold to k and s.
            ("*", "é", true),
            ("a*", "aé", true),
            ("e", "é", false),
            ("k", "\u{212a}", false),
            ("s", "ſ", false),
            (&long, &long, true),
            (&long, &"a".repeat(64), false),
        ];
        for (part, name, expected) in cases {
            let parsed = Part::parse(part).unwrap();
            assert_eq!(parsed.matches(name), *expected, "{part:?} vs {name:?}");
        }
    }

    /// Which single parts are refused, and why (the webhook shows the reason).
    #[test]
    fn parts_are_accepted_by_the_regression_table() {
        let cases: &[(&str, Result<(), GlobError>)] = &[
            ("a", Ok(())),
            ("A*B*C", Ok(())),
            ("$_9", Ok(())),
            (&"b".repeat(63), Ok(())),
            (&format!("{}*", "b".repeat(62)), Ok(())),
            ("", Err(GlobError::EmptyPart)),
            ("**", Err(GlobError::DoubleStar)),
            ("a**b", Err(GlobError::DoubleStar)),
            ("a-b", Err(GlobError::BadChar('-'))),
            ("a b", Err(GlobError::BadChar(' '))),
            ("\"a\"", Err(GlobError::BadChar('"'))),
            ("é", Err(GlobError::BadChar('é'))),
            ("a.b", Err(GlobError::BadChar('.'))),
            (&"b".repeat(64), Err(GlobError::TooLong)),
            // 63 bytes but 62 characters: the limit is PostgreSQL's, in bytes.
            (
                &format!("{}é", "c".repeat(61)),
                Err(GlobError::BadChar('é')),
            ),
            (&format!("{}é", "c".repeat(62)), Err(GlobError::TooLong)),
        ];
        for (part, expected) in cases {
            assert_eq!(Part::parse(part).map(|_| ()), *expected, "{part:?}");
        }
    }

    #[test]
    fn pattern_shapes_by_the_regression_table() {
        let tables: &[(&str, bool)] = &[
            ("a", true),
            ("a.b", true),
            ("*.*", true),
            ("a.b.c", false),
            (".", false),
            ("a.", false),
            (".a", false),
            ("a..b", false),
        ];
        for (pattern, ok) in tables {
            assert_eq!(TablePattern::parse(pattern).is_ok(), *ok, "{pattern:?}");
        }
        let columns: &[(&str, bool)] = &[
            ("a", false),
            ("*.ssn", true),
            ("a.b.c", true),
            ("a.b.c.d", false),
            ("a.b.", false),
            ("..", false),
        ];
        for (pattern, ok) in columns {
            assert_eq!(ColumnPattern::parse(pattern).is_ok(), *ok, "{pattern:?}");
        }
    }

    #[test]
    fn column_patterns_match_as_documented() {
        let p = ColumnPattern::parse("*.ssn").unwrap();
        assert!(p.matches("hr", "employees", "ssn"));
        assert!(!p.matches("hr", "employees", "ssn_hash"));
        let p = ColumnPattern::parse("public.users.email").unwrap();
        assert!(p.matches("public", "users", "email"));
        assert!(!p.matches("crm", "users", "email"));
        let p = ColumnPattern::parse("billing.*.card_*").unwrap();
        assert!(p.matches("billing", "payments", "card_number"));
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        assert_eq!(TablePattern::parse(""), Err(GlobError::Empty));
        assert_eq!(
            TablePattern::parse("public..users"),
            Err(GlobError::EmptyPart)
        );
        assert_eq!(
            TablePattern::parse("a.b.c"),
            Err(GlobError::Parts {
                found: 3,
                expected: "table or schema.table"
            })
        );
        assert_eq!(
            TablePattern::parse("users;drop"),
            Err(GlobError::BadChar(';'))
        );
        assert_eq!(TablePattern::parse("pub**"), Err(GlobError::DoubleStar));
        assert_eq!(
            ColumnPattern::parse("email"),
            Err(GlobError::Parts {
                found: 1,
                expected: "table.column or schema.table.column"
            })
        );
        assert_eq!(
            ColumnPattern::parse("users.e-mail"),
            Err(GlobError::BadChar('-'))
        );
        assert_eq!(
            TablePattern::parse(&"x".repeat(64)),
            Err(GlobError::TooLong)
        );
    }
}
