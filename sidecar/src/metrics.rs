//! The sidecar's Prometheus metrics (`dbwarden_*`), served on the health server's `/metrics`.
//!
//! One [`Metrics`] per process, registered once at start: nothing is registered per connection,
//! and every label value is bounded (fixed label sets, operation labels, or names taken from the
//! policy's own content). The audit counters are copied from [`dbwarden_audit::Stats`] at scrape
//! time, so the statement path never touches them twice.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use dbwarden_audit::{ApprovalPhase, Kind, Stats};
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Latency buckets for time the proxy spends deciding (microseconds to 10 ms).
const CHECK_BUCKETS: [f64; 10] = [
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2,
];
/// Latency buckets for the database's time (100 µs to 10 s).
const UPSTREAM_BUCKETS: [f64; 11] = [
    1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 0.5, 2.5, 10.0,
];

/// How a client connection ended up (`dbwarden_connections_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionOutcome {
    /// Became a session.
    Session,
    /// Authentication was refused.
    AuthFailed,
    /// The startup failed (protocol, TLS, timeout, the client left).
    StartupFailed,
    /// Startup parameters refused by policy, or refused because the audit spool is full.
    Refused,
    /// The database could not be reached or refused the sidecar.
    UpstreamFailed,
    /// A CancelRequest.
    Cancel,
}

impl ConnectionOutcome {
    /// The bounded label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::AuthFailed => "auth_failed",
            Self::StartupFailed => "startup_failed",
            Self::Refused => "refused",
            Self::UpstreamFailed => "upstream_failed",
            Self::Cancel => "cancel",
        }
    }
}

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: IntGauge,
    connections_total: IntCounterVec,
    statements: IntCounterVec,
    denials: IntCounterVec,
    masked_values: IntCounter,
    approvals: IntCounterVec,
    check_duration: Histogram,
    upstream_duration: Histogram,
    policy_reloads: IntCounterVec,
    policy_age: IntGauge,
    policy_loaded: Mutex<Option<Instant>>,
    audit_recorded: IntCounterVec,
    /// `audit_recorded{kind="statement"}`, looked up once: one per statement run.
    audit_statements: OnceLock<IntCounter>,
    /// The `statement.result` series of `audit_recorded`, looked up once.
    audit_results: OnceLock<IntCounter>,
    audit_copies: AuditCopies,
    audit_stats: OnceLock<Arc<Stats>>,
    /// Serializes scrapes: the audit copies are brought up to date by deltas.
    scrape: Mutex<()>,
}

/// Counters mirrored from the auditor's own atomics at scrape time.
#[derive(Debug)]
struct AuditCopies {
    spooled: IntCounter,
    spool_writes: IntCounter,
    shipped: IntCounter,
    dropped: IntCounter,
    refused: IntCounter,
    corrupt: IntCounter,
    batches: IntCounterVec,
    spool_bytes: IntGauge,
    spool_segments: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> Result<Histogram, prometheus::Error> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

impl Metrics {
    /// Registers every metric in a registry of its own.
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new();
        let audit_copies = AuditCopies {
            spooled: counter(
                &r,
                "dbwarden_audit_events_spooled_total",
                "Audit events stamped into the chain and written to the spool.",
            )?,
            spool_writes: counter(
                &r,
                "dbwarden_audit_spool_writes_total",
                "Writes of audit events to the spool (sessions busy at once share one).",
            )?,
            shipped: counter(
                &r,
                "dbwarden_audit_events_shipped_total",
                "Audit events the collector accepted.",
            )?,
            dropped: counter(
                &r,
                "dbwarden_audit_events_dropped_total",
                "Audit events lost under failure policy open (spool full or not writable).",
            )?,
            refused: counter(
                &r,
                "dbwarden_audit_events_refused_total",
                "Audit events refused under failure policy closed; their statements were refused.",
            )?,
            corrupt: counter(
                &r,
                "dbwarden_audit_spool_corrupt_records_total",
                "Spool records skipped because they failed their hash check.",
            )?,
            batches: counter_vec(
                &r,
                "dbwarden_audit_batches_total",
                "Delivery attempts to the collector, by result.",
                &["result"],
            )?,
            spool_bytes: gauge(
                &r,
                "dbwarden_audit_spool_bytes",
                "Bytes of audit events in the spool not yet delivered.",
            )?,
            spool_segments: gauge(
                &r,
                "dbwarden_audit_spool_segments",
                "Segment files in the audit spool.",
            )?,
        };
        Ok(Self {
            connections: gauge(&r, "dbwarden_connections", "Client sessions open now.")?,
            connections_total: counter_vec(
                &r,
                "dbwarden_connections_total",
                "Client connections accepted, by how they ended up.",
                &["outcome"],
            )?,
            statements: counter_vec(
                &r,
                "dbwarden_statements_total",
                "Statements decided, by operation and decision.",
                &["operation", "decision"],
            )?,
            denials: counter_vec(
                &r,
                "dbwarden_denials_total",
                "Statements refused, by policy and rule or guardrail.",
                &["policy", "rule"],
            )?,
            masked_values: counter(&r, "dbwarden_masked_values_total", "Result values masked.")?,
            approvals: counter_vec(
                &r,
                "dbwarden_approvals_total",
                "Approval requests seen, by phase.",
                &["phase"],
            )?,
            check_duration: histogram(
                &r,
                "dbwarden_statement_check_duration_seconds",
                "Time the sidecar spent deciding on a statement (analysis, policies, audit record).",
                &CHECK_BUCKETS,
            )?,
            upstream_duration: histogram(
                &r,
                "dbwarden_upstream_duration_seconds",
                "Time from forwarding a query to the database's ReadyForQuery.",
                &UPSTREAM_BUCKETS,
            )?,
            policy_reloads: counter_vec(
                &r,
                "dbwarden_policy_reloads_total",
                "Policy reloads after a file changed, by result (ok, error).",
                &["result"],
            )?,
            policy_age: gauge(
                &r,
                "dbwarden_policy_age_seconds",
                "Seconds since the policies in force were loaded.",
            )?,
            policy_loaded: Mutex::new(None),
            audit_recorded: counter_vec(
                &r,
                "dbwarden_audit_events_recorded_total",
                "Audit events the sidecar asked to record, by kind.",
                &["kind"],
            )?,
            audit_statements: OnceLock::new(),
            audit_results: OnceLock::new(),
            audit_copies,
            audit_stats: OnceLock::new(),
            scrape: Mutex::new(()),
            registry: r,
        })
    }

    /// A session opened; its [`ConnectionGuard`] closes it.
    pub fn session_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.inc();
        ConnectionGuard {
            metrics: Arc::clone(self),
        }
    }

    /// Counts a connection by how it ended up.
    pub fn connection(&self, outcome: ConnectionOutcome) {
        self.connections_total
            .with_label_values(&[outcome.label()])
            .inc();
    }

    /// Counts one decided statement.
    pub fn statement(&self, operation: &str, decision: &str) {
        self.statements
            .with_label_values(&[operation, decision])
            .inc();
    }

    /// Counts a refusal by `policy` and its rule or guardrail.
    pub fn denial(&self, policy: &str, rule: &str) {
        self.denials.with_label_values(&[policy, rule]).inc();
    }

    /// Counts `n` masked values (for the masking code).
    pub fn masked_values(&self, n: u64) {
        self.masked_values.inc_by(n);
    }

    /// Counts an approval request reaching `phase` (for the approvals code).
    pub fn approval(&self, phase: ApprovalPhase) {
        let label = match phase {
            ApprovalPhase::Pending => "pending",
            ApprovalPhase::Approved => "approved",
            ApprovalPhase::Rejected => "rejected",
            ApprovalPhase::Expired => "expired",
        };
        self.approvals.with_label_values(&[label]).inc();
    }

    /// Observes the time spent deciding on one statement.
    pub fn check_duration(&self, took: Duration) {
        self.check_duration.observe(took.as_secs_f64());
    }

    /// Observes the database's time for one query.
    pub fn upstream_duration(&self, took: Duration) {
        self.upstream_duration.observe(took.as_secs_f64());
    }

    /// Notes that a policy set was put in force now (at start or by a reload).
    pub fn policies_loaded(&self) {
        *self
            .policy_loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Counts a reload attempt; `ok` also resets the policy age.
    pub fn policy_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.policy_reloads.with_label_values(&[result]).inc();
        if ok {
            self.policies_loaded();
        }
    }

    /// Counts an audit event the sidecar asked to record.
    pub fn audit_event(&self, kind: Kind) {
        match kind {
            Kind::Statement => self
                .audit_statements
                .get_or_init(|| self.audit_recorded.with_label_values(&[kind.label()]))
                .inc(),
            Kind::StatementResult => self
                .audit_results
                .get_or_init(|| self.audit_recorded.with_label_values(&[kind.label()]))
                .inc(),
            other => self
                .audit_recorded
                .with_label_values(&[other.label()])
                .inc(),
        }
    }

    /// Publishes the auditor's counters (once per process).
    pub fn watch_audit(&self, stats: Arc<Stats>) {
        let _ = self.audit_stats.set(stats);
    }

    /// Every metric in the Prometheus text format, with the scrape-time values brought up to date.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let _scrape = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(loaded) = *self
            .policy_loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            let age = i64::try_from(loaded.elapsed().as_secs()).unwrap_or(i64::MAX);
            self.policy_age.set(age);
        }
        if let Some(stats) = self.audit_stats.get() {
            let s = stats.snapshot();
            let c = &self.audit_copies;
            catch_up(&c.spooled, s.recorded);
            catch_up(&c.spool_writes, s.spool_writes);
            catch_up(&c.shipped, s.shipped);
            catch_up(&c.dropped, s.dropped);
            catch_up(&c.refused, s.refused);
            catch_up(&c.corrupt, s.corrupt);
            catch_up(&c.batches.with_label_values(&["ok"]), s.batches_ok);
            catch_up(&c.batches.with_label_values(&["failed"]), s.batches_failed);
            c.spool_bytes
                .set(i64::try_from(s.spool_bytes).unwrap_or(i64::MAX));
            c.spool_segments
                .set(i64::try_from(s.spool_segments).unwrap_or(i64::MAX));
        }
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

/// Raises a mirrored counter to `value` (the source only ever grows).
fn catch_up(counter: &IntCounter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

/// Keeps `dbwarden_connections` up while a session lives.
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.connections.dec();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counts_show_in_the_text_format() {
        let m = Arc::new(Metrics::new().unwrap());
        let guard = m.session_opened();
        m.connection(ConnectionOutcome::Session);
        m.statement("select", "allowed");
        m.denial("shop/app", "default-deny");
        m.check_duration(Duration::from_micros(30));
        m.policies_loaded();
        let text = m.encode().unwrap();
        assert!(text.contains("dbwarden_connections 1"), "{text}");
        assert!(text.contains("dbwarden_connections_total{outcome=\"session\"} 1"));
        assert!(
            text.contains("dbwarden_statements_total{decision=\"allowed\",operation=\"select\"} 1")
        );
        assert!(
            text.contains("dbwarden_denials_total{policy=\"shop/app\",rule=\"default-deny\"} 1")
        );
        assert!(text.contains("dbwarden_statement_check_duration_seconds_count 1"));
        assert!(text.contains("dbwarden_policy_age_seconds 0"));
        drop(guard);
        assert!(m.encode().unwrap().contains("dbwarden_connections 0"));
    }
}
