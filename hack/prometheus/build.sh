#!/usr/bin/env bash
# Brings the two Prometheus pieces the tests use into a cache outside the repository, keyed by
# version, and skips whatever is already there:
#   - promtool, built from Prometheus' own Go module (hack/prometheus/promtool/go.mod), to run
#     `promtool test rules` on deploy/monitoring/windows-pod-rules.yaml;
#   - the ServiceMonitor and PrometheusRule CRDs as prometheus-operator releases them, taken from
#     its Go module (hack/prometheus/operator/go.mod; the download is checked against go.sum).
#
# Usage: hack/prometheus/build.sh      # prints the cache folder on its last line
# Env:   WMCO_CACHE_DIR (default ~/.cache/wmco).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prometheus_version="$(awk '$1 == "require" && $2 == "github.com/prometheus/prometheus" {print $3}' "$here/promtool/go.mod")"
operator_version="$(awk '$1 == "require" && $2 == "github.com/prometheus-operator/prometheus-operator" {print $3}' "$here/operator/go.mod")"
cache="${WMCO_CACHE_DIR:-$HOME/.cache/wmco}/prometheus/prometheus-${prometheus_version}_prometheus-operator-${operator_version}"
crds=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)

log() { printf '[prometheus] %s\n' "$*" >&2; }

export CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
mkdir -p "$cache/bin" "$cache/crds"

if [[ -x "$cache/bin/promtool" ]]; then
    log "promtool: already built ($cache/bin/promtool)"
else
    started=$SECONDS
    log "promtool $prometheus_version: downloading modules"
    (cd "$here/promtool" && go mod download)
    log "promtool: compiling (a cold build takes minutes on 2 cores)"
    # Stamp the version the way Prometheus' Makefile (promu) does, so `promtool --version` says it.
    minor="${prometheus_version#v0.}"; minor="${minor%%.*}"; patch="${prometheus_version##*.}"
    ldflags="-s -w -X github.com/prometheus/common/version.Version=3.$((minor - 300)).$patch"
    (cd "$here/promtool" && go build -trimpath -ldflags "$ldflags" -o "$cache/bin/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool)
    mv "$cache/bin/promtool.tmp" "$cache/bin/promtool"
    log "promtool: done in $((SECONDS - started))s"
fi

missing=0
for crd in "${crds[@]}"; do [[ -s "$cache/crds/$crd" ]] || missing=1; done
if [[ $missing -eq 0 ]]; then
    log "CRDs: already there ($cache/crds)"
else
    log "CRDs: prometheus-operator $operator_version from the module proxy"
    dir="$(cd "$here/operator" && go mod download -json github.com/prometheus-operator/prometheus-operator \
        | awk -F'"' '$2 == "Dir" {print $4}')"
    [[ -n "$dir" && -d "$dir/example/prometheus-operator-crd-full" ]] || { log "no CRD folder in $dir"; exit 1; }
    for crd in "${crds[@]}"; do
        install -m 0644 "$dir/example/prometheus-operator-crd-full/$crd" "$cache/crds/$crd.tmp"
        mv "$cache/crds/$crd.tmp" "$cache/crds/$crd"
    done
fi
log "promtool and CRDs in $cache"
echo "$cache"
