//! Masking result values: strategies, value detectors, the per-result [`MaskPlan`], and the check
//! that refuses statements using masked columns in ways a mask cannot cover
//! ([`check_masked_column_use`]). See `docs/masking.md` for the behaviour users rely on.

pub mod detect;
mod plan;
mod strategy;
mod usage;

pub use plan::{
    ColumnAction, ColumnSource, Format, MAX_DETECT_BYTES, MAX_DETECTORS, MaskOutcome, MaskPlan,
    MaskPlanError, ResultColumn,
};
pub use strategy::{HashEncoding, HashKey, Mask, REDACTED};
pub use usage::{MaskedColumnUse, check_masked_column_use};
pub(crate) use usage::{MaskedUseMemo, check_indexed};

use dbwarden_crds::policy::{Detector, Masking, OnUnmaskable, PartialMask, Strategy};

use crate::compile::glob::ColumnGlob;
use crate::compile::{CompileError, CompiledPolicy};
use crate::identity::{Identity, SubjectSet};

/// One `masking.columns` entry, compiled.
#[derive(Debug, Clone)]
pub(crate) struct ColumnRule {
    pub(crate) globs: Vec<ColumnGlob>,
    pub(crate) mask: Mask,
}

/// `spec.masking`, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledMasking {
    pub(crate) columns: Vec<ColumnRule>,
    pub(crate) detectors: Vec<(Detector, Mask)>,
    pub(crate) exempt: Option<SubjectSet>,
    pub(crate) on_unmaskable: OnUnmaskable,
}

fn mask_of(strategy: Strategy, partial: Option<&PartialMask>) -> Mask {
    match strategy {
        Strategy::Redact => Mask::Redact,
        Strategy::Hash => Mask::Hash,
        Strategy::Null => Mask::Null,
        Strategy::Email => Mask::Email,
        Strategy::Partial => {
            let (first, last) = partial.map_or((0, 4), |p| (p.keep_first, p.keep_last));
            Mask::Partial {
                keep_first: usize::try_from(first).unwrap_or(0),
                keep_last: usize::try_from(last).unwrap_or(0),
            }
        }
    }
}

impl CompiledMasking {
    pub(crate) fn compile(
        policy: &str,
        namespace: &str,
        masking: &Masking,
    ) -> Result<Self, CompileError> {
        let mut columns = Vec::with_capacity(masking.columns.len());
        for (i, entry) in masking.columns.iter().enumerate() {
            let globs = entry
                .columns
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    ColumnGlob::parse(p).map_err(|source| CompileError::Pattern {
                        policy: policy.to_owned(),
                        path: format!("spec.masking.columns[{i}].columns[{j}]"),
                        pattern: p.clone(),
                        source,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            columns.push(ColumnRule {
                globs,
                mask: mask_of(entry.strategy, entry.partial.as_ref()),
            });
        }
        if masking.detectors.len() > plan::MAX_DETECTORS {
            return Err(CompileError::TooMany {
                policy: policy.to_owned(),
                path: "spec.masking.detectors".into(),
                max: plan::MAX_DETECTORS,
            });
        }
        Ok(Self {
            columns,
            detectors: masking
                .detectors
                .iter()
                .map(|d| (d.kind, mask_of(d.strategy, d.partial.as_ref())))
                .collect(),
            exempt: masking
                .exempt_subjects
                .as_ref()
                .map(|s| SubjectSet::new(s, namespace)),
            on_unmaskable: masking.on_unmaskable,
        })
    }

    pub(crate) fn is_active(&self) -> bool {
        !self.columns.is_empty() || !self.detectors.is_empty()
    }

    /// The mask of the first column entry matching `schema.table.column`.
    pub(crate) fn column_mask(&self, schema: &str, table: &str, column: &str) -> Option<Mask> {
        self.columns
            .iter()
            .find(|rule| rule.globs.iter().any(|g| g.matches(schema, table, column)))
            .map(|rule| rule.mask)
    }

    fn uses_hash(&self) -> bool {
        self.columns.iter().any(|c| c.mask == Mask::Hash)
            || self.detectors.iter().any(|(_, m)| *m == Mask::Hash)
    }
}

impl CompiledPolicy {
    /// True when results for `identity` must be masked (the policy masks something and the
    /// identity is not in `exemptSubjects`).
    pub fn masks_for(&self, identity: &Identity) -> bool {
        self.masking.as_ref().is_some_and(|m| {
            m.is_active() && !m.exempt.as_ref().is_some_and(|e| e.matches(identity))
        })
    }

    /// True when column masks apply to `identity`, so its statements must be analysed: only an
    /// analysis shows whether a masked column is used where masking cannot follow it.
    pub fn masks_columns_for(&self, identity: &Identity) -> bool {
        self.masks_for(identity) && self.masking.as_ref().is_some_and(|m| !m.columns.is_empty())
    }

    /// True when the policy uses the `hash` strategy, so the sidecar must load the key.
    pub fn needs_hash_key(&self) -> bool {
        self.masking
            .as_ref()
            .is_some_and(CompiledMasking::uses_hash)
    }
}
