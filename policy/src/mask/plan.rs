//! The mask plan of one result: built once per `RowDescription`, applied to every value.

use std::ops::Range;

use dbwarden_crds::policy::{Detector, OnUnmaskable};

use super::detect;
use super::strategy::{HashKey, Mask};
use crate::compile::CompiledPolicy;
use crate::identity::Identity;

/// Where a result column comes from, as the sidecar resolved `(table OID, attnum)` through the
/// catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSource<'a> {
    /// Schema of the table.
    pub schema: &'a str,
    /// The table (or view) the column belongs to.
    pub table: &'a str,
    /// The column name.
    pub column: &'a str,
}

/// The wire format of a result column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Text format (format code 0).
    Text,
    /// Binary format (format code 1).
    Binary,
}

/// One `RowDescription` field, as the plan needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultColumn<'a> {
    /// The source column, or `None` for computed columns (expressions, literals, set operations).
    pub source: Option<ColumnSource<'a>>,
    /// The data type's OID.
    pub type_oid: u32,
    /// Text or binary.
    pub format: Format,
}

/// What happens to one column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnAction {
    /// Sent as is.
    Pass,
    /// Every value masked with this strategy.
    Mask(Mask),
    /// Values scanned by the detectors; matched spans replaced.
    Detect,
    /// Values scanned by the detectors; a value with a match cannot be rewritten in its type, so
    /// it is unmaskable (`onUnmaskable`).
    DetectOrRefuse,
    /// Binary `jsonb` (a version byte, then JSON text): the text is scanned like [`Self::Detect`].
    DetectJsonb,
    /// Every value becomes NULL (strategy `null`, or unmaskable with `onUnmaskable: null`).
    Null,
    /// Every non-NULL value fails the statement (unmaskable with `onUnmaskable: deny`).
    Refuse,
}

/// The result of masking one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskOutcome {
    /// Send the original value (nothing was written to the output buffer).
    Pass,
    /// Send the output buffer instead.
    Replaced,
    /// Send SQL NULL.
    Null,
    /// The value cannot be masked and the policy says `onUnmaskable: deny`: fail the statement.
    Refuse,
}

/// Why a plan cannot be built (the statement must fail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskPlanError {
    /// A mask needs the `hash` key and the sidecar did not provide it.
    #[error("policy {policy}: column {column} must be hashed but no hash key is loaded")]
    MissingHashKey {
        /// `namespace/name` of the policy.
        policy: String,
        /// Position of the column in the result.
        column: usize,
    },
}

impl MaskPlanError {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        "missing_hash_key"
    }
}

/// Most detectors one policy may list (`spec.masking.detectors`, max 16 in the schema); compiling
/// refuses more, so none is ever skipped.
pub const MAX_DETECTORS: usize = 16;

/// Values larger than this are not scanned: they are unmaskable (bounded work per row).
pub const MAX_DETECT_BYTES: usize = 1024 * 1024;

/// Types whose text and binary forms are both the UTF-8 text itself and accept any text:
/// `name`, `text`, `bpchar`, `varchar`, `char`, `unknown`. Column masks rewrite them whole.
const TEXT_LIKE: [u32; 6] = [19, 25, 1042, 1043, 18, 705];

/// `json` and `xml`: UTF-8 text in both formats, but `****` is not a valid value, so only
/// detectors (which replace spans inside the text) and `null` apply to them.
const STRUCTURED_TEXT: [u32; 2] = [114, 142];

/// Arrays of text types and `jsonb`: scanned span by span in text format only.
const TEXT_FORMAT_ONLY: [u32; 5] = [1009, 1015, 1014, 199, 3802];

/// `jsonb`, whose binary form is a version byte (1) and the JSON text.
const JSONB: u32 = 3802;

/// `int2`, `int4`, `int8`: binary values are decoded and scanned as decimal text.
const BINARY_INTS: [(u32, usize); 3] = [(21, 2), (23, 4), (20, 8)];

/// How one column is masked, for one result.
#[derive(Debug, Clone)]
pub struct MaskPlan {
    actions: Vec<ColumnAction>,
    types: Vec<(u32, Format)>,
    detectors: Vec<(Detector, Mask)>,
    key: Option<HashKey>,
    unmaskable: ColumnAction,
}

impl CompiledPolicy {
    /// The mask plan for a result with `columns`, for `identity`. Exempt identities and policies
    /// without masking get an all-[`ColumnAction::Pass`] plan.
    pub fn mask_plan(
        &self,
        identity: &Identity,
        columns: &[ResultColumn<'_>],
    ) -> Result<MaskPlan, MaskPlanError> {
        let types = columns.iter().map(|c| (c.type_oid, c.format)).collect();
        let Some(masking) = self.masking.as_ref().filter(|_| self.masks_for(identity)) else {
            return Ok(MaskPlan {
                actions: vec![ColumnAction::Pass; columns.len()],
                types,
                detectors: Vec::new(),
                key: None,
                unmaskable: ColumnAction::Refuse,
            });
        };
        let unmaskable = match masking.on_unmaskable {
            OnUnmaskable::Deny => ColumnAction::Refuse,
            OnUnmaskable::Null => ColumnAction::Null,
        };
        let mut actions = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            let mask = column
                .source
                .and_then(|s| masking.column_mask(s.schema, s.table, s.column));
            let text_like = TEXT_LIKE.contains(&column.type_oid);
            let scannable = text_like
                || STRUCTURED_TEXT.contains(&column.type_oid)
                || (column.format == Format::Text && TEXT_FORMAT_ONLY.contains(&column.type_oid));
            let action = match mask {
                Some(Mask::Null) => ColumnAction::Null,
                Some(Mask::Hash) if self.hash_key.is_none() => {
                    return Err(MaskPlanError::MissingHashKey {
                        policy: self.name.to_string(),
                        column: i,
                    });
                }
                Some(mask) if text_like => ColumnAction::Mask(mask),
                Some(_) => unmaskable,
                None if masking.detectors.is_empty() => ColumnAction::Pass,
                None if scannable => ColumnAction::Detect,
                None if column.type_oid == JSONB => ColumnAction::DetectJsonb,
                None if column.format == Format::Text => ColumnAction::DetectOrRefuse,
                None if BINARY_INTS.iter().any(|(oid, _)| *oid == column.type_oid) => {
                    ColumnAction::DetectOrRefuse
                }
                // Binary values of other types (numeric, dates, uuid, bytea...) carry no text the
                // detectors recognise; docs/masking.md says so.
                None => ColumnAction::Pass,
            };
            actions.push(action);
        }
        if masking.detectors.iter().any(|(_, m)| *m == Mask::Hash)
            && self.hash_key.is_none()
            && let Some(i) = actions.iter().position(|a| *a == ColumnAction::Detect)
        {
            return Err(MaskPlanError::MissingHashKey {
                policy: self.name.to_string(),
                column: i,
            });
        }
        Ok(MaskPlan {
            actions,
            types,
            detectors: masking.detectors.clone(),
            key: self.hash_key.clone(),
            unmaskable,
        })
    }
}

impl MaskPlan {
    /// True when no column is touched: the sidecar may forward rows without looking at them.
    pub fn is_passthrough(&self) -> bool {
        self.actions.iter().all(|a| *a == ColumnAction::Pass)
    }

    /// The action for each column, in order (for audit: which columns were masked and how).
    pub fn actions(&self) -> &[ColumnAction] {
        &self.actions
    }

    /// Masks one non-NULL value of column `column`. `out` is cleared and, on
    /// [`MaskOutcome::Replaced`], holds the value to send. An unknown column is refused.
    pub fn mask_value(&self, column: usize, value: &[u8], out: &mut Vec<u8>) -> MaskOutcome {
        out.clear();
        let Some(action) = self.actions.get(column) else {
            return MaskOutcome::Refuse;
        };
        match *action {
            ColumnAction::Pass => MaskOutcome::Pass,
            ColumnAction::Null => MaskOutcome::Null,
            ColumnAction::Refuse => MaskOutcome::Refuse,
            ColumnAction::Mask(mask) => {
                if mask.apply(value, self.key.as_ref(), out) {
                    MaskOutcome::Replaced
                } else {
                    out.clear();
                    MaskOutcome::Null
                }
            }
            ColumnAction::Detect => self.detect(value, out, true),
            ColumnAction::DetectJsonb => match value.split_first() {
                Some((1, text)) => {
                    let outcome = self.detect(text, out, true);
                    if outcome == MaskOutcome::Replaced {
                        out.insert(0, 1);
                    }
                    outcome
                }
                _ => self.unmaskable(),
            },
            ColumnAction::DetectOrRefuse => {
                let mut digits = [0u8; 20];
                let text = match self.types.get(column) {
                    Some((oid, Format::Binary)) => match binary_int(*oid, value, &mut digits) {
                        Some(text) => text,
                        None => return self.unmaskable(),
                    },
                    _ => value,
                };
                self.detect(text, out, false)
            }
        }
    }

    fn unmaskable(&self) -> MaskOutcome {
        match self.unmaskable {
            ColumnAction::Null => MaskOutcome::Null,
            _ => MaskOutcome::Refuse,
        }
    }

    /// Runs the detectors over `value`; with `rewrite`, matched spans are masked in place of the
    /// originals, otherwise any match makes the value unmaskable.
    fn detect(&self, value: &[u8], out: &mut Vec<u8>, rewrite: bool) -> MaskOutcome {
        if value.len() > MAX_DETECT_BYTES {
            return self.unmaskable();
        }
        let mut next: [Option<Range<usize>>; MAX_DETECTORS] = Default::default();
        for (slot, (kind, _)) in next.iter_mut().zip(&self.detectors) {
            *slot = detect::find(*kind, value, 0);
        }
        let count = self.detectors.len().min(MAX_DETECTORS);
        let mut pos = 0;
        let mut replaced = false;
        loop {
            let mut best: Option<(usize, Range<usize>)> = None;
            for (k, found) in next[..count].iter().enumerate() {
                if let Some(r) = found {
                    let better = best.as_ref().is_none_or(|(_, b)| {
                        r.start < b.start || (r.start == b.start && r.end > b.end)
                    });
                    if better {
                        best = Some((k, r.clone()));
                    }
                }
            }
            let Some((k, span)) = best else { break };
            if !rewrite {
                out.clear();
                return self.unmaskable();
            }
            let mask = self.detectors.get(k).map_or(Mask::Redact, |(_, m)| *m);
            out.extend_from_slice(value.get(pos..span.start).unwrap_or_default());
            let Some(original) = value.get(span.clone()) else {
                out.clear();
                return self.unmaskable();
            };
            if !mask.apply(original, self.key.as_ref(), out) {
                out.clear();
                return MaskOutcome::Null;
            }
            replaced = true;
            pos = span.end;
            for (slot, (kind, _)) in next[..count].iter_mut().zip(&self.detectors) {
                if slot.as_ref().is_some_and(|r| r.start < pos) {
                    *slot = detect::find(*kind, value, pos);
                }
            }
        }
        if replaced {
            out.extend_from_slice(value.get(pos..).unwrap_or_default());
            MaskOutcome::Replaced
        } else {
            MaskOutcome::Pass
        }
    }
}

/// Decodes a binary `int2`/`int4`/`int8` into decimal digits in `buf`.
fn binary_int<'b>(oid: u32, value: &[u8], buf: &'b mut [u8; 20]) -> Option<&'b [u8]> {
    let width = BINARY_INTS.iter().find(|(o, _)| *o == oid)?.1;
    if value.len() != width {
        return None;
    }
    let mut be = [0u8; 8];
    be[8 - width..].copy_from_slice(value);
    let negative = value.first().is_some_and(|b| b & 0x80 != 0);
    if negative {
        for b in &mut be[..8 - width] {
            *b = 0xff;
        }
    }
    let n = i64::from_be_bytes(be);
    let mut magnitude = n.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    buf.get(i..)
}

#[cfg(test)]
mod tests;
