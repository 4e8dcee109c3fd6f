//! The control plane is a real Kubernetes API server: kubectl and kube-rs see the same
//! objects, and RBAC really decides what ordinary users may do.

use dbwarden_testbed::{ADMIN, BOB, CAROL, ControlPlane};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

#[tokio::test]
async fn kubectl_and_kube_rs_share_one_cluster_with_rbac_enforced() {
    dbwarden_testbed::init_tracing();
    let cp = ControlPlane::start().await.unwrap();
    eprintln!("control plane ready in {:?}", cp.started_in());

    // The admin creates a namespace with the real kubectl; kube-rs reads it back.
    cp.kubectl_ok(&ADMIN, &["create", "namespace", "payments"])
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(cp.admin_client());
    let ns = namespaces.get("payments").await.unwrap();
    assert_eq!(ns.metadata.name.as_deref(), Some("payments"));

    // The server reports the version the tools were built for, not v0.0.0-master.
    let version = cp
        .kubectl_ok(&ADMIN, &["version", "-o", "json"])
        .await
        .unwrap();
    assert!(version.contains("\"gitVersion\": \"v1.34."), "{version}");

    // An ordinary user is authenticated as themselves, and RBAC refuses them a CRD.
    let whoami = cp
        .kubectl_ok(
            &BOB,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
            ],
        )
        .await
        .unwrap();
    assert!(
        whoami.starts_with("bob ") && whoami.contains("developers"),
        "{whoami}"
    );
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object}
"#;
    let refused = cp
        .kubectl_with_input(&CAROL, &["create", "-f", "-"], Some(crd))
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("Forbidden")
            && refused
                .stderr
                .contains(r#"User "carol" cannot create resource "customresourcedefinitions""#),
        "{}",
        refused.stderr
    );
    // The same object is fine for the admin, so the refusal above was RBAC, not the object.
    cp.kubectl_with_input(&ADMIN, &["create", "-f", "-"], Some(crd))
        .await
        .unwrap()
        .ok("kubectl create crd")
        .unwrap();
}

#[tokio::test]
async fn two_control_planes_run_side_by_side_and_clean_up() {
    let (a, b) = tokio::try_join!(ControlPlane::start(), ControlPlane::start()).unwrap();
    assert_ne!(a.server(), b.server());
    a.kubectl_ok(&ADMIN, &["create", "namespace", "only-in-a"])
        .await
        .unwrap();
    let in_b = b
        .kubectl(&ADMIN, &["get", "namespace", "only-in-a"])
        .await
        .unwrap();
    assert!(
        !in_b.status.success(),
        "the namespace leaked into the other control plane"
    );

    let dir = a.dir().to_path_buf();
    let (_, apiserver_pid) = a.pids();
    drop(a);
    assert!(!dir.exists(), "{} was left behind", dir.display());
    assert!(
        !std::path::Path::new(&format!("/proc/{apiserver_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{apiserver_pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "kube-apiserver {apiserver_pid} still runs after drop"
    );
}
