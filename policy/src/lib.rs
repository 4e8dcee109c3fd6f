//! SQL analysis and policy decisions: what a statement does, and whether it may.
//!
//! - [`analyze`]: what each statement of a client string does.
//! - [`compile`]: a `DatabaseAccessPolicySpec` validated and compiled into a [`CompiledPolicy`].
//! - [`decide`]: the decision on one statement for one [`Identity`].
//! - [`mask`]: the per-result [`MaskPlan`], strategies and value detectors.
//!
//! Pure logic, no I/O: the sidecar reads policies, keys and sockets, and calls in here:
//!
//! 1. on policy load: [`CompiledPolicy::from_resource`] (or [`CompiledPolicy::compile`]), then
//!    [`CompiledPolicy::with_hash_key`] when [`CompiledPolicy::needs_hash_key`];
//! 2. per client string: [`analyze::AnalysisCache`], then [`CompiledPolicy::decide_string`]
//!    (or [`CompiledPolicy::decide_unparsed`] when analysis failed; [`CompiledPolicy::decide_execute`]
//!    for `EXECUTE`);
//! 3. per `RowDescription`: [`CompiledPolicy::mask_plan`]; per value: [`MaskPlan::mask_value`];
//!    rows counted against [`CompiledPolicy::max_rows`].

pub mod analyze;
mod carried;
pub mod compile;
pub mod decide;
pub mod identity;
pub mod mask;

pub use compile::{CompileError, CompiledPolicy, MaxRows};
pub use decide::{Decision, Denial, StringDecision};
pub use identity::{EndUser, Identity, ServiceAccount};
pub use mask::{MaskOutcome, MaskPlan};
