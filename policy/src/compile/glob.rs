//! Pre-parsed table and column patterns, matched without allocating.
//!
//! Same syntax and meaning as `dbwarden_crds::glob` (dot-separated parts, `*` within one part,
//! ASCII case ignored); compiled once per policy so the hot path only compares bytes.
//!
//! # Unqualified names
//!
//! A statement may name a table without its schema (`orders`); PostgreSQL then resolves it through
//! the session's `search_path`, which the client controls (`SET search_path`). The policy therefore
//! cannot know the schema, and matching is asymmetric so that neither direction fails open:
//!
//! - [`Qualify::Certain`] (allow rules): an unqualified name matches only a pattern that matches
//!   the table in *every* schema, i.e. one without a schema part (`orders`) or with `*` as its
//!   schema (`*.orders`). `public.orders` does **not** allow `SELECT * FROM orders`.
//! - [`Qualify::Possible`] (deny rules, approval rules, masking exposure): an unqualified name
//!   matches any pattern whose table part matches, whatever its schema part, because the name
//!   might resolve into that schema. `DENY secret.*` denies `SELECT * FROM orders` only if the
//!   table part matches too (`secret.*` does, `secret.keys` does not).

use crate::analyze::TableRef;

/// One dot-separated part of a pattern, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part(Box<[u8]>);

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

    /// True for the part `*`, which matches every name.
    pub(crate) fn is_star(&self) -> bool {
        &*self.0 == b"*"
    }

    /// Wildcard match of `name`, ignoring ASCII case.
    pub(crate) fn matches(&self, name: &str) -> bool {
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

/// How an unqualified table name is matched (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Qualify {
    /// The pattern must match whatever schema the name resolves to (allow rules).
    Certain,
    /// The pattern matches if the name could resolve to a table it matches (deny, approvals).
    Possible,
}

/// `table` or `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableGlob {
    schema: Option<Part>,
    table: Part,
}

impl TableGlob {
    /// Parses a table pattern; `None` when it is not one.
    pub(crate) fn parse(text: &str) -> Option<Self> {
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

    /// True when `schema.table` is matched.
    pub(crate) fn matches(&self, schema: &str, table: &str) -> bool {
        self.schema.as_ref().is_none_or(|s| s.matches(schema)) && self.table.matches(table)
    }

    /// True when the table a statement names is matched, unqualified names per `qualify`.
    pub(crate) fn matches_ref(&self, table: &TableRef, qualify: Qualify) -> bool {
        match (&table.schema, qualify) {
            (Some(schema), _) => self.matches(schema, &table.name),
            (None, Qualify::Possible) => self.table.matches(&table.name),
            (None, Qualify::Certain) => {
                self.schema.as_ref().is_none_or(Part::is_star) && self.table.matches(&table.name)
            }
        }
    }

    /// True for `*` and `*.*`: every table.
    pub(crate) fn is_match_all(&self) -> bool {
        self.table.is_star() && self.schema.as_ref().is_none_or(Part::is_star)
    }
}

/// `table.column` or `schema.table.column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnGlob {
    pub(crate) table: TableGlob,
    pub(crate) column: Part,
}

impl ColumnGlob {
    /// Parses a column pattern; `None` when it is not one.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (table, column) = text.rsplit_once('.')?;
        Some(Self {
            table: TableGlob::parse(table)?,
            column: Part::parse(column)?,
        })
    }

    /// True when the column `schema.table.column` is matched.
    pub(crate) fn matches(&self, schema: &str, table: &str, column: &str) -> bool {
        self.table.matches(schema, table) && self.column.matches(column)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn agrees_with_the_documented_table_examples() {
        let cases = [
            ("orders", "public", "orders", true),
            ("public.orders", "sales", "orders", false),
            ("public.*", "public", "anything", true),
            ("audit_*", "public", "audits", false),
            ("PUBLIC.Users", "public", "USERS", true),
            ("a*b*c", "s", "aXXbYYc", true),
            ("a*b*c", "s", "aXXbYY", false),
        ];
        for (pattern, schema, table, expected) in cases {
            let glob = TableGlob::parse(pattern).unwrap();
            assert_eq!(glob.matches(schema, table), expected, "{pattern}");
        }
    }

    #[test]
    fn unqualified_names_match_asymmetrically() {
        let t = TableRef::new(None, "orders");
        let qualified = TableGlob::parse("public.orders").unwrap();
        assert!(!qualified.matches_ref(&t, Qualify::Certain));
        assert!(qualified.matches_ref(&t, Qualify::Possible));
        let any = TableGlob::parse("*.orders").unwrap();
        assert!(any.matches_ref(&t, Qualify::Certain));
        assert!(
            TableGlob::parse("orders")
                .unwrap()
                .matches_ref(&t, Qualify::Certain)
        );
        assert!(
            !TableGlob::parse("secret.keys")
                .unwrap()
                .matches_ref(&t, Qualify::Possible)
        );
    }

    #[test]
    fn columns_and_bad_patterns() {
        let glob = ColumnGlob::parse("billing.*.card_*").unwrap();
        assert!(glob.matches("billing", "payments", "card_number"));
        assert!(!glob.matches("crm", "payments", "card_number"));
        assert!(ColumnGlob::parse("email").is_none());
        assert!(TableGlob::parse("a.b.c").is_none());
        assert!(TableGlob::parse("a..b").is_none());
        assert!(TableGlob::parse("x;drop").is_none());
    }
}
