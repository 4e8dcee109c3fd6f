//! The DatabaseAccessPolicy controller: validates each policy with the shared semantic
//! validator, counts the pods it selects, and reports both in `status` (the `Ready` condition,
//! `observedGeneration`, `selectedPods`) and in Events.
//!
//! It reads pods (to count them) but never Secrets: whether the credentials Secret exists is
//! the sidecar's to report, so the operator needs no cluster-wide read access to secrets.

mod status;

use std::sync::Arc;
use std::time::Duration;

use dbwarden_crds::{DatabaseAccessPolicy, DatabaseAccessPolicyStatus};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::{Context, Error, MANAGER, conditions};

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "policy";

/// How often a policy is looked at again without any change, to refresh its pod count.
const RESYNC: Duration = Duration::from_secs(300);

/// Runs the controller until `shutdown` completes.
pub async fn run(ctx: Context, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let policies: Api<DatabaseAccessPolicy> = Api::all(ctx.client.clone());
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let controller = Controller::new(policies, watcher::Config::default().any_semantic());
    let store = controller.store();
    controller
        // A pod that comes or goes changes the count of every policy selecting it.
        .watches(pods, watcher::Config::default(), move |pod| {
            selecting(&store, &pod)
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "policy reconcile did not complete");
            }
        })
        .await;
}

/// The policies in `pod`'s namespace whose workload selector matches its labels.
fn selecting(
    store: &Store<DatabaseAccessPolicy>,
    pod: &Pod,
) -> Vec<ObjectRef<DatabaseAccessPolicy>> {
    let namespace = pod.namespace();
    store
        .state()
        .iter()
        .filter(|policy| policy.namespace() == namespace)
        .filter(|policy| {
            Selector::try_from(policy.spec.workload_selector.clone())
                .is_ok_and(|selector| selector.matches(pod.labels()))
        })
        .map(|policy| ObjectRef::from_obj(policy.as_ref()))
        .collect()
}

async fn reconcile(policy: Arc<DatabaseAccessPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let name = policy.name_any();
    let namespace = policy.namespace().ok_or_else(|| Error::MissingNamespace {
        kind: "DatabaseAccessPolicy",
        name: name.clone(),
    })?;
    let verdict = status::judge(&namespace, &policy);
    let selected = match &verdict.selector {
        Some(selector) => Some(count_selected(&ctx.client, &namespace, selector).await?),
        None => None,
    };
    let previous = policy.status.clone().unwrap_or_default();
    let next = DatabaseAccessPolicyStatus {
        conditions: conditions::merge(
            &previous.conditions,
            verdict.condition(policy.metadata.generation),
        ),
        observed_generation: policy.metadata.generation,
        selected_pods: selected,
    };
    if next != previous {
        let api: Api<DatabaseAccessPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({
            "apiVersion": DatabaseAccessPolicy::api_version(&()),
            "kind": DatabaseAccessPolicy::kind(&()),
            "status": next,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await?;
        tracing::info!(policy = %name, %namespace, ready = verdict.ready, reason = verdict.reason, "status updated");
    }
    let was_ready = previous
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY)
        .map(|c| c.status == "True");
    if was_ready != Some(verdict.ready) {
        publish(&ctx, &policy, &verdict).await;
    }
    Ok(Action::requeue(RESYNC))
}

/// Events are a courtesy to people: failing to publish one must not fail the reconcile.
async fn publish(ctx: &Context, policy: &DatabaseAccessPolicy, verdict: &status::Verdict) {
    let event = Event {
        type_: if verdict.ready {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: verdict.reason.into(),
        note: Some(verdict.message.chars().take(1024).collect()),
        action: "Validate".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &policy.object_ref(&())).await {
        tracing::warn!(%error, policy = %policy.name_any(), "publishing an event failed");
    }
}

/// Pods matching `selector` in `namespace` that are not finished or being deleted.
async fn count_selected(
    client: &kube::Client,
    namespace: &str,
    selector: &Selector,
) -> Result<i32, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels_from(selector))
        .await?;
    let live = list
        .items
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .count();
    Ok(i32::try_from(live).unwrap_or(i32::MAX))
}

fn error_policy(policy: Arc<DatabaseAccessPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(CONTROLLER, error);
    tracing::warn!(policy = %policy.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(15))
}
