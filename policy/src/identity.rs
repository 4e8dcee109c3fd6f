//! Who is connected: the pod's ServiceAccount, and optionally the end user behind it.
//!
//! The sidecar establishes an [`Identity`] once per connection (the ServiceAccount from the pod's
//! environment, the end user from a validated JWT) and hands it to every decision. Matching follows
//! the `Subjects` semantics of `docs/resources.md`:
//!
//! - `users` match the end user's name exactly (case-sensitive), and only when a token was given;
//! - `groups` match any of the end user's groups exactly, and only when a token was given;
//! - `serviceAccounts` (`name`, meaning the policy's namespace, or `namespace/name`) match the pod's
//!   ServiceAccount, and only when the client presented **no** end-user token: once a person is
//!   known, the statement is theirs, and the workload's own grants must not widen what they may do.

use std::fmt;

/// A Kubernetes ServiceAccount, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceAccount {
    /// Namespace of the ServiceAccount (the pod's namespace).
    pub namespace: String,
    /// Name of the ServiceAccount.
    pub name: String,
}

impl ServiceAccount {
    /// A ServiceAccount `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// True when a `subjects.serviceAccounts` entry (`name` or `namespace/name`) names this
    /// account; a bare `name` means the policy's own namespace.
    pub fn matches_entry(&self, entry: &str, policy_namespace: &str) -> bool {
        match entry.split_once('/') {
            Some((namespace, name)) => namespace == self.namespace && name == self.name,
            None => policy_namespace == self.namespace && entry == self.name,
        }
    }
}

impl fmt::Display for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A person (or agent) authenticated by an end-user token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndUser {
    /// The token's username claim.
    pub username: String,
    /// The token's groups claim.
    pub groups: Vec<String>,
}

/// Everything the policy knows about one connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The connecting pod's ServiceAccount.
    pub service_account: ServiceAccount,
    /// The end user, when the client presented a valid token.
    pub end_user: Option<EndUser>,
    /// The connecting pod's name, for audit and approval requests.
    pub pod: Option<String>,
}

impl Identity {
    /// A connection without an end-user token.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            service_account: ServiceAccount::new(namespace, name),
            end_user: None,
            pod: None,
        }
    }

    /// A connection with an end-user token, from a pod running as `namespace/name`.
    pub fn user<const N: usize>(
        namespace: &str,
        service_account: &str,
        username: &str,
        groups: [&str; N],
    ) -> Self {
        Self {
            service_account: ServiceAccount::new(namespace, service_account),
            end_user: Some(EndUser {
                username: username.into(),
                groups: groups.map(String::from).to_vec(),
            }),
            pod: None,
        }
    }

    /// The same identity, recording the pod name.
    pub fn with_pod(mut self, pod: impl Into<String>) -> Self {
        self.pod = Some(pod.into());
        self
    }

    /// The name recorded as requester: the end user, or `system:serviceaccount:NAMESPACE:NAME`.
    pub fn principal(&self) -> String {
        match &self.end_user {
            Some(user) => user.username.clone(),
            None => format!(
                "system:serviceaccount:{}:{}",
                self.service_account.namespace, self.service_account.name
            ),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.end_user {
            Some(user) => write!(f, "user {:?}", user.username),
            None => write!(f, "serviceaccount {}", self.service_account),
        }
    }
}

/// A compiled `Subjects`: whom a rule, or the masking exemption, is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SubjectSet {
    users: Vec<String>,
    groups: Vec<String>,
    /// `(namespace, name)`, with bare names resolved to the policy's namespace at compile time.
    service_accounts: Vec<(String, String)>,
}

impl SubjectSet {
    /// Compiles `subjects` for a policy living in `policy_namespace`.
    pub(crate) fn new(subjects: &dbwarden_crds::Subjects, policy_namespace: &str) -> Self {
        Self {
            users: subjects.users.clone(),
            groups: subjects.groups.clone(),
            service_accounts: subjects
                .service_accounts
                .iter()
                .map(|entry| match entry.split_once('/') {
                    Some((namespace, name)) => (namespace.to_owned(), name.to_owned()),
                    None => (policy_namespace.to_owned(), entry.clone()),
                })
                .collect(),
        }
    }

    /// True when any entry names this identity (see the module doc).
    pub(crate) fn matches(&self, identity: &Identity) -> bool {
        match &identity.end_user {
            Some(user) => {
                self.users.contains(&user.username)
                    || self
                        .groups
                        .iter()
                        .any(|g| user.groups.iter().any(|ug| ug == g))
            }
            None => self.service_accounts.iter().any(|(namespace, name)| {
                *namespace == identity.service_account.namespace
                    && *name == identity.service_account.name
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbwarden_crds::Subjects;

    #[test]
    fn service_accounts_match_bare_names_in_the_policy_namespace_only() {
        let set = SubjectSet::new(&Subjects::service_accounts(["api", "ops/backup"]), "shop");
        assert!(set.matches(&Identity::service_account("shop", "api")));
        assert!(!set.matches(&Identity::service_account("other", "api")));
        assert!(set.matches(&Identity::service_account("ops", "backup")));
        assert!(!set.matches(&Identity::service_account("shop", "backup")));
    }

    #[test]
    fn a_token_replaces_the_service_account() {
        let set = SubjectSet::new(&Subjects::service_accounts(["api"]), "shop");
        assert!(!set.matches(&Identity::user("shop", "api", "alice", [])));
        let set = SubjectSet::new(&Subjects::groups(["dba"]), "shop");
        assert!(set.matches(&Identity::user("shop", "api", "alice", ["dev", "dba"])));
        assert!(!set.matches(&Identity::user("shop", "api", "alice", ["DBA"])));
        assert!(!set.matches(&Identity::service_account("shop", "dba")));
        let set = SubjectSet::new(&Subjects::users(["alice"]), "shop");
        assert!(set.matches(&Identity::user("shop", "api", "alice", [])));
        assert!(!set.matches(&Identity::user("shop", "api", "Alice", [])));
    }

    #[test]
    fn entry_matching_helper_agrees() {
        let sa = ServiceAccount::new("shop", "api");
        assert!(sa.matches_entry("api", "shop"));
        assert!(sa.matches_entry("shop/api", "elsewhere"));
        assert!(!sa.matches_entry("api", "elsewhere"));
    }
}
