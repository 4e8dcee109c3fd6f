//! dbwarden audit events: the v1 schema, the per-instance hash chain, a bounded on-disk spool and
//! a shipper that delivers events to an HTTP collector at least once.
//!
//! The sidecar opens one [`Auditor`] per process, calls [`Auditor::submit`] for every statement
//! decision (settling the [`Ticket`] before forwarding) and [`Auditor::record`] for the rest, and
//! exports [`Auditor::stats`] on `/metrics`. `dbwarden-audit verify FILE` checks an export.

mod auditor;
pub mod chain;
pub mod clock;
pub mod event;
mod json;
mod recorder;
pub mod render;
pub mod ship;
pub mod spool;
mod stats;
pub mod verify;

pub use auditor::{AuditConfig, Auditor, OpenError, RecordError};
pub use chain::{Chain, Sealed};
pub use event::{
    Approval, ApprovalPhase, Decision, Durations, Event, Identity, Kind, Masked, StatementText,
};
pub use recorder::Ticket;
pub use render::{Draft, Record, Shared, Tail};
pub use ship::{Format, ShipperConfig, Token};
pub use spool::{FailurePolicy, FsyncPolicy, SpoolConfig};
pub use stats::{Stats, StatsSnapshot};
pub use verify::{Problem, Report, verify};
