//! Steps 7-8: the evidence: audit events with a verified chain, and the metrics.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use dbwarden_testbed::http_get;

use super::*;

/// Step 7: the audit events at the collector.
pub async fn audit_trail(story: &Story) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let events: Vec<serde_json::Value> = loop {
        let events: Vec<serde_json::Value> = story
            .collector
            .lines()
            .iter()
            .map(|line| serde_json::from_str(line))
            .collect::<Result<_, _>>()?;
        // Shipping keeps the chain's order: once the approval's decision is there, so is all
        // that came before it.
        let decided = events.iter().any(|e| e["kind"] == "approval.decided");
        if decided || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tracing::info!(events = events.len(), "audit events at the collector");
    let refused_drop = events.iter().find(|e| {
        e["decision"] == "denied"
            && e["identity"]["user"] == AGENT_USER
            && e["rule"].as_str().is_some_and(|r| r.contains("blockDrop"))
    });
    ensure!(
        refused_drop.is_some(),
        "no event records the agent's refused DROP TABLE"
    );
    ensure!(
        events
            .iter()
            .any(|e| e["decision"] == "approval_requested" && e["operation"] == "delete"),
        "no event records the DELETE waiting for approval"
    );
    ensure!(
        events.iter().any(|e| e["kind"] == "approval.decided"
            && e["approval"]["phase"] == "approved"
            && e["approval"]["decided_by"] == "alice"),
        "no event records alice's approval"
    );
    // What the agent saw: its read of card numbers returned 2 rows, with that column masked.
    let agent_read = events
        .iter()
        .filter(|e| {
            e["kind"] == "statement"
                && e["identity"]["user"] == AGENT_USER
                && e["statement"]
                    .as_str()
                    .is_some_and(|s| s.contains("card_number"))
        })
        .find_map(|statement| {
            events
                .iter()
                .find(|e| e["kind"] == "statement.result" && e["statement_id"] == statement["id"])
        })
        .context("no statement.result records what the agent's read of card numbers returned")?;
    ensure!(
        agent_read["decision"] == "masked"
            && agent_read["rows"] == 2
            && agent_read["masked"]["columns"]
                == serde_json::json!(["public.payments.card_number"]),
        "the agent's read is not recorded as 2 rows with card_number masked: {agent_read}"
    );
    let lines = story.collector.lines().join("\n");
    let report = dbwarden_audit::verify(lines.as_bytes())?;
    tracing::info!(?report, "dbwarden-audit verify");
    ensure!(
        report.problems.is_empty(),
        "the audit chain does not verify: {:?}",
        report.problems
    );
    Ok(())
}

/// Step 8: what Prometheus would scrape.
pub async fn metrics(story: &Story) -> anyhow::Result<()> {
    let sidecar = http_get(story.health_port, "/metrics")
        .await
        .context("the sidecar's /metrics did not answer")?;
    for needle in [
        "dbwarden_statements_total{decision=\"denied\"",
        "rule=\"guardrails.blockDrop\"} 1",
        "dbwarden_approvals_total{phase=\"pending\"} 1",
        "dbwarden_masked_values_total",
        "dbwarden_audit_events_shipped_total",
    ] {
        ensure!(
            sidecar.contains(needle),
            "the sidecar's /metrics lacks {needle}:\n{sidecar}"
        );
    }
    let operator = http_get(story.operator_metrics, "/metrics")
        .await
        .context("the operator's /metrics did not answer")?;
    ensure!(
        operator.contains("dbwarden_operator_reconciliations_total{controller=\"approval\"}"),
        "the operator's /metrics lacks its approval reconciles:\n{operator}"
    );
    Ok(())
}
