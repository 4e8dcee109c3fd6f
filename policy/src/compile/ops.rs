//! Operation sets as bitmasks, and the mapping from analysed statements to policy operations.
//!
//! The analysis distinguishes more kinds than policies name (`copy:program`, `set_role`, `vacuum`);
//! [`policy_operation`] maps each to the operation a rule must allow. Kinds with no policy
//! operation ([`AnalyzedOp::Other`]: statements sqlparser understands but dbwarden does not
//! classify) can only be allowed by a rule naming `all`.

use dbwarden_crds::Operation;

use crate::analyze::Operation as AnalyzedOp;

/// The bit standing for statements no concrete operation names; only `all` sets it.
const OTHER_BIT: u32 = 1 << Operation::CONCRETE.len();

/// A set of concrete operations (plus "other"), expanded from groups at compile time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OpSet(u32);

/// What a statement needs a rule to allow: a concrete operation, or "other".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needed {
    /// A concrete policy operation.
    Op(Operation),
    /// A statement kind no policy operation names.
    Other,
}

impl Needed {
    fn bit(self) -> u32 {
        match self {
            Self::Op(op) => Operation::CONCRETE
                .iter()
                .position(|c| *c == op)
                .map_or(0, |i| 1 << i),
            Self::Other => OTHER_BIT,
        }
    }

    /// The policy name of the operation (`other` for unclassified statements).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Op(op) => op.label(),
            Self::Other => "other",
        }
    }
}

impl OpSet {
    /// The set a policy's `operations` list stands for.
    pub(crate) fn of(operations: &[Operation]) -> Self {
        let mut bits = 0;
        for op in operations {
            for member in op.members() {
                bits |= Needed::Op(*member).bit();
            }
            if *op == Operation::All {
                bits |= OTHER_BIT;
            }
        }
        Self(bits)
    }

    /// True when `needed` is in the set.
    pub(crate) fn contains(self, needed: Needed) -> bool {
        let bit = needed.bit();
        bit != 0 && self.0 & bit == bit
    }
}

/// The policy operation a rule must allow for an analysed operation.
pub(crate) fn policy_operation(op: &AnalyzedOp) -> Needed {
    use AnalyzedOp as A;
    Needed::Op(match op {
        A::Select | A::Declare | A::Fetch => Operation::Select,
        A::Insert => Operation::Insert,
        A::Update => Operation::Update,
        A::Delete => Operation::Delete,
        A::Merge => Operation::Merge,
        A::Copy { .. } => Operation::Copy,
        A::Create(_) => Operation::Create,
        A::Alter(_) => Operation::Alter,
        A::Drop(_) => Operation::Drop,
        A::Truncate => Operation::Truncate,
        A::Comment => Operation::Comment,
        A::Grant => Operation::Grant,
        A::Revoke => Operation::Revoke,
        A::Set | A::Reset | A::SetRole | A::SetSessionAuthorization | A::Discard => Operation::Set,
        A::Show => Operation::Show,
        A::Begin | A::Commit | A::Rollback | A::Savepoint => Operation::Transaction,
        A::Call => Operation::Call,
        A::Do => Operation::Do,
        A::Prepare | A::Execute | A::Deallocate => Operation::Prepare,
        A::Explain { .. } => Operation::Explain,
        A::Listen | A::Unlisten | A::Notify => Operation::Notify,
        A::Vacuum | A::Analyze => Operation::Maintenance,
        A::Lock => Operation::Lock,
        _ => return Needed::Other,
    })
}

/// Session housekeeping drivers send on their own (see `decide` for why these need no rule of
/// their own): transaction control, ordinary `SET`/`RESET`/`SHOW`, `DISCARD`, `DEALLOCATE`, and
/// `FETCH`/`CLOSE` of a cursor whose `DECLARE` was already decided.
pub(crate) fn is_session_housekeeping(op: &AnalyzedOp) -> bool {
    use AnalyzedOp as A;
    matches!(
        op,
        A::Begin
            | A::Commit
            | A::Rollback
            | A::Savepoint
            | A::Set
            | A::Reset
            | A::Show
            | A::Discard
            | A::Deallocate
            | A::Fetch
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_expand_and_other_needs_all() {
        let read = OpSet::of(&[Operation::Read]);
        assert!(read.contains(Needed::Op(Operation::Select)));
        assert!(read.contains(Needed::Op(Operation::Explain)));
        assert!(!read.contains(Needed::Op(Operation::Insert)));
        assert!(!read.contains(Needed::Other));
        let all = OpSet::of(&[Operation::All]);
        assert!(all.contains(Needed::Other));
        for op in Operation::CONCRETE {
            assert!(all.contains(Needed::Op(op)), "{op}");
        }
        assert!(!OpSet::default().contains(Needed::Op(Operation::Select)));
    }

    #[test]
    fn analysed_kinds_map_to_policy_operations() {
        assert_eq!(
            policy_operation(&AnalyzedOp::Vacuum),
            Needed::Op(Operation::Maintenance)
        );
        assert_eq!(
            policy_operation(&AnalyzedOp::Commit),
            Needed::Op(Operation::Transaction)
        );
        assert_eq!(policy_operation(&AnalyzedOp::Other), Needed::Other);
    }
}
