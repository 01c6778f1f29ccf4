"""Where promtool and the prometheus-operator CRDs are: the cache hack/prometheus/build.sh fills.

Like the control plane, they are built from their Go modules (pinned in hack/prometheus/*/go.mod)
into ~/.cache/wmco, keyed by version. A missing one fails the test loudly: run
`make prometheus` (the `integration` and `test` targets do).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from wmco_sandbox.controlplane import project_root

SERVICE_MONITOR_CRD = "monitoring.coreos.com_servicemonitors.yaml"
PROMETHEUS_RULE_CRD = "monitoring.coreos.com_prometheusrules.yaml"


def _version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^require {re.escape(module)} (\S+)$", go_mod.read_text(), re.M)
    assert match, f"{go_mod} does not require {module}"
    return match.group(1)


def cache_dir() -> Path:
    hack = project_root() / "hack" / "prometheus"
    prometheus = _version(hack / "promtool" / "go.mod", "github.com/prometheus/prometheus")
    operator = _version(
        hack / "operator" / "go.mod", "github.com/prometheus-operator/prometheus-operator"
    )
    base = Path(os.environ.get("WMCO_CACHE_DIR", Path.home() / ".cache" / "wmco"))
    return base / "prometheus" / f"prometheus-{prometheus}_prometheus-operator-{operator}"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make prometheus` (hack/prometheus/build.sh)")
    return path


def promtool() -> Path:
    return _require(cache_dir() / "bin" / "promtool")


def crd(name: str) -> Path:
    return _require(cache_dir() / "crds" / name)
