"""The OLM bundle: generated from deploy/, granting exactly what deploy/ grants, valid for OLM.

* ``hack/bundle/generate.py --check`` passes: ``bundle/`` is what the built openshift overlay and
  the README give today (a change of either without regenerating fails here).
* The permissions are compared rule by rule, by code independent of the generator: the CSV's
  ``permissions`` (install namespace) and ``clusterPermissions`` plus the Roles of
  ``bundle/prerequisites.yaml`` are the same multiset of (namespace, rule) as the overlay's Roles
  and ClusterRoles bound to the operator's ServiceAccount; the install strategy's Deployment is
  the overlay's; no CRD is owned; only ``OwnNamespace`` is supported; the description is the
  README's.
* The operator framework's own validation library (``github.com/operator-framework/api``, built
  from its Go module by ``hack/bundle/build-validator.sh`` into a cache outside the repository)
  accepts the bundle with no error and no warning, and refuses a broken copy of it, so its
  verdict is not vacuous.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from wmco import names
from wmco_sandbox import deploy
from wmco_sandbox.controlplane import project_root

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = project_root()
BUNDLE = ROOT / "bundle"
CSV_PATH = BUNDLE / "manifests" / "windows-machine-config-operator.clusterserviceversion.yaml"
OP = names.OPERATOR_NAMESPACE


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def csv() -> dict[str, Any]:
    [document] = load(CSV_PATH)
    return document


@pytest.fixture(scope="module")
def built() -> list[deploy.Manifest]:
    return deploy.build(deploy.OPENSHIFT)


@pytest.fixture(scope="module")
def validator() -> Path:
    """The validator binary (built once, then cached by version; a cold build takes minutes)."""
    result = subprocess.run(
        [str(ROOT / "hack" / "bundle" / "build-validator.sh")],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


def rule_key(rule: dict[str, Any]) -> str:
    normal = {k: sorted(v) for k, v in rule.items() if v}
    return json.dumps(normal, sort_keys=True)


def overlay_grants(manifests: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """(namespace or "" for cluster scope, rule) of every role bound to the operator's account."""
    grants: Counter[tuple[str, str]] = Counter()
    roles = {
        (m["kind"], m["metadata"].get("namespace", ""), m["metadata"]["name"]): m
        for m in manifests
        if m["kind"] in ("Role", "ClusterRole")
    }
    for binding in manifests:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(
            s.get("kind") == "ServiceAccount"
            and s.get("name") == deploy.OPERATOR_SERVICE_ACCOUNT
            and s.get("namespace") == OP
            for s in binding["subjects"]
        ):
            continue
        namespace = binding["metadata"].get("namespace", "")
        ref = binding["roleRef"]
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else "", ref["name"])]
        for rule in role["rules"]:
            grants[(namespace, rule_key(rule))] += 1
    return grants


def bundle_grants(
    csv: dict[str, Any], prerequisites: list[dict[str, Any]]
) -> Counter[tuple[str, str]]:
    grants: Counter[tuple[str, str]] = Counter()
    strategy = csv["spec"]["install"]["spec"]
    for entry in strategy["permissions"]:
        assert entry["serviceAccountName"] == deploy.OPERATOR_SERVICE_ACCOUNT
        for rule in entry["rules"]:
            grants[(OP, rule_key(rule))] += 1
    for entry in strategy["clusterPermissions"]:
        assert entry["serviceAccountName"] == deploy.OPERATOR_SERVICE_ACCOUNT
        for rule in entry["rules"]:
            grants[("", rule_key(rule))] += 1
    grants += overlay_grants(prerequisites)
    return grants


def test_bundle_is_generated_from_the_overlay_and_readme() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "bundle" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_bundle_grants_exactly_what_the_overlay_grants(
    csv: dict[str, Any], built: list[deploy.Manifest]
) -> None:
    prerequisites = load(BUNDLE / "prerequisites.yaml")
    expected = overlay_grants(built)
    got = bundle_grants(csv, prerequisites)
    assert got == expected, {"missing": expected - got, "extra": got - expected}
    assert len(expected) > 20, "the comparison compares something"
    # The prerequisites carry only what a registry+v1 bundle cannot: nothing of the install
    # namespace, and the bootstrap namespace with its binding.
    assert all(m["metadata"].get("namespace") != OP for m in prerequisites)
    kinds = Counter(m["kind"] for m in prerequisites)
    assert kinds["Namespace"] == 1 and kinds["ClusterRoleBinding"] == 1
    [namespace] = [m for m in prerequisites if m["kind"] == "Namespace"]
    assert namespace["metadata"]["name"] == names.BOOTSTRAP_NAMESPACE


def test_the_csv_installs_the_overlays_deployment_in_its_own_namespace(
    csv: dict[str, Any], built: list[deploy.Manifest]
) -> None:
    [deployment] = csv["spec"]["install"]["spec"]["deployments"]
    overlay = deploy.find(built, "Deployment", deploy.OPERATOR_DEPLOYMENT)
    assert deployment["name"] == overlay["metadata"]["name"]
    assert deployment["spec"] == overlay["spec"]
    modes = {m["type"]: m["supported"] for m in csv["spec"]["installModes"]}
    assert modes == {
        "OwnNamespace": True,
        "SingleNamespace": False,
        "MultiNamespace": False,
        "AllNamespaces": False,
    }
    assert csv["spec"]["customresourcedefinitions"].get("owned") is None
    assert (
        csv["metadata"]["annotations"]["containerImage"]
        == deploy.operator_container(built)["image"]
    )
    assert csv["metadata"]["annotations"]["operatorframework.io/suggested-namespace"] == OP


def test_the_description_is_the_readme(csv: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    description = csv["spec"]["description"]
    for heading in (
        "## What it is",
        "## Pod networking on Windows nodes",
        "## Installing with OLM",
    ):
        assert heading in description
        start = readme.index(heading)
        end = readme.find("\n## ", start + 1)
        assert readme[start:end].rstrip() in description


def test_annotations_name_the_package_and_channel() -> None:
    annotations = yaml.safe_load((BUNDLE / "metadata" / "annotations.yaml").read_text())[
        "annotations"
    ]
    assert annotations["operators.operatorframework.io.bundle.mediatype.v1"] == "registry+v1"
    assert annotations["operators.operatorframework.io.bundle.manifests.v1"] == "manifests/"
    assert (
        annotations["operators.operatorframework.io.bundle.package.v1"]
        == "windows-machine-config-operator"
    )
    assert annotations["operators.operatorframework.io.bundle.channel.default.v1"] == "stable"


def validate(validator: Path, bundle: Path) -> tuple[int, dict[str, Any] | None, str]:
    result = subprocess.run(
        [str(validator), str(bundle)], capture_output=True, text=True, timeout=120, check=False
    )
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result.returncode, report, result.stderr


def test_the_operator_framework_validates_the_bundle(validator: Path) -> None:
    code, report, stderr = validate(validator, BUNDLE)
    assert code == 0, (report, stderr)
    assert report is not None
    assert report["package"] == "windows-machine-config-operator"
    assert report["channels"] == ["stable"]
    assert report["csv"].startswith("windows-machine-config-operator.v")
    problems = [f for r in report["results"] for f in r["errors"] + r["warnings"]]
    assert problems == []
    assert len(report["results"]) >= 5, "the default, OperatorHub and good-practice validators ran"


def test_the_validator_refuses_a_broken_bundle(validator: Path, tmp_path: Path) -> None:
    broken = tmp_path / "bundle"
    shutil.copytree(BUNDLE, broken)
    path = broken / "manifests" / CSV_PATH.name
    [document] = load(path)
    # An owned CRD the bundle does not carry, and no install mode supported.
    document["spec"]["customresourcedefinitions"] = {
        "owned": [{"name": "windowsnodes.wmco.example.com", "version": "v1", "kind": "WindowsNode"}]
    }
    document["spec"]["installModes"] = [{"type": "OwnNamespace", "supported": False}]
    path.write_text(yaml.safe_dump(document))
    code, report, stderr = validate(validator, broken)
    assert code == 1, stderr
    assert report is not None
    errors = " ".join(f["detail"] for r in report["results"] for f in r["errors"])
    assert "none of InstallModeTypes are supported" in errors
    assert "not found in bundle" in errors
