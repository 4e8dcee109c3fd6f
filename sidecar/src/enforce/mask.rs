//! The per-session [`RowHook`]: masks result values and enforces `guardrails.maxRows`.
//!
//! Per result description every applicable policy whose masks apply to the session's identity
//! builds a [`MaskPlan`] from the resolved column sources (kept while the same description comes
//! back, see [`Memo`]); the plans are applied to each value in turn (each only ever hides more of what the previous one left, so the combination
//! is at least as strict as any single policy; an exemption in one policy does not lift
//! another's masks). Rows of a result no plan touches are forwarded without being looked at.
//!
//! Fail closed: a column whose source cannot be resolved (catalog down, relation gone, unknown
//! relation kind), a plan that cannot be built (no hash key) or an unmaskable value refuses the
//! result.

use std::collections::{BTreeMap, HashMap};
use std::mem;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use dbwarden_crds::policy::OnMaxRows;
use dbwarden_policy::Identity;
use dbwarden_policy::mask::{ColumnSource, Format, MaskOutcome, MaskPlan, ResultColumn};

use super::catalog::{CATALOG_TTL, Catalog, MAX_OIDS, Relation, Relations};
use super::hooks::Inner;
use super::load::PolicySet;
use crate::audit::SessionAudit;
use crate::hook::{Completion, Denial, Pending, RowAction, RowHook};
use crate::protocol::backend::{DataRow, RowDescription};
use crate::protocol::codec::{put_cstr, put_message};

/// A resolved column: its relation and attribute number.
type Source = (Arc<Relation>, i16);

/// The strictest `maxRows` of the applicable policies.
#[derive(Debug, Clone)]
struct Limit {
    rows: u64,
    on_exceed: OnMaxRows,
    policy: String,
}

/// What one result description comes to under the policies in force.
#[derive(Debug)]
struct Shape {
    columns: usize,
    /// The plans that change something, in policy order.
    plans: Vec<MaskPlan>,
    limit: Option<Limit>,
    /// What audit events call each column (`schema.table.column`, or the result column's name
    /// when it has no source); empty when no plan masks anything.
    names: Vec<Arc<str>>,
}

/// The last description's [`Shape`], reused while the same description comes back (a statement
/// executed again), the same policy set is in force, the catalog was not invalidated (DDL), and
/// the relations it was resolved from would still be fresh in the catalog's cache.
#[derive(Debug)]
struct Memo {
    count: usize,
    encoded: Vec<u8>,
    set: Arc<PolicySet>,
    generation: u64,
    built: Instant,
    shape: Arc<Shape>,
}

impl Memo {
    fn fits(
        &self,
        description: &RowDescription<'_>,
        set: &Arc<PolicySet>,
        generation: u64,
    ) -> bool {
        self.count == description.len()
            && self.encoded == description.encoded()
            && Arc::ptr_eq(&self.set, set)
            && self.generation == generation
            && self.built.elapsed() < CATALOG_TTL
    }
}

/// What the hook knows about the result being sent.
#[derive(Debug, Default)]
struct Current {
    /// The accepted description's shape (rows without one are refused).
    shape: Option<Arc<Shape>>,
    rows: u64,
    truncated: bool,
    /// The portal whose Execute this result answers (extended protocol).
    portal: Option<u64>,
    /// Values masked in this result, counted into `dbwarden_masked_values_total` when the
    /// result ends (one metric update per result, not per value).
    masked: u64,
}

/// Most portals whose row counts are kept for a possible resume (the oldest are forgotten:
/// a client interleaving more suspended portals than this may fetch past maxRows).
const MAX_PORTALS: usize = 64;

/// One session's row hook.
pub(super) struct SessionMasker {
    inner: Arc<Inner>,
    database: String,
    identity: Identity,
    catalog: Option<Arc<Catalog>>,
    /// The relations of the RowDescription at hand: cache hits pinned by `resolve` and what
    /// its [`Pending`] look-up fetched (used even if the cache expires or is invalidated in
    /// between); emptied by `row_description`.
    fetched: Arc<Mutex<Relations>>,
    current: Current,
    /// Row counts of portals that may resume: `(rows, truncated)`.
    portals: BTreeMap<u64, (u64, bool)>,
    /// Reused buffers: the masked value so far, and the next plan's output.
    value: Vec<u8>,
    spare: Vec<u8>,
    /// What masking changed since the last followed statement ended, for its
    /// `statement.result` event: values masked, and the columns they were in.
    run_masked: u64,
    run_columns: Vec<Arc<str>>,
    /// The session's audit, which records each followed statement's result.
    audit: SessionAudit,
    /// The audit records results, so masked values are counted per statement too.
    follows: bool,
    memo: Option<Memo>,
    /// `resolve` found the memo fits the description at hand (so `describe` uses it even if
    /// its TTL ran out in between).
    memo_resolved: bool,
}

impl Drop for SessionMasker {
    fn drop(&mut self) {
        self.count_masked();
    }
}

impl SessionMasker {
    pub(super) fn new(
        inner: Arc<Inner>,
        database: String,
        identity: Identity,
        catalog: Option<Arc<Catalog>>,
        audit: SessionAudit,
    ) -> Self {
        Self {
            inner,
            database,
            identity,
            catalog,
            fetched: Arc::new(Mutex::new(HashMap::new())),
            current: Current::default(),
            portals: BTreeMap::new(),
            value: Vec::new(),
            spare: Vec::new(),
            run_masked: 0,
            run_columns: Vec::new(),
            follows: audit.records(),
            audit,
            memo: None,
            memo_resolved: false,
        }
    }

    /// The catalog's generation (0 without a catalog).
    fn generation(&self) -> u64 {
        self.catalog.as_ref().map_or(0, |c| c.generation())
    }

    /// True when some applicable policy masks this identity's results.
    fn masks(&self) -> bool {
        let set = self.inner.policies.load();
        set.for_database(&self.database)
            .iter()
            .any(|p| p.masks_for(&self.identity))
    }

    fn relation(&self, oid: u32) -> Option<Arc<Relation>> {
        let fetched = self.fetched.lock().unwrap_or_else(PoisonError::into_inner);
        fetched
            .get(&oid)
            .cloned()
            .or_else(|| self.catalog.as_ref().and_then(|c| c.cached(oid)))
    }

    /// The relations behind `description`'s columns, or a denial naming what is missing.
    fn sources(&self, description: &RowDescription<'_>) -> Result<Vec<Option<Source>>, Denial> {
        let mut out = Vec::with_capacity(description.len());
        for field in description.fields() {
            if field.table_oid == 0 || field.column <= 0 {
                // Computed (or a system column such as ctid): detectors only.
                out.push(None);
                continue;
            }
            let Some(relation) = self.relation(field.table_oid) else {
                return Err(unresolved("a relation could not be found in the catalog"));
            };
            if !matches!(relation.kind, b'r' | b'p' | b'v' | b'm' | b'f') {
                return Err(unresolved(
                    "a column comes from an unsupported kind of relation",
                ));
            }
            if relation.column(field.column).is_none() {
                return Err(unresolved("a column could not be found in the catalog"));
            }
            out.push(Some((relation, field.column)));
        }
        Ok(out)
    }

    /// Masks value `v` of column `i` through every plan; `Ok(None)` is SQL NULL, `Ok(Some(true))`
    /// means the masked value is in `self.value`.
    fn mask(&mut self, i: usize, v: &[u8]) -> Result<Option<bool>, ()> {
        let mut masked = false;
        let plans = self.current.shape.as_ref().map_or(&[][..], |s| &s.plans);
        for plan in plans {
            let input: &[u8] = if masked { &self.value } else { v };
            match plan.mask_value(i, input, &mut self.spare) {
                MaskOutcome::Pass => {}
                MaskOutcome::Replaced => {
                    mem::swap(&mut self.value, &mut self.spare);
                    masked = true;
                }
                MaskOutcome::Null => return Ok(None),
                MaskOutcome::Refuse => return Err(()),
            }
        }
        Ok(Some(masked))
    }

    /// Writes the masked row into `out`; `Ok(false)` when nothing changed.
    fn mask_row(&mut self, row: &DataRow<'_>, out: &mut BytesMut) -> Result<bool, ()> {
        let mut changed = false;
        out.put_u8(b'D');
        let at = out.len();
        out.put_i32(0);
        out.put_u16(u16::try_from(row.len()).map_err(|_| ())?);
        for (i, value) in row.values().enumerate() {
            let Some(v) = value else {
                out.put_i32(-1);
                continue;
            };
            let written: &[u8] = match self.mask(i, v)? {
                None => {
                    changed = true;
                    self.note_masked(i);
                    out.put_i32(-1);
                    continue;
                }
                Some(true) => {
                    changed = true;
                    self.note_masked(i);
                    &self.value
                }
                Some(false) => v,
            };
            out.put_i32(i32::try_from(written.len()).map_err(|_| ())?);
            out.put_slice(written);
        }
        let len = i32::try_from(out.len() - at).map_err(|_| ())?;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(changed)
    }

    /// Counts a masked value of column `i`, for the metrics and (when the session is audited)
    /// the result's audit event.
    fn note_masked(&mut self, i: usize) {
        self.current.masked += 1;
        if !self.follows {
            return;
        }
        self.run_masked += 1;
        let name = self.current.shape.as_ref().and_then(|s| s.names.get(i));
        if let Some(name) = name
            && !self.run_columns.iter().any(|n| n == name)
        {
            self.run_columns.push(Arc::clone(name));
        }
    }

    /// Starts a new result: its shape from the memo, or built and remembered.
    fn describe(&mut self, description: &RowDescription<'_>) -> Result<(), Denial> {
        self.count_masked();
        if let Some(portal) = self.current.portal {
            // Keep the count of the portal that may resume; forget the oldest past the bound.
            if self.portals.len() >= MAX_PORTALS {
                self.portals.pop_first();
            }
            self.portals
                .insert(portal, (self.current.rows, self.current.truncated));
        }
        self.current = Current::default();
        let set = self.inner.policies.load_full();
        let generation = self.generation();
        let resolved = mem::take(&mut self.memo_resolved);
        let shape = match &self.memo {
            Some(memo) if resolved || memo.fits(description, &set, generation) => {
                Arc::clone(&memo.shape)
            }
            _ => {
                let shape = Arc::new(self.shape(description, &set)?);
                self.memo = Some(Memo {
                    count: description.len(),
                    encoded: description.encoded().to_vec(),
                    set,
                    generation,
                    built: Instant::now(),
                    shape: Arc::clone(&shape),
                });
                shape
            }
        };
        self.current.shape = Some(shape);
        Ok(())
    }

    /// The limits of a result described by `description`, and the plans of the policies that mask.
    fn shape(&self, description: &RowDescription<'_>, set: &PolicySet) -> Result<Shape, Denial> {
        let policies = set.for_database(&self.database);
        if policies.is_empty() {
            return Err(Denial::new(format!(
                "no dbwarden policy governs database {:?}: every result is refused",
                self.database
            )));
        }
        let limit = policies
            .iter()
            .filter_map(|p| {
                p.max_rows().map(|m| Limit {
                    rows: m.limit,
                    on_exceed: m.on_exceed,
                    policy: p.name().to_owned(),
                })
            })
            .min_by_key(|l| (l.rows, l.on_exceed != OnMaxRows::Error));
        let mut plans = Vec::new();
        let mut names = Vec::new();
        if policies.iter().any(|p| p.masks_for(&self.identity)) {
            let sources = self.sources(description)?;
            let mut columns = Vec::with_capacity(sources.len());
            for (field, source) in description.fields().zip(&sources) {
                let format = match field.format {
                    0 => Format::Text,
                    1 => Format::Binary,
                    _ => return Err(unresolved("a column has an unknown format code")),
                };
                columns.push(ResultColumn {
                    source: source.as_ref().and_then(|(relation, attnum)| {
                        Some(ColumnSource {
                            schema: &relation.schema,
                            table: &relation.name,
                            column: relation.column(*attnum)?,
                        })
                    }),
                    type_oid: field.type_oid,
                    format,
                });
                names.push(match columns.last().and_then(|c| c.source.as_ref()) {
                    Some(c) => Arc::from(format!("{}.{}.{}", c.schema, c.table, c.column)),
                    None => Arc::from(String::from_utf8_lossy(field.name).as_ref()),
                });
            }
            for policy in policies {
                let plan = policy.mask_plan(&self.identity, &columns).map_err(|e| {
                    tracing::warn!(
                        policy = policy.name(),
                        cause = e.label(),
                        "no mask plan: result refused"
                    );
                    Denial::new(format!("dbwarden: {e}; the result is refused"))
                })?;
                if !plan.is_passthrough() {
                    plans.push(plan);
                }
            }
        }
        if plans.is_empty() {
            names.clear();
        }
        Ok(Shape {
            columns: description.len(),
            plans,
            limit,
            names,
        })
    }

    /// Adds this result's masked values to the metrics.
    fn count_masked(&mut self) {
        let masked = mem::take(&mut self.current.masked);
        if masked > 0
            && let Some(metrics) = self.inner.metrics.get()
        {
            metrics.masked_values(masked);
        }
    }

    fn past_limit(&mut self, limit: &Limit, out: &mut BytesMut) -> RowAction {
        match limit.on_exceed {
            OnMaxRows::Error => {
                tracing::info!(policy = %limit.policy, limit = limit.rows, "result refused: guardrails.maxRows");
                RowAction::Deny(Denial::new(format!(
                    "policy {} refuses the result: guardrail guardrails.maxRows: more than {} rows",
                    limit.policy, limit.rows
                )))
            }
            OnMaxRows::Truncate if self.current.truncated => RowAction::Skip,
            OnMaxRows::Truncate => {
                // The first dropped row becomes a notice, so the client can tell.
                self.current.truncated = true;
                tracing::info!(policy = %limit.policy, limit = limit.rows, "result truncated: guardrails.maxRows");
                put_notice(
                    out,
                    &format!(
                        "dbwarden: policy {} truncated the result at {} rows (guardrails.maxRows); the command tag counts the rows the database returned",
                        limit.policy, limit.rows
                    ),
                );
                RowAction::Replace
            }
        }
    }
}

fn unresolved(why: &str) -> Denial {
    Denial {
        message: format!(
            "dbwarden: the result cannot be masked: {why}; it is refused rather than sent unmasked"
        ),
        detail: None,
    }
}

fn put_notice(out: &mut BytesMut, message: &str) {
    put_message(out, b'N', |b| {
        for (field, value) in [
            (b'S', "NOTICE"),
            (b'V', "NOTICE"),
            (b'C', "01000"),
            (b'M', message),
        ] {
            b.put_u8(field);
            put_cstr(b, value.as_bytes());
        }
        b.put_u8(0);
    });
}

impl RowHook for SessionMasker {
    fn resolve(&mut self, description: &RowDescription<'_>) -> Option<Pending> {
        let catalog = self.catalog.as_ref()?;
        self.memo_resolved = self.memo.as_ref().is_some_and(|m| {
            m.fits(
                description,
                &self.inner.policies.load(),
                catalog.generation(),
            )
        });
        if self.memo_resolved || !self.masks() {
            return None;
        }
        let catalog = Arc::clone(catalog);
        let mut missing: Vec<u32> = Vec::new();
        {
            // Cache hits are pinned for this description, so an entry expiring between here and
            // `row_description` cannot refuse the result.
            let mut pinned = self.fetched.lock().unwrap_or_else(PoisonError::into_inner);
            for field in description.fields() {
                let oid = field.table_oid;
                if oid == 0 || field.column <= 0 || missing.contains(&oid) {
                    continue;
                }
                if pinned
                    .get(&oid)
                    .is_some_and(|r| r.column(field.column).is_some())
                {
                    continue;
                }
                match catalog.cached(oid) {
                    Some(r) if r.column(field.column).is_some() => {
                        pinned.insert(oid, r);
                    }
                    _ if missing.len() < MAX_OIDS => missing.push(oid),
                    _ => {}
                }
            }
        }
        if missing.is_empty() {
            return None;
        }
        let fetched = Arc::clone(&self.fetched);
        Some(Box::pin(async move {
            match catalog.fetch(&missing).await {
                Ok(found) => {
                    fetched
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend(found);
                    Ok(())
                }
                Err(error) => {
                    tracing::warn!(error = %error, "catalog unavailable: result refused");
                    Err(unresolved("the database catalog is unavailable"))
                }
            }
        }))
    }

    fn row_description(&mut self, description: &RowDescription<'_>) -> Result<(), Denial> {
        let described = self.describe(description);
        // What the last look-up fetched served this description only, whatever the outcome.
        self.fetched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        described
    }

    fn portal_description(
        &mut self,
        description: &RowDescription<'_>,
        portal: u64,
        resumed: bool,
    ) -> Result<(), Denial> {
        // Row counts are per portal: one fetched in chunks counts on towards maxRows, even when
        // other results came in between.
        self.row_description(description)?;
        if let Some((rows, truncated)) = self.portals.remove(&portal)
            && resumed
        {
            self.current.rows = rows;
            self.current.truncated = truncated;
        }
        self.current.portal = Some(portal);
        Ok(())
    }

    fn completed(&mut self, run: Option<u64>, completion: &Completion<'_>) {
        let masked = mem::take(&mut self.run_masked);
        if let Some(run) = run {
            self.audit
                .result(run, completion, masked, &self.run_columns);
        }
        self.run_columns.clear();
    }

    fn data_row(&mut self, row: &DataRow<'_>, out: &mut BytesMut) -> RowAction {
        let Some(shape) = &self.current.shape else {
            return RowAction::Deny(unresolved("rows arrived without a description"));
        };
        self.current.rows += 1;
        if let Some(limit) = &shape.limit
            && self.current.rows > limit.rows
        {
            let limit = limit.clone();
            return self.past_limit(&limit, out);
        }
        if shape.plans.is_empty() {
            return RowAction::Forward;
        }
        if row.len() != shape.columns {
            return RowAction::Deny(unresolved("a row does not match its description"));
        }
        match self.mask_row(row, out) {
            Ok(true) => RowAction::Replace,
            Ok(false) => {
                out.clear();
                RowAction::Forward
            }
            Err(()) => {
                out.clear();
                tracing::info!(database = %self.database, "unmaskable value: result refused");
                RowAction::Deny(Denial::new(
                    "dbwarden: a value in this result cannot be masked (masking.onUnmaskable: deny); the result is refused",
                ))
            }
        }
    }
}
