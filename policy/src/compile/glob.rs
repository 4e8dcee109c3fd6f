//! Pre-parsed table and column patterns, matched without allocating.
//!
//! Thin wrappers over `dbwarden_crds::glob`, the one parser and matcher of the pattern syntax (the
//! admission webhook validates with the same code), adding what only enforcement needs: matching
//! the table a statement names, with or without its schema. Compiled once per policy; matching
//! only compares bytes.
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

use dbwarden_crds::glob::{ColumnPattern, GlobError, TablePattern};

pub(crate) use dbwarden_crds::glob::Part;

use crate::analyze::TableRef;

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
pub(crate) struct TableGlob(TablePattern);

impl TableGlob {
    /// Parses a table pattern with the validator's parser.
    pub(crate) fn parse(text: &str) -> Result<Self, GlobError> {
        TablePattern::parse(text).map(Self)
    }

    /// True when `schema.table` is matched.
    pub(crate) fn matches(&self, schema: &str, table: &str) -> bool {
        self.0.matches(schema, table)
    }

    /// True when the table a statement names is matched, unqualified names per `qualify`.
    pub(crate) fn matches_ref(&self, table: &TableRef, qualify: Qualify) -> bool {
        match (&table.schema, qualify) {
            (Some(schema), _) => self.matches(schema, &table.name),
            (None, Qualify::Possible) => self.0.table().matches(&table.name),
            (None, Qualify::Certain) => {
                self.0.schema().is_none_or(Part::is_star) && self.0.table().matches(&table.name)
            }
        }
    }

    /// True for `*` and `*.*`: every table.
    pub(crate) fn is_match_all(&self) -> bool {
        self.0.table().is_star() && self.0.schema().is_none_or(Part::is_star)
    }
}

/// `table.column` or `schema.table.column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnGlob {
    pub(crate) table: TableGlob,
    pub(crate) column: Part,
}

impl ColumnGlob {
    /// Parses a column pattern with the validator's parser.
    pub(crate) fn parse(text: &str) -> Result<Self, GlobError> {
        let (table, column) = ColumnPattern::parse(text)?.into_parts();
        Ok(Self {
            table: TableGlob(table),
            column,
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
        assert!(ColumnGlob::parse("email").is_err());
        assert!(TableGlob::parse("a.b.c").is_err());
        assert!(TableGlob::parse("a..b").is_err());
        assert!(TableGlob::parse("x;drop").is_err());
    }
}
