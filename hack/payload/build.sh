#!/usr/bin/env bash
# Builds the real Windows payload (the binaries the operator copies to hosts) from the Go module
# proxy: one wrapper module per upstream module under hack/payload/<dir>/, every version pinned in
# its committed go.mod/go.sum, cross-compiled for windows/amd64 with CGO off. The files go into a
# cache outside the repository keyed by the pinned versions, next to the manifest.json the
# operator reads (name, destination, version, size, sha256). Binaries already built are skipped.
#
# Usage: hack/payload/build.sh          # progress on stderr; the cache folder on the last line
#        hack/payload/build.sh --dir    # only print the cache folder (built or not; needs no Go)
# Env:   WMCO_CACHE_DIR (default ~/.cache/wmco). The Go module and build caches are Go's defaults,
#        shared with every other build on the machine.
#
# Needs only bash, go and coreutils (the image's Go stage runs it too).
set -euo pipefail

# The whole script is one function, read before it runs, and the line that calls it also exits:
# editing the file during a build cannot change what the running build does.
main() {
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    log() { printf '[payload] %s\n' "$*" >&2; }

    # The checksum database does not know these two (hack/payload/ovn-kubernetes/go.mod says why);
    # the committed go.sum pins their content instead.
    nosumdb="github.com/ovn-kubernetes/ovn-kubernetes/go-controller,github.com/JacobTanenbaum/arping"
    export GOOS=windows GOARCH=amd64 CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
    export GOFLAGS="-mod=readonly -buildvcs=false"
    export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}$nosumdb"

    # required <wrapper dir> <module>: the version the wrapper's go.mod pins.
    required() {
        awk -v m="$2" '($1 == "require" && $2 == m) || ($1 == m && $2 ~ /^v/) {print ($1 == "require" ? $3 : $2); exit}' \
            "$here/$1/go.mod"
    }
    # published <wrapper dir> <module> <Go time layout>: when that version was published (its commit
    # time), used as the build date so that two builds of the same versions give the same bytes.
    published() {
        (cd "$here/$1" && go list -m -f "{{.Time.UTC.Format \"$3\"}}" "$2")
    }

    kube_version="$(required kubernetes k8s.io/kubernetes)"
    component_base_version="$(required component-base k8s.io/component-base)"
    containerd_version="$(required containerd github.com/containerd/containerd/v2)"
    hcsshim_version="$(required hcsshim github.com/Microsoft/hcsshim)"
    cni_version="$(required cni-plugins github.com/containernetworking/plugins)"
    exporter_version="$(required windows_exporter github.com/prometheus-community/windows_exporter)"
    csi_proxy_version="$(required csi-proxy github.com/kubernetes-csi/csi-proxy)"
    ovn_version="$(required ovn-kubernetes github.com/ovn-kubernetes/ovn-kubernetes/go-controller)"
    for v in kube_version component_base_version containerd_version hcsshim_version cni_version \
        exporter_version csi_proxy_version ovn_version; do
        [[ -n "${!v}" ]] || { log "cannot read $v from hack/payload/*/go.mod"; exit 1; }
    done
    ovn_commit="${ovn_version##*-}"

    key="kubernetes-${kube_version}_containerd-${containerd_version}_hcsshim-${hcsshim_version}"
    key+="_cni-${cni_version}_windows_exporter-${exporter_version}_csi-proxy-${csi_proxy_version}"
    key+="_ovn-${ovn_commit}"
    cache="${WMCO_CACHE_DIR:-$HOME/.cache/wmco}/payload/$key"
    if [[ "${1:-}" == "--dir" ]]; then
        echo "$cache"
        exit 0
    fi
    [[ $# -eq 0 ]] || { log "usage: $0 [--dir]"; exit 2; }
    mkdir -p "$cache"

    # Version stamps, as each project's own release build sets them.
    minor="${kube_version#v1.}"; minor="${minor%%.*}"
    kube_date="$(published kubernetes k8s.io/kubernetes 2006-01-02T15:04:05Z)"
    kube_ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$kube_date"
    done
    containerd_pkg=github.com/containerd/containerd/v2
    containerd_ldflags="-s -w -X $containerd_pkg/version.Version=$containerd_version"
    containerd_ldflags+=" -X $containerd_pkg/version.Package=$containerd_pkg"
    hcsshim_ldflags="-s -w -X main.version=$hcsshim_version"
    cni_ldflags="-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$cni_version"
    prom=github.com/prometheus/common/version
    exporter_ldflags="-s -w -X $prom.Version=${exporter_version#v} -X $prom.Branch=HEAD"
    exporter_ldflags+=" -X $prom.BuildUser=wmco -X $prom.BuildDate=$(published windows_exporter \
        github.com/prometheus-community/windows_exporter 20060102-15:04:05)"
    csi_proxy_ldflags="-s -w -X main.version=$csi_proxy_version"
    ovn_config=github.com/ovn-kubernetes/ovn-kubernetes/go-controller/pkg/config
    ovn_ldflags="-s -w -X $ovn_config.Commit=$ovn_commit -X $ovn_config.BuildUser=wmco"
    ovn_ldflags+=" -X $ovn_config.BuildDate=$(published ovn-kubernetes \
        github.com/ovn-kubernetes/ovn-kubernetes/go-controller 2006-01-02)"

    # name | wrapper dir | package | destination on the host | version | ldflags
    components=(
        "kubelet.exe|kubernetes|k8s.io/kubernetes/cmd/kubelet|C:\\k\\kubelet.exe|$kube_version|$kube_ldflags"
        "kube-proxy.exe|kubernetes|k8s.io/kubernetes/cmd/kube-proxy|C:\\k\\kube-proxy.exe|$kube_version|$kube_ldflags"
        "kube-log-runner.exe|component-base|k8s.io/component-base/logs/kube-log-runner|C:\\k\\kube-log-runner.exe|$component_base_version|-s -w"
        "windows_exporter.exe|windows_exporter|github.com/prometheus-community/windows_exporter/cmd/windows_exporter|C:\\k\\windows_exporter.exe|$exporter_version|$exporter_ldflags"
        "hybrid-overlay-node.exe|ovn-kubernetes|github.com/ovn-kubernetes/ovn-kubernetes/go-controller/hybrid-overlay/cmd/hybrid-overlay-node|C:\\k\\hybrid-overlay-node.exe|$ovn_version|$ovn_ldflags"
        "containerd/containerd.exe|containerd|$containerd_pkg/cmd/containerd|C:\\k\\containerd\\containerd.exe|$containerd_version|$containerd_ldflags"
        "containerd/containerd-shim-runhcs-v1.exe|hcsshim|github.com/Microsoft/hcsshim/cmd/containerd-shim-runhcs-v1|C:\\k\\containerd\\containerd-shim-runhcs-v1.exe|$hcsshim_version|$hcsshim_ldflags"
        "cni/win-bridge.exe|cni-plugins|github.com/containernetworking/plugins/plugins/main/windows/win-bridge|C:\\k\\cni\\win-bridge.exe|$cni_version|$cni_ldflags"
        "cni/win-overlay.exe|cni-plugins|github.com/containernetworking/plugins/plugins/main/windows/win-overlay|C:\\k\\cni\\win-overlay.exe|$cni_version|$cni_ldflags"
        "cni/host-local.exe|cni-plugins|github.com/containernetworking/plugins/plugins/ipam/host-local|C:\\k\\cni\\host-local.exe|$cni_version|$cni_ldflags"
        "csi-proxy.exe|csi-proxy|github.com/kubernetes-csi/csi-proxy/cmd/csi-proxy|C:\\k\\csi-proxy.exe|$csi_proxy_version|$csi_proxy_ldflags"
    )

    log "cache: $cache"
    built=0 total=${#components[@]} i=0 started_all=$SECONDS
    for entry in "${components[@]}"; do
        IFS='|' read -r name dir pkg _ _ ldflags <<<"$entry"
        i=$((i + 1))
        target="$cache/$name"
        if [[ -f "$target" ]]; then
            log "[$i/$total] $name: already built"
            continue
        fi
        mkdir -p "$(dirname "$target")"
        started=$SECONDS
        log "[$i/$total] $name: downloading modules of hack/payload/$dir"
        (cd "$here/$dir" && go mod download)
        downloaded=$SECONDS
        log "[$i/$total] $name: compiling $pkg for windows/amd64 (kubelet takes minutes on 2 cores)"
        (cd "$here/$dir" && go build -trimpath -ldflags "$ldflags" -o "$target.tmp" "$pkg")
        mv "$target.tmp" "$target"
        seconds=$((SECONDS - started))
        # name, seconds downloading, seconds compiling, bytes (what benchmarks/RESULTS.md reports),
        # next to the folder so that copying the folder copies only the payload
        printf '%s\t%s\t%s\t%s\n' "$name" "$((downloaded - started))" "$((SECONDS - downloaded))" \
            "$(stat -c %s "$target")" >>"$cache.build-times.tsv"
        log "[$i/$total] $name: done in ${seconds}s ($(($(stat -c %s "$target") / 1048576)) MiB)"
        built=$((built + 1))
    done

    json() { # a JSON string: only backslash and quote need escaping in these values
        local s="${1//\\/\\\\}"
        printf '"%s"' "${s//\"/\\\"}"
    }
    if [[ $built -gt 0 || ! -f "$cache/manifest.json" ]]; then
        log "writing manifest.json (sha256 of $total files)"
        {
            printf '{\n  "version": %s,\n  "files": [\n' "$(json "$key")"
            sep=""
            for entry in "${components[@]}"; do
                IFS='|' read -r name _ _ destination version _ <<<"$entry"
                size="$(stat -c %s "$cache/$name")"
                sha="$(sha256sum "$cache/$name")"; sha="${sha%% *}"
                printf '%s    {"name": %s, "destination": %s, "version": %s, "size": %s, "sha256": "%s"}' \
                    "$sep" "$(json "$name")" "$(json "$destination")" "$(json "$version")" "$size" "$sha"
                sep=$',\n'
            done
            printf '\n  ]\n}\n'
        } >"$cache/manifest.json.tmp"
        mv "$cache/manifest.json.tmp" "$cache/manifest.json"
    fi
    log "$built of $total built in $((SECONDS - started_all))s; payload in $cache"
    echo "$cache"
}

main "$@"; exit
