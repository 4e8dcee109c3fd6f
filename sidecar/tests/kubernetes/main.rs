//! The sidecar in Kubernetes mode, against a real kube-apiserver (with etcd) and a real
//! PostgreSQL: policies watched from the API server, identity and credentials from the pod.

mod policies;
mod support;
