//! What the statement hook tells the audit: one [`Outcome`] per statement of a query string,
//! gathered in a [`StatementTrail`] while the policies decide.

use std::sync::Arc;
use std::time::Instant;

use dbwarden_audit::Decision;
use dbwarden_policy::Decision as PolicyDecision;
use dbwarden_policy::decide::Observed;

/// The audit's view of one statement's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What was decided.
    pub decision: Decision,
    /// The policy that decided (`namespace/name`), when one did.
    pub policy: Option<Arc<str>>,
    /// The rule, guardrail field or approval rule.
    pub rule: Option<Arc<str>>,
    /// The error sent to the client, for refusals.
    pub error: Option<String>,
}

impl Outcome {
    /// A refusal not made by a policy rule (no policy, fast-path call): `rule` is a fixed label.
    pub fn refused(rule: &'static str, error: String) -> Self {
        Self {
            decision: Decision::Denied,
            policy: None,
            rule: Some(Arc::from(rule)),
            error: Some(error),
        }
    }

    /// The outcome of one policy's decision. Allowances carry no policy name: nothing reads it,
    /// and the common case then costs no allocation.
    fn of(decision: &PolicyDecision) -> Self {
        match decision {
            PolicyDecision::Allow(allowed) => match &allowed.observed {
                None => Self {
                    decision: Decision::Allowed,
                    policy: None,
                    rule: allowed.rule.clone(),
                    error: None,
                },
                Some(Observed::Denied(d)) => Self {
                    decision: Decision::WouldDeny,
                    policy: Some(d.policy.clone()),
                    rule: Some(Arc::from(d.cause.rule())),
                    error: None,
                },
                Some(Observed::NeedsApproval(n)) => Self {
                    decision: Decision::WouldDeny,
                    policy: Some(n.policy.clone()),
                    rule: Some(n.rule.clone()),
                    error: None,
                },
            },
            PolicyDecision::Deny(d) => Self {
                decision: Decision::Denied,
                policy: Some(d.policy.clone()),
                rule: Some(Arc::from(d.cause.rule())),
                error: Some(d.reason.clone()),
            },
            // Handed to the approval desk; a refusal before that (standalone mode, a missing
            // reason) replaces this outcome through `StatementTrail::refuse`.
            PolicyDecision::NeedsApproval(n) => Self {
                decision: Decision::ApprovalRequested,
                policy: Some(n.policy.clone()),
                rule: Some(n.rule.clone()),
                error: None,
            },
        }
    }

    /// How executions of a prepared statement decided this way are recorded: one that waited
    /// for an approval runs because of it.
    pub fn when_run(self) -> Self {
        match self.decision {
            Decision::ApprovalRequested => Self {
                decision: Decision::Approved,
                ..self
            },
            _ => self,
        }
    }

    fn rank(&self) -> u8 {
        match self.decision {
            Decision::Denied => 3,
            Decision::ApprovalRequested => 2,
            Decision::WouldDeny => 1,
            _ => 0,
        }
    }
}

/// The outcomes of one query string's statements while they are decided.
#[derive(Debug)]
pub struct StatementTrail {
    pub(super) started: Instant,
    pub(super) outcomes: Vec<Option<Outcome>>,
    /// The statement whose refusal refused the whole string.
    pub(super) refused: Option<usize>,
}

impl StatementTrail {
    /// A trail for a string of `count` statements; the check's clock starts now.
    pub fn new(started: Instant, count: usize) -> Self {
        Self {
            started,
            outcomes: vec![None; count.max(1)],
            refused: None,
        }
    }

    /// When the check started.
    /// The trail of one prepared statement's execution, decided at its Parse.
    pub fn ran(started: Instant, outcome: Outcome) -> Self {
        Self {
            started,
            outcomes: vec![Some(outcome)],
            refused: None,
        }
    }

    /// The outcome of a string of exactly one statement, if it was decided.
    pub fn single(&self) -> Option<&Outcome> {
        match self.outcomes.as_slice() {
            [one] => one.as_ref(),
            _ => None,
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Notes one policy's decision on statement `index`: a refusal beats an observe-only
    /// outcome, which beats an allowance; among allowances the first policy's stays.
    pub fn note(&mut self, index: usize, decision: &PolicyDecision) {
        let Some(slot) = self.outcomes.get_mut(index) else {
            return;
        };
        let plain_allow = matches!(decision, PolicyDecision::Allow(a) if a.observed.is_none());
        if slot.is_some() && plain_allow {
            return;
        }
        let outcome = Outcome::of(decision);
        if slot.as_ref().is_none_or(|old| outcome.rank() > old.rank()) {
            *slot = Some(outcome);
        }
        // Waiting for approval is not a refusal of the string (the desk may still refuse it).
        if matches!(decision, PolicyDecision::Deny(_)) && self.refused.is_none() {
            self.refused = Some(index);
        }
    }

    /// Sets the single outcome of a statement refused before any policy decided.
    pub fn refuse(&mut self, outcome: Outcome) {
        self.outcomes = vec![Some(outcome)];
        self.refused = Some(0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use dbwarden_policy::decide::{Allowed, Denial, DenyCause};

    use super::*;

    fn allow(rule: &str, observed: Option<Observed>) -> PolicyDecision {
        PolicyDecision::Allow(Allowed {
            rule: Some(Arc::from(rule)),
            masking: false,
            unparsed: false,
            observed,
        })
    }

    fn denial() -> Denial {
        Denial {
            policy: Arc::from("shop/strict"),
            cause: DenyCause::NoRule,
            reason: "no rule allows it".into(),
        }
    }

    #[test]
    fn a_refusal_beats_an_observation_which_beats_an_allowance() {
        let mut trail = StatementTrail::new(Instant::now(), 3);
        for index in 0..3 {
            trail.note(index, &allow("crud", None));
        }
        trail.note(1, &allow("x", Some(Observed::Denied(denial()))));
        trail.note(2, &PolicyDecision::Deny(denial()));
        trail.note(2, &allow("late", None));
        let o: Vec<Outcome> = trail.outcomes.iter().map(|o| o.clone().unwrap()).collect();
        assert_eq!(o[0].decision, Decision::Allowed);
        assert_eq!(o[0].rule.as_deref(), Some("crud"));
        assert_eq!(o[1].decision, Decision::WouldDeny);
        assert_eq!(o[1].rule.as_deref(), Some("default-deny"));
        assert_eq!(o[2].decision, Decision::Denied);
        assert_eq!(o[2].policy.as_deref(), Some("shop/strict"));
        assert_eq!(o[2].error.as_deref(), Some("no rule allows it"));
        assert_eq!(trail.refused, Some(2));
    }
}
