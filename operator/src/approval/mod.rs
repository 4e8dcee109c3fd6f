//! ApprovalRequests: the status webhook's rules ([`review`]) and the approval controller
//! ([`controller`]: expiry, conditions, Events, clean-up).

pub mod controller;
pub mod review;
