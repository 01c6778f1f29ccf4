"""The recording rules for Windows pods, checked by Prometheus' own promtool.

``deploy/monitoring/windows-pod-rules.yaml`` is a PrometheusRule; its ``spec`` is a Prometheus
rules file. ``promtool check rules`` parses it, and ``promtool test rules`` evaluates it on input
series shaped like windows_exporter's and kube-state-metrics' (tests/unit/data/
windows-pod-rules.test.yaml) and compares the recorded values. The Grafana dashboard queries
only what the rules record, and every one of its expressions parses.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from prometheus_helpers import promtool
from wmco_sandbox.controlplane import project_root

MONITORING = project_root() / "deploy" / "monitoring"
DATA = Path(__file__).parent / "data"


def rules_spec() -> dict[str, Any]:
    rule = yaml.safe_load((MONITORING / "windows-pod-rules.yaml").read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    spec: dict[str, Any] = rule["spec"]
    return spec


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool()), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def write_rules(directory: Path, spec: dict[str, Any]) -> Path:
    path = directory / "windows-pod-rules.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_the_rules_parse(tmp_path: Path) -> None:
    result = run_promtool("check", "rules", str(write_rules(tmp_path, rules_spec())), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_promtool_test_rules_gives_the_expected_recorded_values(tmp_path: Path) -> None:
    write_rules(tmp_path, rules_spec())
    shutil.copy(DATA / "windows-pod-rules.test.yaml", tmp_path)

    result = run_promtool("test", "rules", "windows-pod-rules.test.yaml", cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_wrong_expectation_fails_promtool(tmp_path: Path) -> None:
    """The test above can fail: the same inputs with one value changed do not pass."""
    write_rules(tmp_path, rules_spec())
    test = yaml.safe_load((DATA / "windows-pod-rules.test.yaml").read_text())
    test["tests"][0]["promql_expr_test"][0]["exp_samples"][0]["value"] = 0.24
    (tmp_path / "wrong.test.yaml").write_text(yaml.safe_dump(test))

    result = run_promtool("test", "rules", "wrong.test.yaml", cwd=tmp_path)

    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((MONITORING / "windows-pod-dashboard.json").read_text())
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def test_the_dashboard_plots_the_recorded_series_and_its_queries_parse(tmp_path: Path) -> None:
    recorded = {rule["record"] for group in rules_spec()["groups"] for rule in group["rules"]}
    expressions = dashboard_expressions()
    assert len(expressions) >= 4
    for expr in expressions:
        used = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*:[a-zA-Z0-9_:]+", expr))
        assert used and used <= recorded, (expr, used - recorded)
    # Grafana variables become literals so that promtool can parse each query.
    concrete = [expr.replace("$namespace", ".+").replace("$node", ".+") for expr in expressions]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query:{i}", "expr": expr}
                    for i, expr in enumerate(concrete)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = run_promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
