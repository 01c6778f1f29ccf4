#!/usr/bin/env bash
# Builds the real Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) and etcd from the Go module proxy into a cache outside the
# repository, keyed by version, and skips every binary that is already there.
#
# Usage: hack/controlplane/build.sh            # prints the bin folder on its last line
# Env:   WMCO_CACHE_DIR (default ~/.cache/wmco), KUBEBUILDER_ASSETS (use pre-built binaries).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kube_version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kube/go.mod")"
etcd_version="$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)

log() { printf '[controlplane] %s\n' "$*" >&2; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    for b in "${binaries[@]}"; do
        [[ -x "$KUBEBUILDER_ASSETS/$b" ]] || { log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $b"; exit 1; }
    done
    log "using pre-built binaries from KUBEBUILDER_ASSETS"
    echo "$KUBEBUILDER_ASSETS"
    exit 0
fi

cache="${WMCO_CACHE_DIR:-$HOME/.cache/wmco}/controlplane/kubernetes-${kube_version}_etcd-${etcd_version}"
bin="$cache/bin"
mkdir -p "$bin"

export CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

# Stamp the version the way k8s' hack/lib/version.sh does, so /version reports the real gitVersion.
minor="${kube_version#v1.}"; minor="${minor%%.*}"
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

build() { # build <name> <module dir> <package> <ldflags>
    local name="$1" dir="$2" pkg="$3" ldflags="$4" started
    if [[ -x "$bin/$name" ]]; then
        log "$name: already built ($bin/$name)"
        return
    fi
    started=$SECONDS
    log "$name: downloading modules"
    (cd "$dir" && go mod download)
    log "$name: compiling $pkg (a cold build takes minutes on 2 cores)"
    (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg")
    mv "$bin/$name.tmp" "$bin/$name"
    log "$name: done in $((SECONDS - started))s"
}

total=${#binaries[@]}; i=0
step() { i=$((i + 1)); log "[$i/$total] $1"; }
step etcd;                    build etcd "$here/etcd" . "-s -w"
step kube-apiserver;          build kube-apiserver "$here/kube" k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
step kube-controller-manager; build kube-controller-manager "$here/kube" k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags"
step kube-scheduler;          build kube-scheduler "$here/kube" k8s.io/kubernetes/cmd/kube-scheduler "$kube_ldflags"
step kubectl;                 build kubectl "$here/kube" k8s.io/kubernetes/cmd/kubectl "$kube_ldflags"
log "all binaries in $bin"
echo "$bin"
