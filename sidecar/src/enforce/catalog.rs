//! Column sources: `(table OID, attribute number)` from a RowDescription, resolved to
//! `schema.table.column` through the upstream catalog.
//!
//! One catalog connection per listener, opened with the listener's own upstream target
//! (credentials, TLS) and shared by its sessions; reconnected after any failure. Lookups are
//! cached per relation for [`CATALOG_TTL`], and the whole cache is dropped whenever a session
//! lets DDL through ([`Catalog::invalidate`]), so a column renamed elsewhere is seen under its
//! new name within the TTL, and one renamed through this sidecar at once. Any failure is an
//! error: the caller refuses the result rather than guess.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;

use crate::backend::{BackendError, UpstreamTarget};
use crate::net::{Stream, fill};
use crate::protocol::ProtocolError;
use crate::protocol::backend::{DataRow, ErrorFields};
use crate::protocol::codec::{peek_header, put_cstr, put_message};

/// How long a resolved relation is trusted without asking the catalog again.
pub const CATALOG_TTL: Duration = Duration::from_secs(1);
/// Most relations cached per listener (the cache is emptied when full).
const MAX_CACHED: usize = 4096;
/// Largest catalog answer message accepted.
const MAX_MESSAGE: usize = 1024 * 1024;
/// Most OIDs asked for in one query (a RowDescription has at most 1664 columns).
pub const MAX_OIDS: usize = 2048;

/// Why the catalog could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Connecting to the database failed.
    #[error("connecting for catalog look-ups")]
    Connect(#[from] BackendError),
    /// The connection failed.
    #[error("catalog connection i/o")]
    Io(#[source] std::io::Error),
    /// The database closed the connection.
    #[error("the database closed the catalog connection")]
    Closed,
    /// The database broke the protocol.
    #[error("catalog connection protocol violation")]
    Protocol(#[source] ProtocolError),
    /// The catalog query failed.
    #[error("catalog query failed: {0}")]
    Query(String),
    /// The answer did not have the expected shape.
    #[error("unexpected catalog answer: {0}")]
    Malformed(&'static str),
    /// The look-up took too long.
    #[error("catalog look-up timed out after {0:?}")]
    Timeout(Duration),
}

/// One relation as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// `pg_class.relkind`: `r` table, `p` partitioned, `v` view, `m` materialised view,
    /// `f` foreign table, ...
    pub kind: u8,
    /// Schema name.
    pub schema: String,
    /// Relation name.
    pub name: String,
    /// `(attnum, attname)` of its live columns, sorted by attnum.
    columns: Vec<(i16, String)>,
}

impl Relation {
    /// The name of column `attnum`, if it exists.
    pub fn column(&self, attnum: i16) -> Option<&str> {
        self.columns
            .binary_search_by_key(&attnum, |(n, _)| *n)
            .ok()
            .and_then(|i| self.columns.get(i))
            .map(|(_, name)| name.as_str())
    }
}

/// Relations by OID.
pub type Relations = HashMap<u32, Arc<Relation>>;

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<u32, (Instant, Arc<Relation>)>,
}

/// The catalog of one listener's database.
#[derive(Debug)]
pub struct Catalog {
    target: Arc<UpstreamTarget>,
    conn: tokio::sync::Mutex<Option<Conn>>,
    cache: Mutex<Cache>,
    /// Bumped by [`Self::invalidate`]: a look-up that started before does not fill the cache.
    generation: AtomicU64,
}

impl Catalog {
    /// A catalog reached through `target` (connected on first use).
    pub fn new(target: Arc<UpstreamTarget>) -> Self {
        Self {
            target,
            conn: tokio::sync::Mutex::new(None),
            cache: Mutex::new(Cache::default()),
            generation: AtomicU64::new(0),
        }
    }

    /// Forgets everything cached (DDL may have changed any relation).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.lock().entries.clear();
    }

    /// Changes whenever the cache is invalidated (what was derived from it is stale).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cached relation `oid`, if fresh.
    pub fn cached(&self, oid: u32) -> Option<Arc<Relation>> {
        let cache = self.lock();
        let (at, relation) = cache.entries.get(&oid)?;
        (at.elapsed() < CATALOG_TTL).then(|| Arc::clone(relation))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the catalog for `oids` (and caches the answer). Relations that no longer exist are
    /// absent from the result. One retry on a fresh connection after a failure.
    pub async fn fetch(&self, oids: &[u32]) -> Result<Relations, CatalogError> {
        let budget = self.target.connect_timeout.saturating_mul(2);
        let generation = self.generation.load(Ordering::Acquire);
        let sql = relations_query(oids);
        let found = tokio::time::timeout(budget, async {
            match self.query(&sql).await {
                Ok(found) => Ok(found),
                Err(error) => {
                    tracing::warn!(error = %error, "catalog look-up failed; reconnecting once");
                    self.query(&sql).await
                }
            }
        })
        .await
        .map_err(|_| CatalogError::Timeout(budget))??;
        if self.generation.load(Ordering::Acquire) == generation {
            let now = Instant::now();
            let mut cache = self.lock();
            if cache.entries.len() + found.len() > MAX_CACHED {
                cache.entries.clear();
            }
            for (oid, relation) in &found {
                cache.entries.insert(*oid, (now, Arc::clone(relation)));
            }
        }
        Ok(found)
    }

    /// Runs the catalog query on the shared connection. The connection is taken out while in
    /// use, so a look-up cancelled half-way drops it instead of leaving it mid-answer.
    async fn query(&self, sql: &str) -> Result<Relations, CatalogError> {
        let mut slot = self.conn.lock().await;
        let mut conn = match slot.take() {
            Some(conn) => conn,
            None => Conn::open(&self.target).await?,
        };
        let rows = conn.simple_query(sql).await?;
        *slot = Some(conn);
        parse_relations(&rows)
    }
}

/// The query for `oids`: OIDs are formatted as integers, never interpolated text.
fn relations_query(oids: &[u32]) -> String {
    let mut sql = String::from(
        "SELECT c.oid, c.relkind, n.nspname, c.relname, a.attnum, a.attname \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_catalog.pg_attribute a \
         ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         WHERE c.oid IN (",
    );
    for (i, oid) in oids.iter().take(MAX_OIDS).enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let _ = write!(sql, "{oid}");
    }
    if oids.is_empty() {
        sql.push('0');
    }
    sql.push(')');
    sql
}

/// Text values of one answer row.
type Row = Vec<Option<String>>;

fn parse_relations(rows: &[Row]) -> Result<Relations, CatalogError> {
    let mut building: HashMap<u32, Relation> = HashMap::new();
    for row in rows {
        let [oid, kind, schema, name, attnum, attname] = row.as_slice() else {
            return Err(CatalogError::Malformed("column count"));
        };
        let oid: u32 = text(oid)?
            .parse()
            .map_err(|_| CatalogError::Malformed("oid"))?;
        let relation = building.entry(oid).or_insert_with(|| Relation {
            kind: 0,
            schema: String::new(),
            name: String::new(),
            columns: Vec::new(),
        });
        relation.kind = *text(kind)?
            .as_bytes()
            .first()
            .ok_or(CatalogError::Malformed("relkind"))?;
        text(schema)?.clone_into(&mut relation.schema);
        text(name)?.clone_into(&mut relation.name);
        if let (Some(attnum), Some(attname)) = (attnum, attname) {
            let attnum = attnum
                .parse()
                .map_err(|_| CatalogError::Malformed("attnum"))?;
            relation.columns.push((attnum, attname.clone()));
        }
    }
    Ok(building
        .into_iter()
        .map(|(oid, mut relation)| {
            relation.columns.sort_unstable_by_key(|(n, _)| *n);
            (oid, Arc::new(relation))
        })
        .collect())
}

fn text(value: &Option<String>) -> Result<&str, CatalogError> {
    value
        .as_deref()
        .ok_or(CatalogError::Malformed("unexpected NULL"))
}

/// A tiny simple-query client over the sidecar's own protocol codec.
#[derive(Debug)]
struct Conn {
    stream: Stream,
    buf: BytesMut,
}

impl Conn {
    async fn open(target: &UpstreamTarget) -> Result<Self, CatalogError> {
        let params = [(
            "application_name".to_owned(),
            "dbwarden-sidecar catalog".to_owned(),
        )];
        let upstream = target.connect(&params).await?;
        tracing::debug!(database = %target.database, "catalog connection opened");
        Ok(Self {
            stream: upstream.stream,
            buf: upstream.buf,
        })
    }

    /// Sends one Query and collects its rows as text until ReadyForQuery.
    async fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>, CatalogError> {
        let mut out = BytesMut::new();
        put_message(&mut out, b'Q', |b| put_cstr(b, sql.as_bytes()));
        self.stream
            .write_all(&out)
            .await
            .map_err(CatalogError::Io)?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            let Some((tag, len)) =
                peek_header(&self.buf, MAX_MESSAGE).map_err(CatalogError::Protocol)?
            else {
                self.more().await?;
                continue;
            };
            if self.buf.len() < len {
                self.more().await?;
                continue;
            }
            let body = self.buf.get(5..len).unwrap_or_default();
            match tag {
                b'D' => {
                    let row = DataRow::decode(body).map_err(CatalogError::Protocol)?;
                    rows.push(
                        row.values()
                            .map(|v| v.map(|v| String::from_utf8_lossy(v).into_owned()))
                            .collect(),
                    );
                }
                b'E' => {
                    let fields = ErrorFields::decode(tag, body).map_err(CatalogError::Protocol)?;
                    failed = Some(fields.field(b'M').unwrap_or("?").to_owned());
                }
                b'Z' => {
                    self.buf.advance(len);
                    return match failed {
                        Some(message) => Err(CatalogError::Query(message)),
                        None => Ok(rows),
                    };
                }
                // RowDescription, CommandComplete, notices, parameter status.
                _ => {}
            }
            self.buf.advance(len);
        }
    }

    async fn more(&mut self) -> Result<(), CatalogError> {
        match fill(&mut self.stream, &mut self.buf).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(CatalogError::Closed),
            Err(e) => Err(CatalogError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_query_formats_oids_as_integers() {
        let sql = relations_query(&[16384, 7]);
        assert!(sql.ends_with("WHERE c.oid IN (16384,7)"), "{sql}");
        assert!(relations_query(&[]).ends_with("IN (0)"));
    }

    #[test]
    fn answers_become_relations_with_sorted_columns() {
        let row = |oid: &str, att: Option<(&str, &str)>| -> Row {
            vec![
                Some(oid.into()),
                Some("r".into()),
                Some("public".into()),
                Some("users".into()),
                att.map(|a| a.0.into()),
                att.map(|a| a.1.into()),
            ]
        };
        let found = parse_relations(&[
            row("10", Some(("2", "email"))),
            row("10", Some(("1", "id"))),
            row("11", None),
        ])
        .unwrap();
        let users = &found[&10];
        assert_eq!((users.kind, users.schema.as_str()), (b'r', "public"));
        assert_eq!(users.column(1), Some("id"));
        assert_eq!(users.column(2), Some("email"));
        assert_eq!(users.column(3), None);
        assert_eq!(found[&11].column(1), None);
        assert!(parse_relations(&[vec![Some("x".into())]]).is_err());
        assert!(parse_relations(&[row("nope", None)]).is_err());
    }
}
