use std::collections::BTreeMap;

use dbwarden_crds::{DatabaseAccessPolicy, DatabaseAccessPolicySpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};
use kube::api::ObjectMeta;

use super::*;

fn pod(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Pod {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Pod {
        metadata: ObjectMeta {
            namespace: Some("payments".into()),
            generate_name: Some("reports-".into()),
            labels: Some(map(labels)),
            annotations: Some(map(annotations)),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("example.com/reports:1".into()),
                env: Some(vec![EnvVar {
                    name: "DBWARDEN_ORDERS_HOST".into(),
                    value: Some("kept-by-user".into()),
                    value_from: None,
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

fn policy(name: &str, port: i32) -> DatabaseAccessPolicy {
    let mut spec = DatabaseAccessPolicySpec::builder()
        .listen_port(port)
        .build();
    spec.workload_selector.match_labels = Some(BTreeMap::from([("app".into(), "reports".into())]));
    let mut policy = DatabaseAccessPolicy::new(name, spec);
    policy.metadata.namespace = Some("payments".into());
    policy
}

fn settings() -> InjectSettings {
    InjectSettings::new("example.com/dbwarden-sidecar:test")
}

fn injected(outcome: Outcome) -> Pod {
    match outcome {
        Outcome::Inject { pod, .. } => *pod,
        other => panic!("expected injection, got {other:?}"),
    }
}

#[test]
fn annotated_pod_gets_a_native_sidecar_with_a_locked_down_context() {
    let orders = policy("orders", 15432);
    let pod = pod(&[("app", "reports")], &[(INJECT_ANNOTATION, "true")]);
    let out = injected(mutate(&pod, Scope::Annotated, &[&orders], &settings()).unwrap());
    let spec = out.spec.unwrap();
    let sidecar = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(sidecar.name, "dbwarden-sidecar");
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        sidecar.image.as_deref(),
        Some("example.com/dbwarden-sidecar:test")
    );
    let security = sidecar.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert_eq!(
        security.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert!(
        sidecar.startup_probe.is_some()
            && sidecar.readiness_probe.is_some()
            && sidecar.liveness_probe.is_some()
    );

    // The credentials Secret is mounted for the sidecar, never for the app.
    let volumes = spec.volumes.unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("app-db"))
    );
    assert!(spec.containers[0].volume_mounts.is_none());

    // The app learns its local endpoint; a variable it set itself is left alone.
    let env = spec.containers[0].env.as_ref().unwrap();
    let get = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(get("DBWARDEN_ORDERS_HOST").as_deref(), Some("kept-by-user"));
    assert_eq!(get("DBWARDEN_ORDERS_PORT").as_deref(), Some("15432"));
    assert_eq!(
        get("DBWARDEN_ORDERS_URL").as_deref(),
        Some("postgresql://127.0.0.1:15432/app")
    );
    assert_eq!(
        out.metadata
            .annotations
            .unwrap()
            .get(INJECTED_ANNOTATION)
            .map(String::as_str),
        Some("true")
    );
}

#[test]
fn injection_is_idempotent() {
    let orders = policy("orders", 15432);
    let pod = pod(&[("app", "reports")], &[(INJECT_ANNOTATION, "true")]);
    let once = injected(mutate(&pod, Scope::Annotated, &[&orders], &settings()).unwrap());
    let again = mutate(&once, Scope::Annotated, &[&orders], &settings()).unwrap();
    assert!(
        matches!(
            again,
            Outcome::Skip {
                why: "already injected"
            }
        ),
        "{again:?}"
    );
}

#[test]
fn who_gets_injected() {
    let orders = policy("orders", 15432);
    let cases = [
        (Scope::Annotated, &[][..], false),
        (Scope::Annotated, &[(INJECT_ANNOTATION, "false")][..], false),
        (Scope::Annotated, &[(INJECT_ANNOTATION, "yes")][..], false),
        (Scope::Annotated, &[(INJECT_ANNOTATION, "true")][..], true),
        (Scope::Namespace, &[][..], true),
        (Scope::Namespace, &[(INJECT_ANNOTATION, "false")][..], false),
    ];
    for (scope, annotations, expected) in cases {
        let pod = pod(&[("app", "reports")], annotations);
        let outcome = mutate(&pod, scope, &[&orders], &settings()).unwrap();
        assert_eq!(
            matches!(outcome, Outcome::Inject { .. }),
            expected,
            "{scope:?} {annotations:?}: {outcome:?}"
        );
    }
}

#[test]
fn unselected_pod_is_admitted_with_a_warning() {
    let orders = policy("orders", 15432);
    let pod = pod(&[("app", "billing")], &[(INJECT_ANNOTATION, "true")]);
    match mutate(&pod, Scope::Annotated, &[&orders], &settings()).unwrap() {
        Outcome::Warn { warning } => assert!(
            warning.contains("no DatabaseAccessPolicy in namespace payments"),
            "{warning}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn regular_container_when_native_sidecars_are_off() {
    let orders = policy("orders", 15432);
    let pod = pod(&[("app", "reports")], &[(INJECT_ANNOTATION, "true")]);
    let settings = InjectSettings {
        native_sidecar: false,
        ..settings()
    };
    let spec = injected(mutate(&pod, Scope::Annotated, &[&orders], &settings).unwrap())
        .spec
        .unwrap();
    assert!(spec.init_containers.is_none());
    assert_eq!(spec.containers[1].name, "dbwarden-sidecar");
    assert_eq!(spec.containers[1].restart_policy, None);
}

#[test]
fn overrides_apply_and_bad_ones_refuse_the_pod() {
    let orders = policy("orders", 15432);
    let pod_with = |pairs: &[(&str, &str)]| {
        let mut annotations = vec![(INJECT_ANNOTATION, "true")];
        annotations.extend_from_slice(pairs);
        pod(&[("app", "reports")], &annotations)
    };
    let good = pod_with(&[
        ("dbwarden.io/sidecar-image", "registry.local/sidecar:2"),
        ("dbwarden.io/sidecar-memory", "256Mi"),
    ]);
    let spec = injected(mutate(&good, Scope::Annotated, &[&orders], &settings()).unwrap())
        .spec
        .unwrap();
    let sidecar = &spec.init_containers.unwrap()[0];
    assert_eq!(sidecar.image.as_deref(), Some("registry.local/sidecar:2"));
    let limits = sidecar.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"].0, "256Mi");

    for (key, value) in [
        ("dbwarden.io/sidecar-memory", "lots"),
        ("dbwarden.io/sidecar-cpu", "-1"),
        ("dbwarden.io/sidecar-image", ""),
    ] {
        let err = mutate(
            &pod_with(&[(key, value)]),
            Scope::Annotated,
            &[&orders],
            &settings(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("annotation {key}: {value:?}")),
            "{err}"
        );
    }
}

#[test]
fn two_policies_on_one_port_refuse_the_pod() {
    let (a, b) = (policy("orders", 15432), policy("billing", 15432));
    let pod = pod(&[("app", "reports")], &[(INJECT_ANNOTATION, "true")]);
    let err = mutate(&pod, Scope::Annotated, &[&a, &b], &settings()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "policies billing and orders both listen on port 15432; give one another listenPort"
    );
}
