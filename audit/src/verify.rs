//! Verification of an NDJSON export: per instance, edits, broken links, gaps (deletions),
//! reordering and conflicting duplicates, each with line numbers. Identical duplicates (from
//! at-least-once delivery) are tolerated and counted.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry as MapEntry;
use std::fmt;
use std::io::BufRead;

use crate::chain::{self, ZERO_HASH};

/// Errors reading the export itself.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The export could not be read.
    #[error("reading line {line}: {source}")]
    Read {
        /// 1-based line number.
        line: usize,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One problem found, with the line numbers (1-based) to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The line is not a v1 audit event.
    Unparseable {
        /// Line number.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The event's content does not match its own `hash`: it was edited.
    Edited {
        /// Line number.
        line: usize,
        /// Instance.
        instance: String,
        /// Seq.
        seq: u64,
    },
    /// The event's `prev_hash` is not the hash of the event before it: the previous event was
    /// edited (with its hash recomputed) or events were deleted and the rest renumbered.
    BrokenLink {
        /// Line number.
        line: usize,
        /// Instance.
        instance: String,
        /// Seq.
        seq: u64,
    },
    /// Seqs missing between two events: deleted, or never delivered.
    Gap {
        /// Instance.
        instance: String,
        /// First missing seq.
        from: u64,
        /// Last missing seq.
        to: u64,
        /// Line of the event before the gap.
        after_line: usize,
        /// Line of the event after the gap.
        before_line: usize,
    },
    /// An event appears after one with a higher seq.
    Reordered {
        /// Line number.
        line: usize,
        /// Instance.
        instance: String,
        /// Seq of this event.
        seq: u64,
        /// Highest seq seen before it.
        after_seq: u64,
        /// Line of that event.
        after_line: usize,
    },
    /// Two different events claim the same seq.
    Conflict {
        /// Instance.
        instance: String,
        /// Seq.
        seq: u64,
        /// Line of the first.
        first_line: usize,
        /// Line of the second.
        line: usize,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unparseable { line, reason } => write!(f, "line {line}: unreadable: {reason}"),
            Problem::Edited {
                line,
                instance,
                seq,
            } => {
                write!(
                    f,
                    "line {line}: {instance} seq {seq}: edited (content does not match its hash)"
                )
            }
            Problem::BrokenLink {
                line,
                instance,
                seq,
            } => write!(
                f,
                "line {line}: {instance} seq {seq}: prev_hash does not match seq {}: edited or renumbered",
                seq.saturating_sub(1)
            ),
            Problem::Gap {
                instance,
                from,
                to,
                after_line,
                before_line,
            } => write!(
                f,
                "lines {after_line}-{before_line}: {instance} seq {from}..={to} missing (deleted or not delivered)"
            ),
            Problem::Reordered {
                line,
                instance,
                seq,
                after_seq,
                after_line,
            } => write!(
                f,
                "line {line}: {instance} seq {seq} comes after seq {after_seq} (line {after_line}): reordered"
            ),
            Problem::Conflict {
                instance,
                seq,
                first_line,
                line,
            } => write!(
                f,
                "line {line}: {instance} seq {seq} differs from the event with the same seq on line {first_line}"
            ),
        }
    }
}

/// Summary of one instance's chain in the export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceSummary {
    /// Distinct events.
    pub events: u64,
    /// Identical repeats tolerated.
    pub duplicates: u64,
    /// Lowest seq seen.
    pub first_seq: u64,
    /// Highest seq seen.
    pub last_seq: u64,
}

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Per instance, sorted by instance id.
    pub instances: BTreeMap<String, InstanceSummary>,
    /// Every problem, in the order found.
    pub problems: Vec<Problem>,
}

impl Report {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, Clone)]
struct Seen {
    line: usize,
    stored: String,
    computed: String,
    prev: String,
}

/// Verifies an NDJSON export read from `input`. Blank lines are skipped.
pub fn verify<R: BufRead>(input: R) -> Result<Report, VerifyError> {
    let mut report = Report::default();
    // instance -> seq -> first occurrence; and the highest seq seen so far, in file order.
    let mut chains: BTreeMap<String, BTreeMap<u64, Seen>> = BTreeMap::new();
    let mut highest: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    for (idx, line) in input.lines().enumerate() {
        let line_no = idx + 1;
        let text = line.map_err(|source| VerifyError::Read {
            line: line_no,
            source,
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let parsed = match chain::parse_line(text.as_bytes()) {
            Ok(p) => p,
            Err(e) => {
                report.problems.push(Problem::Unparseable {
                    line: line_no,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let instance = parsed.event.instance.clone();
        let seq = parsed.event.seq;
        let summary = report.instances.entry(instance.clone()).or_default();
        let seen = Seen {
            line: line_no,
            stored: parsed.stored_hash,
            computed: parsed.computed_hash,
            prev: parsed.event.prev_hash,
        };
        match chains.entry(instance.clone()).or_default().entry(seq) {
            MapEntry::Occupied(first) => {
                let first = first.get();
                if first.stored == seen.stored && first.computed == seen.computed {
                    summary.duplicates += 1;
                } else {
                    report.problems.push(Problem::Conflict {
                        instance,
                        seq,
                        first_line: first.line,
                        line: line_no,
                    });
                }
                continue;
            }
            MapEntry::Vacant(slot) => {
                if seen.stored != seen.computed {
                    report.problems.push(Problem::Edited {
                        line: line_no,
                        instance: instance.clone(),
                        seq,
                    });
                }
                slot.insert(seen);
            }
        }
        summary.events += 1;
        match highest.entry(instance.clone()) {
            MapEntry::Occupied(mut top) => {
                let (top_seq, top_line) = *top.get();
                if seq < top_seq {
                    report.problems.push(Problem::Reordered {
                        line: line_no,
                        instance,
                        seq,
                        after_seq: top_seq,
                        after_line: top_line,
                    });
                } else {
                    top.insert((seq, line_no));
                }
            }
            MapEntry::Vacant(v) => {
                v.insert((seq, line_no));
            }
        }
    }
    for (instance, events) in &chains {
        check_links(instance, events, &mut report);
    }
    Ok(report)
}

fn check_links(instance: &str, events: &BTreeMap<u64, Seen>, report: &mut Report) {
    let mut prev: Option<(u64, &Seen)> = None;
    for (&seq, seen) in events {
        match prev {
            None if seq == 0 && seen.prev != ZERO_HASH => {
                report.problems.push(Problem::BrokenLink {
                    line: seen.line,
                    instance: instance.to_owned(),
                    seq,
                });
            }
            Some((pseq, pseen)) if seq == pseq + 1 => {
                // An edited predecessor is already reported; a link to its stored hash is fine.
                let edited_before = pseen.stored != pseen.computed;
                let linked =
                    seen.prev == pseen.computed || (edited_before && seen.prev == pseen.stored);
                if !linked {
                    report.problems.push(Problem::BrokenLink {
                        line: seen.line,
                        instance: instance.to_owned(),
                        seq,
                    });
                }
            }
            Some((pseq, pseen)) => report.problems.push(Problem::Gap {
                instance: instance.to_owned(),
                from: pseq + 1,
                to: seq - 1,
                after_line: pseen.line,
                before_line: seen.line,
            }),
            None => {}
        }
        prev = Some((seq, seen));
    }
    if let (Some(summary), Some((&first, _)), Some((&last, _))) = (
        report.instances.get_mut(instance),
        events.first_key_value(),
        events.last_key_value(),
    ) {
        summary.first_seq = first;
        summary.last_seq = last;
    }
}
