//! Remembered answers of the masked-column walk, kept on a cached [`Analysis`](crate::analyze::Analysis).
//!
//! The walk re-parses the statement text, which costs as much as the analysis itself. Its answer
//! depends on the statement's structure and on the policy's masking rules; a cached analysis stands
//! for texts of one structure (one text, or literal variants of one shape), so the answer can be
//! kept on it per policy, except when the walk read a literal (positional `ORDER BY 2`), whose
//! value may differ between the texts the analysis stands for.

use std::sync::{Mutex, PoisonError};

use super::MaskedColumnUse;

/// The walk's answer: the first statement (by index) using a masked column in a refused way.
pub(crate) type Outcome = Result<(), (usize, MaskedColumnUse)>;

/// Policies remembered per analysis: a sidecar has a few policies per database.
const SLOTS: usize = 4;

/// Answers per [`CompiledPolicy::id`](crate::compile::CompiledPolicy), at most [`SLOTS`] (the
/// oldest goes first). Disabled unless the cache enabled it. Kept in a
/// [`Carried`](crate::carried::Carried): a clone starts disabled and empty, and equality ignores it.
#[derive(Default)]
pub(crate) struct MaskedUseMemo {
    slots: Option<Mutex<Vec<(u64, Outcome)>>>,
}

impl MaskedUseMemo {
    /// A memo that remembers.
    pub(crate) fn enabled() -> Self {
        Self {
            slots: Some(Mutex::new(Vec::with_capacity(SLOTS))),
        }
    }

    /// The answer remembered for `policy`.
    pub(crate) fn get(&self, policy: u64) -> Option<Outcome> {
        let slots = self.slots.as_ref()?;
        let slots = slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .iter()
            .find(|(id, _)| *id == policy)
            .map(|(_, outcome)| *outcome)
    }

    /// Remembers `outcome` for `policy` (a no-op when disabled).
    pub(crate) fn put(&self, policy: u64, outcome: Outcome) {
        let Some(slots) = self.slots.as_ref() else {
            return;
        };
        // A panic while holding the lock leaves a valid Vec: any state is a correct memo.
        let mut slots = slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.iter().any(|(id, _)| *id == policy) {
            return;
        }
        if slots.len() >= SLOTS {
            let _oldest = slots.remove(0);
        }
        slots.push((policy, outcome));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_policy_and_off_unless_enabled() {
        let memo = MaskedUseMemo::enabled();
        for id in 1..=6 {
            memo.put(id, Err((0, MaskedColumnUse::Expression)));
        }
        assert_eq!(memo.get(1), None, "the oldest went first");
        assert_eq!(memo.get(6), Some(Err((0, MaskedColumnUse::Expression))));
        assert_eq!(memo.get(7), None);
        let off = MaskedUseMemo::default();
        off.put(1, Ok(()));
        assert_eq!(off.get(1), None);
    }
}
