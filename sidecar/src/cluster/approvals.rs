//! The approval desk of a pod: statements that need approval become `ApprovalRequest` objects in
//! the pod's namespace, decided by people with `kubectl` (the operator's webhook records who).
//!
//! - One request per requester, policy and statement fingerprint while it is pending: a repeat
//!   finds it again (through the `dbwarden.io/request-key` label) instead of filing another.
//! - An `Approved`, unexpired request for the same key lets the statement run once: the sidecar
//!   marks it `Executed` first (the operator's webhook lets only the requesting pod's
//!   ServiceAccount do that), then forwards the statement. Marking first means a failure
//!   anywhere never runs an approval twice.
//! - `hold` mode watches the request until it is decided, expires or the rule's hold timeout
//!   passes; `reject` mode refuses at once, naming the request to approve.

use std::sync::{Arc, OnceLock};

use dbwarden_audit::{Approval, ApprovalPhase as MetricPhase, Kind};

use dbwarden_crds::approval::Requester;
use dbwarden_crds::policy::ApprovalMode;
use dbwarden_crds::{ApprovalPhase, ApprovalRequest, ApprovalRequestSpec, DecisionKind};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{RoundMode, Timestamp, TimestampRound, Unit};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, ResourceExt};
use sha2::{Digest, Sha256};

use crate::audit::SidecarAudit;
use crate::enforce::{ApprovalAsk, ApprovalDesk};
use crate::hook::{Denial, Hold, Verdict};
use crate::metrics::Metrics;

/// The label that finds the requests of one requester, policy and fingerprint.
pub const REQUEST_KEY_LABEL: &str = "dbwarden.io/request-key";
/// Longest statement text stored in a request (the field's limit).
const MAX_STATEMENT: usize = 16 * 1024;
/// Most tables listed in a request (the field's limit).
const MAX_TABLES: usize = 64;

/// Files and follows `ApprovalRequest`s for one pod.
#[derive(Debug, Clone)]
pub struct KubeApprovals {
    api: Api<ApprovalRequest>,
    namespace: String,
    metrics: Arc<Metrics>,
    /// Records `approval.*` events once auditing is open (it starts after the desk).
    audit: Arc<OnceLock<Arc<SidecarAudit>>>,
}

impl KubeApprovals {
    /// A desk filing requests in `namespace` with `client` (the pod's ServiceAccount),
    /// counting them in `dbwarden_approvals_total`.
    pub fn new(client: kube::Client, namespace: &str, metrics: Arc<Metrics>) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            metrics,
            audit: Arc::default(),
        }
    }

    /// Records `approval.requested` and `approval.decided` events with `audit` from now on.
    pub fn attach_audit(&self, audit: Arc<SidecarAudit>) {
        let _ = self.audit.set(audit);
    }

    /// Counts a request reaching `phase` and audits it (`decided_by` for decisions).
    fn seen(
        &self,
        ask: &ApprovalAsk,
        request: &str,
        phase: MetricPhase,
        decided_by: Option<String>,
    ) {
        self.metrics.approval(phase);
        if let Some(audit) = self.audit.get() {
            let kind = if phase == MetricPhase::Pending {
                Kind::ApprovalRequested
            } else {
                Kind::ApprovalDecided
            };
            audit.approval(
                kind,
                &ask.identity,
                &ask.database,
                &ask.needed.rule,
                Approval {
                    request: request.to_owned(),
                    phase,
                    decided_by,
                },
            );
        }
    }

    async fn decide(self, ask: ApprovalAsk) -> Verdict {
        match self.try_decide(&ask).await {
            Ok(verdict) => verdict,
            Err(error) => {
                tracing::error!(error = %error, policy = %ask.policy, "approval request failed");
                deny(format!(
                    "statement needs approval (rule {:?} of policy {}), but the approval request could not be handled: {error}; it did not run",
                    &*ask.needed.rule, ask.policy
                ))
            }
        }
    }

    async fn try_decide(&self, ask: &ApprovalAsk) -> Result<Verdict, kube::Error> {
        let key = request_key(ask);
        let now = Timestamp::now();
        let mut found = self
            .api
            .list(&ListParams::default().labels(&format!("{REQUEST_KEY_LABEL}={key}")))
            .await?
            .items;
        found.retain(|ar| same_statement(ar, ask) && ar.spec.expires_at.0 > now);
        found.sort_by_key(|ar| ar.creation_timestamp());
        if let Some(approved) = found.iter().find(|ar| phase(ar) == ApprovalPhase::Approved) {
            return Ok(self.execute(ask, approved).await);
        }
        let request = match found
            .into_iter()
            .find(|ar| phase(ar) == ApprovalPhase::Pending)
        {
            Some(pending) => {
                tracing::info!(request = %pending.name_any(), "statement matches a pending approval request");
                pending
            }
            None => self.file(ask, &key, now).await?,
        };
        let name = request.name_any();
        Ok(match ask.needed.mode {
            ApprovalMode::Reject => deny(format!(
                "statement needs approval (rule {:?} of policy {}): requested as ApprovalRequest {name} (kubectl get ar -n {} {name}); run it again once it is approved",
                &*ask.needed.rule, ask.policy, self.namespace
            )),
            ApprovalMode::Hold => self.wait(ask, &name).await,
        })
    }

    /// Creates the request.
    async fn file(
        &self,
        ask: &ApprovalAsk,
        key: &str,
        now: Timestamp,
    ) -> Result<ApprovalRequest, kube::Error> {
        let expires = now.checked_add(ask.needed.ttl).unwrap_or(Timestamp::MAX);
        let spec = request_spec(ask, Time(whole_second_after(expires)));
        let mut request = ApprovalRequest::new("", spec);
        request.metadata.name = None;
        request.metadata.generate_name = Some(generate_name(ask));
        request
            .metadata
            .labels
            .get_or_insert_default()
            .insert(REQUEST_KEY_LABEL.into(), key.into());
        let created = self.api.create(&PostParams::default(), &request).await?;
        self.seen(ask, &created.name_any(), MetricPhase::Pending, None);
        tracing::info!(
            request = %created.name_any(), policy = %ask.policy, rule = %ask.needed.rule,
            "approval request filed"
        );
        Ok(created)
    }

    /// Watches the request until it is decided, expires, or `timeout` passes.
    async fn wait(&self, ask: &ApprovalAsk, name: &str) -> Verdict {
        let timeout = ask.needed.hold_timeout;
        let decided =
            |ar: Option<&ApprovalRequest>| ar.is_none_or(|ar| phase(ar) != ApprovalPhase::Pending);
        let outcome =
            tokio::time::timeout(timeout, await_condition(self.api.clone(), name, decided)).await;
        let request = match outcome {
            Err(_) => {
                return deny(format!(
                    "no decision on ApprovalRequest {name} within the hold timeout ({}s); the request stays pending and this statement will not run; run it again once it is approved",
                    timeout.as_secs()
                ));
            }
            Ok(Err(error)) => {
                return deny(format!(
                    "lost track of ApprovalRequest {name} ({error}); the statement did not run"
                ));
            }
            Ok(Ok(None)) => {
                return deny(format!(
                    "ApprovalRequest {name} was deleted; the statement did not run"
                ));
            }
            Ok(Ok(Some(request))) => request,
        };
        match phase(&request) {
            ApprovalPhase::Approved => self.execute(ask, &request).await,
            ApprovalPhase::Denied => {
                let denier = request.status.as_ref().and_then(|s| {
                    s.decisions
                        .iter()
                        .find(|d| d.decision == DecisionKind::Deny)
                });
                self.seen(
                    ask,
                    name,
                    MetricPhase::Rejected,
                    denier.map(|d| d.by.clone()),
                );
                let by = denier
                    .map(|d| match &d.comment {
                        Some(comment) => format!("{} ({comment})", d.by),
                        None => d.by.clone(),
                    })
                    .unwrap_or_else(|| "an approver".into());
                deny(format!(
                    "ApprovalRequest {name} was denied by {by}; the statement did not run"
                ))
            }
            ApprovalPhase::Expired => {
                self.seen(ask, name, MetricPhase::Expired, None);
                deny(format!(
                    "ApprovalRequest {name} expired before it was approved; the statement did not run"
                ))
            }
            other => deny(format!(
                "ApprovalRequest {name} is {other:?}; the statement did not run"
            )),
        }
    }

    /// Marks an approved request `Executed`; the statement runs only if that succeeded.
    async fn execute(&self, ask: &ApprovalAsk, request: &ApprovalRequest) -> Verdict {
        let name = request.name_any();
        let patch = serde_json::json!({"status": {"phase": "Executed"}});
        match self
            .api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                let approvers: Vec<&str> = request
                    .status
                    .as_ref()
                    .map(|s| {
                        s.decisions
                            .iter()
                            .filter(|d| d.decision == DecisionKind::Approve)
                            .map(|d| d.by.as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                self.seen(
                    ask,
                    &name,
                    MetricPhase::Approved,
                    Some(approvers.join(", ")),
                );
                tracing::info!(request = %name, "approved statement runs; request marked Executed");
                Verdict::Allow
            }
            Err(error) => {
                tracing::error!(request = %name, error = %error, "could not mark the request Executed");
                deny(format!(
                    "ApprovalRequest {name} is approved but could not be marked Executed ({error}); the statement did not run"
                ))
            }
        }
    }
}

impl ApprovalDesk for KubeApprovals {
    fn submit(&self, ask: ApprovalAsk) -> Hold {
        Hold(Box::pin(self.clone().decide(ask)))
    }
}

fn deny(message: String) -> Verdict {
    Verdict::Deny(Denial::new(message))
}

fn phase(request: &ApprovalRequest) -> ApprovalPhase {
    request.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// The requester as approvers see it: the end user, or the pod's ServiceAccount.
fn requester(ask: &ApprovalAsk) -> Requester {
    let account = &ask.identity.service_account;
    let (user, groups) = match &ask.identity.end_user {
        Some(user) => (user.username.clone(), user.groups.clone()),
        None => (
            format!(
                "system:serviceaccount:{}:{}",
                account.namespace, account.name
            ),
            Vec::new(),
        ),
    };
    Requester {
        user,
        groups,
        service_account: Some(format!("{}/{}", account.namespace, account.name)),
        pod: ask.identity.pod.clone(),
    }
}

/// Hex SHA-256 (first 40 characters, a label value) of what makes two asks the same request.
fn request_key(ask: &ApprovalAsk) -> String {
    let requester = requester(ask);
    let mut hash = Sha256::new();
    for part in [
        ask.policy.as_str(),
        &ask.needed.rule,
        &ask.needed.fingerprint,
        &requester.user,
        requester.service_account.as_deref().unwrap_or_default(),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    digest.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

/// True when a listed request is really for this ask (the label is a hash prefix).
fn same_statement(request: &ApprovalRequest, ask: &ApprovalAsk) -> bool {
    let spec = &request.spec;
    spec.policy == policy_name(&ask.policy)
        && spec.rule == *ask.needed.rule
        && spec.fingerprint == ask.needed.fingerprint
        && spec.requester.user == requester(ask).user
}

/// `namespace/name` -> `name` (requests live in the policy's namespace).
fn policy_name(policy: &str) -> &str {
    policy.rsplit_once('/').map_or(policy, |(_, name)| name)
}

fn generate_name(ask: &ApprovalAsk) -> String {
    let mut prefix = format!("{}-{}", policy_name(&ask.policy), ask.needed.rule);
    // Room for the API server's five random characters within 63 (a readable, valid name).
    prefix.truncate(57);
    let prefix = prefix.trim_end_matches(['-', '.']);
    format!("{prefix}-")
}

/// `at` rounded up to a whole second. The API server keeps timestamps in whole seconds and
/// drops the fraction, which would make a request expire up to a second before its ttl.
fn whole_second_after(at: Timestamp) -> Timestamp {
    let ceil = TimestampRound::new()
        .smallest(Unit::Second)
        .mode(RoundMode::Ceil);
    at.round(ceil).unwrap_or(at)
}

fn request_spec(ask: &ApprovalAsk, expires_at: Time) -> ApprovalRequestSpec {
    let statement = match &ask.statement {
        Some(text) => truncate(text, MAX_STATEMENT),
        None => "(statement text not recorded: the policy's audit.statementText is none)".into(),
    };
    let mut tables: Vec<String> = ask.needed.tables.iter().map(|t| qualified(t)).collect();
    tables.sort();
    tables.dedup();
    tables.truncate(MAX_TABLES);
    ApprovalRequestSpec {
        policy: policy_name(&ask.policy).to_owned(),
        rule: ask.needed.rule.to_string(),
        database: ask.database.clone(),
        environment: ask.environment.clone(),
        requester: requester(ask),
        statement,
        fingerprint: ask.needed.fingerprint.clone(),
        operation: ask.needed.operation,
        tables,
        reason: ask.reason.clone(),
        expires_at,
    }
}

/// `orders` -> `public.orders` (the default search path); `db.s.t` -> `s.t`.
fn qualified(table: &str) -> String {
    let parts: Vec<&str> = table.split('.').collect();
    let mut name = match parts.as_slice() {
        [table] => format!("public.{table}"),
        [.., schema, table] => format!("{schema}.{table}"),
        [] => String::new(),
    };
    name.truncate(130);
    name
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn expiry_is_rounded_up_to_the_whole_second_the_api_server_keeps() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(
            whole_second_after(at("2026-12-06T14:16:07.990Z")),
            at("2026-12-06T14:16:08Z")
        );
        assert_eq!(
            whole_second_after(at("2026-12-06T14:16:07Z")),
            at("2026-12-06T14:16:07Z")
        );
    }

    #[test]
    fn tables_are_schema_qualified_and_long_text_is_cut_at_a_character() {
        assert_eq!(qualified("orders"), "public.orders");
        assert_eq!(qualified("billing.invoices"), "billing.invoices");
        assert_eq!(qualified("app.billing.invoices"), "billing.invoices");
        let text = "é".repeat(10);
        assert_eq!(truncate(&text, 5), "éé");
    }
}
