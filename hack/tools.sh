#!/usr/bin/env bash
# Builds the Go test tools (kube-apiserver, kubectl, helm) into .tools/bin, from the Go
# module proxy, at the versions pinned below. Idempotent: a tool whose recipe (version and
# flags, kept in a stamp file beside it) has not changed is left alone, so a second run takes a
# second or two.
#
# The Kubernetes minor here must match the k8s-openapi feature in Cargo.toml (v1_34).
set -euo pipefail

KUBE_VERSION=1.34.4 # e2e/tools/go.mod requires k8s.io/kubernetes at this version
HELM_VERSION=3.21.4

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$root/.tools/bin"
mkdir -p "$bin"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
# Modules and build cache of these builds in a folder of our own, removed once every tool is
# built: they take about 4 GB (kube-apiserver's dependency tree) and are not needed again until a
# version here changes. That space filled a CI machine's disk.
go_work="$root/.tools/go"
export GOMODCACHE="$go_work/mod" GOCACHE="$go_work/cache"

if ! command -v go >/dev/null; then
	echo "hack/tools.sh: 'go' is not on PATH; install Go >= 1.26 (the machine image ships it)" >&2
	exit 1
fi

# build TOOL RECIPE COMMAND...: runs COMMAND unless TOOL exists and was built from RECIPE.
build() {
	local tool=$1 recipe=$2
	shift 2
	if [[ -x "$bin/$tool" && "$(cat "$bin/.$tool.recipe" 2>/dev/null)" == "$recipe" ]]; then
		return
	fi
	echo "hack/tools.sh: building $tool ($recipe); the first time takes several minutes" >&2
	"$@"
	printf '%s' "$recipe" >"$bin/.$tool.recipe"
}

minor=${KUBE_VERSION#*.}
minor=${minor%%.*}
# As upstream builds them, so /version reports the real version (Helm's kubeVersion checks
# read it).
kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/component-base/version.gitTreeState=clean"
for tool in kube-apiserver kubectl; do
	build "$tool" "v$KUBE_VERSION $kube_ldflags" \
		bash -c "cd '$root/e2e/tools' && go build -trimpath -ldflags '$kube_ldflags' -o '$bin/$tool' 'k8s.io/kubernetes/cmd/$tool'"
done

# Helm's own release sets its version and the Kubernetes version it assumes when rendering
# offline; ours assumes the control plane's.
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
build helm "v$HELM_VERSION $helm_ldflags" \
	env GOBIN="$bin" go install -trimpath -ldflags "$helm_ldflags" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"

if [[ -d $go_work ]]; then
	go clean -modcache -cache # module files are read-only; go clean knows
	rm -rf "$go_work"
fi

"$bin/kube-apiserver" --version
# sed, not head: head may exit before kubectl is done writing, a SIGPIPE that pipefail fails on.
"$bin/kubectl" version --client | sed -n 1p
"$bin/helm" version --short
