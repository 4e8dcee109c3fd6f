//! The semantic validator: what the CRD schema and its CEL rules cannot check well.
//!
//! Run by the operator's validating webhook and by the sidecar before it uses a policy (also one
//! read from a local file, where no API server has checked anything, so the checks the CEL rules
//! make are repeated here). Every problem names the field path and the bad value; all problems
//! are reported at once.

mod approval;
mod checks;
mod policy;

use std::fmt;

pub use approval::{validate_approval_request, validate_approval_status};
pub use policy::validate_policy;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where, e.g. `spec.rules[2].tables[0]`.
    pub path: String,
    /// The offending value as written (JSON for non-strings), shortened to 80 characters.
    pub value: String,
    /// What is wrong and, where it helps, what to write instead.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?} {}", self.path, self.value, self.reason)
    }
}

/// Every problem found in one object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name} is invalid: {}", render(.problems))]
pub struct ValidationError {
    /// `DatabaseAccessPolicy` or `ApprovalRequest`.
    pub kind: &'static str,
    /// `namespace/name` of the object, or its file name for local policies.
    pub name: String,
    /// The problems, in field order.
    pub problems: Vec<Problem>,
}

impl ValidationError {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        "invalid_resource"
    }
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects problems while a validator walks an object.
#[derive(Debug, Default)]
pub(crate) struct Report {
    problems: Vec<Problem>,
}

impl Report {
    pub(crate) fn push(
        &mut self,
        path: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) {
        let mut value = value.to_string();
        if value.chars().count() > 80 {
            value = value.chars().take(77).collect::<String>() + "...";
        }
        self.problems.push(Problem {
            path: path.into(),
            value,
            reason: reason.into(),
        });
    }

    pub(crate) fn finish(self, kind: &'static str, name: String) -> Result<(), ValidationError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                kind,
                name,
                problems: self.problems,
            })
        }
    }
}
