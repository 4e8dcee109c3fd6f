//! The ApprovalRequest controller: expires requests whose time is up, reports each one's state
//! in a `Decided` condition, publishes an Event at every step (requested, approved by, denied by,
//! expired, executed), and deletes decided requests once the retention period has passed.

use std::sync::Arc;
use std::time::Duration;

use dbwarden_crds::{ApprovalPhase, ApprovalRequest, ApprovalRequestStatus, DecisionKind};
use futures::StreamExt;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::notify::Notifier;
use crate::{Context, Error, MANAGER, conditions};

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "approval";
/// The condition that says whether a request is decided, with the step as its reason.
pub const DECIDED: &str = "Decided";

struct Shared {
    ctx: Context,
    retention: Duration,
    notifier: Option<Notifier>,
}

/// Runs the controller until `shutdown` completes; decided requests are deleted `retention`
/// after they were decided; new requests are announced through `notifier`, if any.
pub async fn run(
    ctx: Context,
    retention: Duration,
    notifier: Option<Notifier>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let requests: Api<ApprovalRequest> = Api::all(ctx.client.clone());
    Controller::new(requests, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            error_policy,
            Arc::new(Shared {
                ctx,
                retention,
                notifier,
            }),
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "approval reconcile did not complete");
            }
        })
        .await;
}

async fn reconcile(request: Arc<ApprovalRequest>, shared: Arc<Shared>) -> Result<Action, Error> {
    let ctx = &shared.ctx;
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let name = request.name_any();
    let namespace = request.namespace().ok_or_else(|| Error::MissingNamespace {
        kind: "ApprovalRequest",
        name: name.clone(),
    })?;
    let api: Api<ApprovalRequest> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = Timestamp::now();
    let mut status = request.status.clone().unwrap_or_default();
    let expires = request.spec.expires_at.0;
    let open = matches!(
        status.phase,
        ApprovalPhase::Pending | ApprovalPhase::Approved
    );
    if open && expires <= now {
        status.phase = ApprovalPhase::Expired;
    }

    let step = Step::of(&request, &status);
    let previous = status
        .conditions
        .iter()
        .find(|c| c.type_ == DECIDED)
        .cloned();
    let decided = !matches!(status.phase, ApprovalPhase::Pending);
    let condition = conditions::new(
        DECIDED,
        decided,
        step.reason,
        step.message.clone(),
        request.metadata.generation,
    );
    let merged = conditions::merge(&status.conditions, condition);

    if decided && !open {
        // Decided earlier: delete once the retention period has passed.
        let since = previous
            .as_ref()
            .map(|c| c.last_transition_time.0)
            .unwrap_or(now);
        let keep = SignedDuration::try_from(shared.retention).unwrap_or(SignedDuration::MAX);
        let until = since.checked_add(keep).unwrap_or(Timestamp::MAX);
        if until <= now {
            api.delete(&name, &DeleteParams::default()).await?;
            tracing::info!(request = %name, %namespace, "deleted a decided request after its retention period");
            return Ok(Action::await_change());
        }
    }

    let expiring = status.phase != request.status.as_ref().map(|s| s.phase).unwrap_or_default();
    // A new request has no status yet: write its phase (Pending) so `kubectl get ar` shows it.
    let first = request.status.is_none();
    if expiring || first || merged != status.conditions {
        // The phase is sent only to start or expire a request: everything else about it is the people's
        // (through the webhook), and a stale copy must not overwrite their decision. A request
        // that moved on meanwhile (say, to Executed) is protected by the CRD's transition rule.
        let mut status_patch = serde_json::json!({ "conditions": merged });
        if expiring || first {
            status_patch["phase"] = serde_json::json!(status.phase);
        }
        let patch = serde_json::json!({
            "apiVersion": ApprovalRequest::api_version(&()),
            "kind": ApprovalRequest::kind(&()),
            "status": status_patch,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await?;
    }
    if previous.as_ref().map(|c| c.reason.as_str()) != Some(step.reason) {
        publish(ctx, &request, &step).await;
        tracing::info!(request = %name, %namespace, step = step.reason, message = %step.message, "approval request");
        if let (Some(notifier), ApprovalPhase::Pending) = (&shared.notifier, status.phase) {
            notifier.notify(
                format!("{namespace}/{name}"),
                format!(
                    "dbwarden: {} in {namespace}. To approve: kubectl patch ar {name} -n {namespace} --subresource=status --type=merge -p '{{\"status\":{{\"phase\":\"Approved\"}}}}' (or \"Denied\")",
                    step.message
                ),
            );
        }
    }

    let next = match status.phase {
        ApprovalPhase::Pending | ApprovalPhase::Approved => expires.duration_since(now),
        _ => SignedDuration::try_from(shared.retention).unwrap_or(SignedDuration::MAX),
    };
    Ok(Action::requeue(
        Duration::try_from(next)
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(1)),
    ))
}

/// What happened last to a request, for its condition and Event.
struct Step {
    reason: &'static str,
    message: String,
    warning: bool,
}

impl Step {
    fn of(request: &ApprovalRequest, status: &ApprovalRequestStatus) -> Self {
        let spec = &request.spec;
        let by = |kind: DecisionKind| -> String {
            let names: Vec<&str> = status
                .decisions
                .iter()
                .filter(|d| d.decision == kind)
                .map(|d| d.by.as_str())
                .collect();
            names.join(", ")
        };
        let (reason, message, warning) = match status.phase {
            ApprovalPhase::Pending => (
                "Requested",
                format!(
                    "{} asks to run {} on {} (rule {} of policy {}){}",
                    spec.requester.user,
                    spec.operation.label(),
                    if spec.tables.is_empty() {
                        spec.database.clone()
                    } else {
                        spec.tables.join(", ")
                    },
                    spec.rule,
                    spec.policy,
                    spec.reason
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                false,
            ),
            ApprovalPhase::Approved => (
                "Approved",
                format!("approved by {}", by(DecisionKind::Approve)),
                false,
            ),
            ApprovalPhase::Denied => (
                "Denied",
                format!("denied by {}", by(DecisionKind::Deny)),
                true,
            ),
            ApprovalPhase::Expired => (
                "Expired",
                format!("expired at {} before the statement ran", spec.expires_at.0),
                true,
            ),
            ApprovalPhase::Executed => (
                "Executed",
                format!("executed after approval by {}", by(DecisionKind::Approve)),
                false,
            ),
        };
        Self {
            reason,
            message,
            warning,
        }
    }
}

async fn publish(ctx: &Context, request: &ApprovalRequest, step: &Step) {
    let event = Event {
        type_: if step.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: step.reason.into(),
        note: Some(step.message.chars().take(1024).collect()),
        action: "Approval".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &request.object_ref(&())).await {
        tracing::warn!(%error, request = %request.name_any(), "publishing an event failed");
    }
}

fn error_policy(request: Arc<ApprovalRequest>, error: &Error, shared: Arc<Shared>) -> Action {
    shared.ctx.metrics.failure(CONTROLLER, error);
    tracing::warn!(request = %request.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(15))
}
