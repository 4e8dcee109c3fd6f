//! ApprovalRequests: the status webhook's rules ([`review`]) and the approval controller
//! ([`controller`]: expiry, conditions, Events, clean-up), and [`notify`]: the optional
//! webhook notification of new requests.

pub mod controller;
pub mod notify;
pub mod review;
