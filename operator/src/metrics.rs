//! The operator's Prometheus metrics (`dbwarden_operator_*`).

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::Error;

/// Reconcile counts, failures and durations per controller.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    reconciliations: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    notifications: IntCounterVec,
}

impl Metrics {
    /// Registers the metrics in a registry of their own.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "dbwarden_operator_reconciliations_total",
                "Reconciles started, by controller.",
            ),
            &["controller"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "dbwarden_operator_reconcile_errors_total",
                "Reconciles that failed and will be retried, by controller and error kind.",
            ),
            &["controller", "error"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "dbwarden_operator_reconcile_duration_seconds",
                "Time one reconcile took, by controller.",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]),
            &["controller"],
        )?;
        let notifications = IntCounterVec::new(
            Opts::new(
                "dbwarden_operator_approval_notifications_total",
                "Notifications of new approval requests, by result (sent or failed).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(notifications.clone()))?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            registry,
            reconciliations,
            failures,
            duration,
            notifications,
        })
    }

    /// Counts a reconcile of `controller` and times it until the guard drops.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer {
        self.reconciliations.with_label_values(&[controller]).inc();
        ReconcileTimer {
            histogram: self.duration.with_label_values(&[controller]),
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn failure(&self, controller: &'static str, error: &Error) {
        self.failures
            .with_label_values(&[controller, error.label()])
            .inc();
    }

    /// Counts a notification of a new approval request.
    pub fn notification(&self, sent: bool) {
        let result = if sent { "sent" } else { "failed" };
        self.notifications.with_label_values(&[result]).inc();
    }

    /// Every metric in the Prometheus text format.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

/// Observes a reconcile's duration when dropped.
#[derive(Debug)]
pub struct ReconcileTimer {
    histogram: prometheus::Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
