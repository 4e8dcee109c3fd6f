//! Names as PostgreSQL resolves them: unquoted identifiers fold to lowercase, quoted ones stay exact.

use std::fmt;

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

/// Folds an identifier the way PostgreSQL does: unquoted ASCII letters to lowercase, quoted kept exact.
///
/// PostgreSQL only folds ASCII letters in UTF-8 databases, so `to_ascii_lowercase` matches it.
pub(crate) fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

/// The normalised parts of a dotted name; a part that is not a plain identifier is kept as written.
fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => normalize_ident(ident),
            other => other.to_string(),
        })
        .collect()
}

/// Writes an identifier, quoting it when PostgreSQL would not read it back unquoted as the same name.
fn write_ident(f: &mut fmt::Formatter<'_>, ident: &str) -> fmt::Result {
    let plain = !ident.is_empty()
        && ident
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !ident.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        f.write_str(ident)
    } else {
        write!(f, "\"{}\"", ident.replace('"', "\"\""))
    }
}

/// A table (or view, sequence...) as named in the statement.
///
/// `schema` is `None` when the statement did not qualify the name: such a name resolves through the
/// session's `search_path`, so policies should match it with care. A three-part name
/// (`db.schema.table`) keeps its last two parts; PostgreSQL only accepts the current database there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRef {
    /// The schema, normalised, when the statement wrote one.
    pub schema: Option<String>,
    /// The table name, normalised.
    pub name: String,
}

impl TableRef {
    /// Builds a reference from already-normalised parts (handy in tests and policy code).
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// Normalises a parsed (possibly dotted) name.
    pub(crate) fn from_object_name(name: &ObjectName) -> Self {
        let mut parts = parts(name);
        let table = parts.pop().unwrap_or_default();
        Self {
            schema: parts.pop(),
            name: table,
        }
    }

    /// Normalises a single identifier (a name that cannot carry a schema).
    pub(crate) fn from_ident(ident: &Ident) -> Self {
        Self {
            schema: None,
            name: normalize_ident(ident),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write_ident(f, schema)?;
            f.write_str(".")?;
        }
        write_ident(f, &self.name)
    }
}

/// A function as called in the statement: lowercased (unless quoted), schema-qualified if written so.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FunctionRef {
    /// The schema, normalised, when the call qualified it.
    pub schema: Option<String>,
    /// The function name, normalised.
    pub name: String,
}

impl FunctionRef {
    /// Builds a reference from already-normalised parts.
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    pub(crate) fn from_object_name(name: &ObjectName) -> Self {
        let table = TableRef::from_object_name(name);
        Self {
            schema: table.schema,
            name: table.name,
        }
    }

    /// True when the name resolves to a built-in: unqualified (pg_catalog is searched first) or
    /// explicitly `pg_catalog`.
    pub(crate) fn is_catalog(&self) -> bool {
        self.schema.as_deref().is_none_or(|s| s == "pg_catalog")
    }
}

impl fmt::Display for FunctionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write_ident(f, schema)?;
            f.write_str(".")?;
        }
        write_ident(f, &self.name)
    }
}

/// A column reference, best effort: `qualifier` is whatever preceded the column name (a table, an
/// alias, a CTE or `schema.table`), normalised and joined with dots.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ColumnRef {
    /// The qualifier as written (`u` in `u.email`), normalised, if any.
    pub qualifier: Option<String>,
    /// The column name, normalised.
    pub name: String,
}

impl ColumnRef {
    /// Builds a reference from already-normalised parts.
    pub fn new(qualifier: Option<&str>, name: &str) -> Self {
        Self {
            qualifier: qualifier.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    pub(crate) fn from_idents(idents: &[Ident]) -> Option<Self> {
        let (last, rest) = idents.split_last()?;
        let qualifier = (!rest.is_empty()).then(|| {
            rest.iter()
                .map(normalize_ident)
                .collect::<Vec<_>>()
                .join(".")
        });
        Some(Self {
            qualifier,
            name: normalize_ident(last),
        })
    }
}

impl fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(q) = &self.qualifier {
            write!(f, "{q}.")?;
        }
        write_ident(f, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(value: &str, quoted: bool) -> Ident {
        if quoted {
            Ident::with_quote('"', value)
        } else {
            Ident::new(value)
        }
    }

    #[test]
    fn unquoted_folds_quoted_stays() {
        assert_eq!(normalize_ident(&ident("Users", false)), "users");
        assert_eq!(normalize_ident(&ident("Users", true)), "Users");
    }

    #[test]
    fn display_quotes_only_when_needed() {
        assert_eq!(TableRef::new(Some("app"), "users").to_string(), "app.users");
        assert_eq!(TableRef::new(None, "Users").to_string(), "\"Users\"");
        assert_eq!(TableRef::new(None, "we\"ird").to_string(), "\"we\"\"ird\"");
        assert_eq!(TableRef::new(None, "1t").to_string(), "\"1t\"");
    }

    #[test]
    fn three_part_name_keeps_schema_and_table() {
        let name = ObjectName::from(vec![Ident::new("db"), Ident::new("S"), Ident::new("t")]);
        assert_eq!(
            TableRef::from_object_name(&name),
            TableRef::new(Some("s"), "t")
        );
    }
}
