//! Status conditions as the Kubernetes API conventions describe them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The condition every dbwarden resource reports.
pub const READY: &str = "Ready";

/// `condition` merged into `conditions` (replacing the one of the same type). The transition
/// time is kept when the status did not change, as the conventions require, so watchers see
/// when the object last became (un)ready, not when it was last reconciled.
pub fn merge(conditions: &[Condition], mut condition: Condition) -> Vec<Condition> {
    if let Some(previous) = conditions.iter().find(|c| c.type_ == condition.type_)
        && previous.status == condition.status
    {
        condition.last_transition_time = previous.last_transition_time.clone();
    }
    let mut merged: Vec<Condition> = conditions
        .iter()
        .filter(|c| c.type_ != condition.type_)
        .cloned()
        .collect();
    merged.push(condition);
    merged
}

/// A condition stamped now.
pub fn new(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_kept_while_the_status_holds() {
        let old = Time(Timestamp::from_second(1_000_000).unwrap());
        let first = Condition {
            last_transition_time: old.clone(),
            ..new(READY, true, "Valid", "ok", Some(1))
        };
        let same = merge(
            std::slice::from_ref(&first),
            new(READY, true, "Valid", "still ok", Some(2)),
        );
        assert_eq!(same.len(), 1);
        assert_eq!(same[0].last_transition_time, old);
        assert_eq!(same[0].message, "still ok");

        let flipped = merge(&[first], new(READY, false, "Invalid", "bad", Some(3)));
        assert_ne!(flipped[0].last_transition_time, old);
        assert_eq!(flipped[0].status, "False");
    }

    #[test]
    fn other_condition_types_are_left_alone() {
        let other = new("Degraded", false, "Fine", "", None);
        let merged = merge(
            std::slice::from_ref(&other),
            new(READY, true, "Valid", "", None),
        );
        assert_eq!(merged.len(), 2);
        assert!(merged.contains(&other));
    }
}
