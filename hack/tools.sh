#!/usr/bin/env bash
# Builds the Go test tools (kube-apiserver, kubectl, helm) into .tools/bin, from the Go
# module proxy, at the versions pinned below. Idempotent: a tool already built at its pinned
# version is left alone, so a second run takes a second or two.
#
# The Kubernetes minor here must match the k8s-openapi feature in Cargo.toml (v1_34).
set -euo pipefail

KUBE_VERSION=1.34.4 # e2e/tools/go.mod requires k8s.io/kubernetes at this version
HELM_VERSION=3.21.4

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$root/.tools/bin"
mkdir -p "$bin"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

have() { # have TOOL EXPECTED-SUBSTRING VERSION-ARGS...
	local tool=$1 want=$2
	shift 2
	[[ -x "$bin/$tool" ]] && "$bin/$tool" "$@" 2>/dev/null | grep -qF -- "$want"
}

if ! command -v go >/dev/null; then
	echo "hack/tools.sh: 'go' is not on PATH; install Go >= 1.26 (the machine image ships it)" >&2
	exit 1
fi

minor=${KUBE_VERSION#*.}
minor=${minor%%.*}
kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/component-base/version.gitTreeState=clean"

for tool in kube-apiserver kubectl; do
	if [[ $tool == kubectl ]]; then args=(version --client); else args=(--version); fi
	if have "$tool" "v$KUBE_VERSION" "${args[@]}"; then
		continue
	fi
	echo "hack/tools.sh: building $tool v$KUBE_VERSION (first time: several minutes)" >&2
	(cd "$root/e2e/tools" && go build -trimpath -ldflags "$kube_ldflags" -o "$bin/$tool" "k8s.io/kubernetes/cmd/$tool")
done

if ! have helm "v$HELM_VERSION" version --short; then
	echo "hack/tools.sh: building helm v$HELM_VERSION" >&2
	GOBIN="$bin" go install -trimpath \
		-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
		"helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
fi

"$bin/kube-apiserver" --version
"$bin/kubectl" version --client | head -1
"$bin/helm" version --short
