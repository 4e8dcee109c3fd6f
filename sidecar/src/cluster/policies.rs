//! Policies from the API server: a watch on the pod's namespace; the policies whose
//! `workloadSelector` matches this pod are compiled into the [`PolicySet`] in force.
//!
//! Fail closed: until the first complete list the hooks refuse everything (they start
//! empty); a policy that stops compiling keeps its last good version in force; a policy that
//! never compiled refuses every statement on its database (leaving it out would loosen the
//! rules, since every applicable policy must allow a statement).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use dbwarden_crds::DatabaseAccessPolicy;
use dbwarden_crds::policy::Identity;
use dbwarden_policy::CompiledPolicy;
use futures::StreamExt;
use kube::core::{Selector, SelectorExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use tokio::sync::oneshot;

use crate::enforce::load::compile_resource;
use crate::enforce::{EnforcingHooks, PolicySet};

/// One policy as put in force: its database, the compiled rules and its `spec.identity`.
#[derive(Debug, Clone)]
struct Compiled {
    database: String,
    policy: Arc<CompiledPolicy>,
    identity: Option<Identity>,
}

/// The namespace's policies and what was last compiled from each.
#[derive(Debug)]
pub struct Selection {
    labels: BTreeMap<String, String>,
    /// The mounted Secrets (`hash` keys of masking policies).
    secrets_dir: Option<PathBuf>,
    objects: BTreeMap<String, DatabaseAccessPolicy>,
    /// By policy name: the last version that compiled.
    last_good: HashMap<String, Compiled>,
}

impl Selection {
    /// An empty selection for a pod with `labels`, whose Secrets are under `secrets_dir`.
    pub fn new(labels: BTreeMap<String, String>, secrets_dir: Option<PathBuf>) -> Self {
        Self {
            labels,
            secrets_dir,
            objects: BTreeMap::new(),
            last_good: HashMap::new(),
        }
    }

    /// Every policy in the namespace, by name.
    pub fn objects(&self) -> &BTreeMap<String, DatabaseAccessPolicy> {
        &self.objects
    }

    /// True when `policy` selects this pod. An invalid selector selects nothing (the operator's
    /// admission webhook refuses such policies).
    pub fn selects(&self, policy: &DatabaseAccessPolicy) -> bool {
        Selector::try_from(policy.spec.workload_selector.clone())
            .is_ok_and(|selector| selector.matches(&self.labels))
    }

    /// Replaces every object (after a complete list).
    pub fn reset(&mut self, objects: BTreeMap<String, DatabaseAccessPolicy>) {
        self.objects = objects;
    }

    /// Adds or updates one object.
    pub fn apply(&mut self, policy: DatabaseAccessPolicy) {
        self.objects.insert(policy.name_any(), policy);
    }

    /// Removes one object.
    pub fn delete(&mut self, policy: &DatabaseAccessPolicy) {
        self.objects.remove(&policy.name_any());
    }

    /// Compiles the policies that select this pod into the set to put in force.
    pub fn compile(&mut self) -> PolicySet {
        let mut set = PolicySet::default();
        let mut kept = HashMap::new();
        for (name, object) in &self.objects {
            if !self.selects(object) {
                continue;
            }
            let compiled = match compile_resource(object, self.secrets_dir.as_deref()) {
                Ok((database, policy)) => Compiled {
                    database,
                    policy: Arc::new(policy),
                    identity: object.spec.identity.clone(),
                },
                Err(error) => match self.last_good.get(name) {
                    Some(last) => {
                        tracing::error!(
                            policy = %name, error = %error, label = error.label(),
                            "policy update cannot be enforced: its last good version stays in force"
                        );
                        last.clone()
                    }
                    None => {
                        let database = object.spec.database.name.clone();
                        tracing::error!(
                            policy = %name, %database, error = %error, label = error.label(),
                            "policy cannot be enforced: every statement on its database is refused"
                        );
                        set.refuse(
                            database,
                            format!(
                                "dbwarden policy {name} cannot be enforced ({error}); every statement on this database is refused until it is fixed"
                            ),
                        );
                        continue;
                    }
                },
            };
            set.insert(
                compiled.database.clone(),
                compiled.policy.clone(),
                compiled.identity.clone(),
            );
            kept.insert(name.clone(), compiled);
        }
        self.last_good = kept;
        set
    }
}

/// Watches the namespace's policies and keeps `hooks` current. The first complete list is sent
/// on `first` (the sidecar opens its listeners from it). Runs until the task is dropped; watch
/// errors are retried with backoff while the policies in force stay.
pub async fn watch(
    api: Api<DatabaseAccessPolicy>,
    mut selection: Selection,
    hooks: EnforcingHooks,
    first: oneshot::Sender<BTreeMap<String, DatabaseAccessPolicy>>,
) {
    let mut first = Some(first);
    let mut listing = BTreeMap::new();
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let changed = match event {
            Ok(Event::Init) => {
                listing.clear();
                false
            }
            Ok(Event::InitApply(policy)) => {
                listing.insert(policy.name_any(), policy);
                false
            }
            Ok(Event::InitDone) => {
                selection.reset(std::mem::take(&mut listing));
                true
            }
            Ok(Event::Apply(policy)) => {
                selection.apply(policy);
                true
            }
            Ok(Event::Delete(policy)) => {
                selection.delete(&policy);
                true
            }
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    "watching DatabaseAccessPolicies failed; retrying, the policies in force stay"
                );
                false
            }
        };
        if !changed {
            continue;
        }
        let set = selection.compile();
        tracing::info!(
            policies = set.len(),
            databases = ?set.databases().collect::<Vec<_>>(),
            "policies in force updated from the API server"
        );
        hooks.replace(set);
        if let Some(first) = first.take() {
            let _ = first.send(selection.objects().clone());
        }
    }
}

fn watcher(
    api: Api<DatabaseAccessPolicy>,
    config: watcher::Config,
) -> impl futures::Stream<Item = watcher::Result<Event<DatabaseAccessPolicy>>> {
    watcher::watcher(api, config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use dbwarden_crds::{DatabaseAccessPolicySpec, Operation, Subjects};

    use super::*;

    fn policy(name: &str, app: &str, database: &str, table: &str) -> DatabaseAccessPolicy {
        let mut spec = DatabaseAccessPolicySpec::builder()
            .database("db.example", 5432, database)
            .allow(
                "read",
                Subjects::service_accounts(["api"]),
                [Operation::Select],
                [table],
            )
            .build();
        spec.workload_selector.match_labels = Some([("app".to_string(), app.to_string())].into());
        let mut policy = DatabaseAccessPolicy::new(name, spec);
        policy.metadata.namespace = Some("shop".into());
        policy
    }

    fn selection() -> Selection {
        Selection::new([("app".to_string(), "api".to_string())].into(), None)
    }

    #[test]
    fn only_policies_selecting_the_pod_are_in_force() {
        let mut selection = selection();
        selection.apply(policy("mine", "api", "app", "public.*"));
        selection.apply(policy("theirs", "web", "other", "public.*"));
        let set = selection.compile();
        assert_eq!(set.len(), 1);
        assert_eq!(set.for_database("app")[0].name(), "shop/mine");
        assert!(set.for_database("other").is_empty());
    }

    #[test]
    fn a_broken_update_keeps_the_last_good_version_and_a_broken_new_policy_refuses_its_database() {
        let mut selection = selection();
        selection.apply(policy("mine", "api", "app", "public.*"));
        assert_eq!(selection.compile().len(), 1);

        // The same policy, now with a table pattern the engine refuses.
        selection.apply(policy("mine", "api", "app", "not a pattern!"));
        let set = selection.compile();
        assert_eq!(set.for_database("app").len(), 1, "last good version stays");

        selection.apply(policy("new", "api", "ledger", "not a pattern!"));
        let set = selection.compile();
        assert!(set.for_database("ledger").is_empty());
        assert!(set.refusal("ledger").unwrap().contains("new"));

        selection.delete(&policy("mine", "api", "app", "public.*"));
        assert!(selection.compile().for_database("app").is_empty());
    }
}
