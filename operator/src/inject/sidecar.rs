//! The injected sidecar container and its volumes.
//!
//! The contract with `dbwarden-sidecar --kubernetes`, all through environment variables:
//!
//! | variable | value |
//! | --- | --- |
//! | `DBWARDEN_POD_NAME`, `DBWARDEN_POD_NAMESPACE`, `DBWARDEN_POD_UID` | downward API |
//! | `DBWARDEN_SERVICE_ACCOUNT` | the pod's `spec.serviceAccountName` (downward API) |
//! | `DBWARDEN_POD_LABELS_FILE` | the pod's labels (downward API volume), to match `workloadSelector` |
//! | `DBWARDEN_POLICIES` | the policies that selected the pod at admission, comma-separated |
//! | `DBWARDEN_SECRETS_DIR` | every Secret the policies name, mounted at `<dir>/<secret name>/<key>` |
//! | `DBWARDEN_SPOOL_DIR` | a writable folder for the audit spool |
//! | `DBWARDEN_HEALTH_ADDR` | where `/healthz` and `/readyz` listen, for the probes |

use std::collections::BTreeSet;

use dbwarden_crds::DatabaseAccessPolicy;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, Probe,
    SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{InjectSettings, Overrides};

/// The injected container's name.
pub const CONTAINER_NAME: &str = "dbwarden-sidecar";
/// Where the Secrets named by the policies are mounted.
pub const SECRETS_DIR: &str = "/var/run/dbwarden/secrets";
/// Where the pod's labels file is mounted.
pub const PODINFO_DIR: &str = "/etc/dbwarden/podinfo";
/// The writable audit spool.
pub const SPOOL_DIR: &str = "/var/lib/dbwarden/spool";
/// The unprivileged user the sidecar runs as.
const RUN_AS: i64 = 65532;

/// The sidecar container for `policies`, and the volumes it mounts.
pub(super) fn container(
    policies: &[&DatabaseAccessPolicy],
    settings: &InjectSettings,
    overrides: &Overrides,
) -> (Container, Vec<Volume>) {
    let mut volumes = vec![
        Volume {
            name: "dbwarden-podinfo".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: "labels".into(),
                    field_ref: Some(field("metadata.labels")),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "dbwarden-spool".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("256Mi".into())),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        mount("dbwarden-podinfo", PODINFO_DIR, true),
        mount("dbwarden-spool", SPOOL_DIR, false),
    ];
    for (index, secret) in secrets(policies).into_iter().enumerate() {
        let name = format!("dbwarden-secret-{index}");
        mounts.push(mount(&name, &format!("{SECRETS_DIR}/{secret}"), true));
        volumes.push(Volume {
            name,
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    let health = IntOrString::Int(settings.health_port);
    let probe = |path: &str, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: health.clone(),
            ..Default::default()
        }),
        period_seconds: Some(1),
        failure_threshold: Some(failures),
        ..Default::default()
    };
    let mut resources = settings.resources.clone();
    if let Some(cpu) = &overrides.cpu {
        resources
            .requests
            .get_or_insert_with(Default::default)
            .insert("cpu".into(), cpu.clone());
    }
    if let Some(memory) = &overrides.memory {
        resources
            .requests
            .get_or_insert_with(Default::default)
            .insert("memory".into(), memory.clone());
        resources
            .limits
            .get_or_insert_with(Default::default)
            .insert("memory".into(), memory.clone());
    }
    let policy_names: Vec<String> = policies.iter().map(|p| p.name_any()).collect();
    let env = vec![
        from_field("DBWARDEN_POD_NAME", "metadata.name"),
        from_field("DBWARDEN_POD_NAMESPACE", "metadata.namespace"),
        from_field("DBWARDEN_POD_UID", "metadata.uid"),
        from_field("DBWARDEN_SERVICE_ACCOUNT", "spec.serviceAccountName"),
        value("DBWARDEN_POD_LABELS_FILE", &format!("{PODINFO_DIR}/labels")),
        value("DBWARDEN_POLICIES", &policy_names.join(",")),
        value("DBWARDEN_SECRETS_DIR", SECRETS_DIR),
        value("DBWARDEN_SPOOL_DIR", SPOOL_DIR),
        value(
            "DBWARDEN_HEALTH_ADDR",
            &format!("0.0.0.0:{}", settings.health_port),
        ),
    ];
    let mut ports: Vec<ContainerPort> = policies
        .iter()
        .map(|p| ContainerPort {
            container_port: p.spec.listen_port,
            ..Default::default()
        })
        .collect();
    ports.push(ContainerPort {
        name: Some("dbwarden-health".into()),
        container_port: settings.health_port,
        ..Default::default()
    });

    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(
            overrides
                .image
                .clone()
                .unwrap_or_else(|| settings.image.clone()),
        ),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        args: Some(vec!["--kubernetes".into()]),
        env: Some(env),
        ports: Some(ports),
        resources: Some(resources),
        volume_mounts: Some(mounts),
        // Native sidecar: started before, and stopped after, the app containers.
        restart_policy: settings.native_sidecar.then(|| "Always".to_string()),
        // The app starts only once policies are loaded (readyz), so its first query is governed.
        startup_probe: Some(probe("/readyz", 60)),
        readiness_probe: Some(probe("/readyz", 3)),
        liveness_probe: Some(probe("/healthz", 10)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    (container, volumes)
}

/// Every Secret the policies name, once each, sorted.
fn secrets(policies: &[&DatabaseAccessPolicy]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for policy in policies {
        let spec = &policy.spec;
        names.insert(spec.database.credentials_secret_ref.name.clone());
        names.extend(
            spec.database
                .tls
                .ca_secret_ref
                .as_ref()
                .map(|s| s.name.clone()),
        );
        names.extend(
            spec.masking
                .as_ref()
                .and_then(|m| m.hash_key_secret_ref.as_ref())
                .map(|s| s.name.clone()),
        );
        names.extend(
            spec.audit
                .as_ref()
                .and_then(|a| a.bearer_token_secret_ref.as_ref())
                .map(|s| s.name.clone()),
        );
    }
    names
}

fn field(path: &str) -> ObjectFieldSelector {
    ObjectFieldSelector {
        field_path: path.into(),
        api_version: None,
    }
}

fn from_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(field(path)),
            ..Default::default()
        }),
    }
}

fn value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    }
}
