#!/usr/bin/env bash
# Builds the OLM bundle validator: the operator framework's own validation library
# (github.com/operator-framework/api, the code behind `operator-sdk bundle validate`) behind a
# small command, from the Go module proxy, with every version pinned in the committed
# hack/bundle/validate/go.mod and go.sum. The binary goes into a cache outside the repository keyed
# by that version, and is not built again once there. A cold build took 145 s on 2 shared cores
# (5 s of module downloads).
#
# Usage: hack/bundle/build-validator.sh        # progress on stderr; the binary's path on the last line
# Env:   WMCO_CACHE_DIR (default ~/.cache/wmco).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module=github.com/operator-framework/api
version="$(awk -v m="$module" '$1 == "require" && $2 == m {print $3}' "$here/validate/go.mod")"
[[ -n "$version" ]] || { echo "[bundle] cannot read the $module version from hack/bundle/validate/go.mod" >&2; exit 1; }

bin="${WMCO_CACHE_DIR:-$HOME/.cache/wmco}/bundle-validator/operator-framework-api-${version}/validate-bundle"
if [[ -x "$bin" ]]; then
    echo "[bundle] validator already built ($bin)" >&2
    echo "$bin"
    exit 0
fi
mkdir -p "$(dirname "$bin")"
export CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
started=$SECONDS
echo "[bundle] building the validator with $module $version (a cold build takes minutes)" >&2
(cd "$here/validate" && go mod download && go build -trimpath -ldflags "-s -w" -o "$bin.tmp" .)
mv "$bin.tmp" "$bin"
echo "[bundle] validator built in $((SECONDS - started))s: $bin" >&2
echo "$bin"
