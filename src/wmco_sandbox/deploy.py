"""The operator's install manifests (``deploy/``), built with kustomize and applied as users do.

The sandbox, the integration tests and the bundle generator all start from the same built
manifests, so nothing here has RBAC of its own that could drift from what ships:

* :func:`build` runs ``kubectl kustomize`` (the control plane's kubectl, which embeds kustomize) on
  an overlay of ``deploy/overlays/``, optionally with extra components of
  ``deploy/components/`` (the sandbox's ``hostprocess`` cluster is plain Kubernetes that still
  runs the simulated Machine API);
* :func:`apply` applies them with server-side apply, in dependency order (Namespaces first);
* :func:`operator_env` reads the literal environment the Deployment gives the operator, so a
  local ``wmco run`` gets the same settings as the pod would;
* :func:`token_kubeconfig` writes a kubeconfig holding a token of the operator's
  ServiceAccount: the operator then has exactly the rights the manifests give it, never admin's.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from wmco_sandbox import controlplane as cp

OPENSHIFT: Final = "openshift"
KUBERNETES: Final = "kubernetes"
OVERLAYS: Final = (OPENSHIFT, KUBERNETES)
MACHINE_API_COMPONENT: Final = "machine-api"

OPERATOR_SERVICE_ACCOUNT: Final = "windows-machine-config-operator"
OPERATOR_DEPLOYMENT: Final = "windows-machine-config-operator"
OPERATOR_CONTAINER: Final = "manager"
FIELD_MANAGER: Final = "wmco-sandbox"

Manifest = dict[str, Any]

_APPLY_ORDER: Final = ("Namespace", "ServiceAccount", "ClusterRole", "Role")
"""Kinds applied before the rest (bindings refer to roles; everything to namespaces)."""


class DeployError(RuntimeError):
    """kustomize or kubectl refused the manifests (the message has its output)."""


def deploy_dir() -> Path:
    """``deploy/`` of this checkout."""
    return cp.project_root() / "deploy"


def _kubectl(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(cp.kubectl_path()), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise DeployError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def build(overlay: str, components: Sequence[str] = ()) -> list[Manifest]:
    """``kubectl kustomize deploy/overlays/<overlay>``, plus ``deploy/components/<c>`` for each c.

    Raises:
        DeployError: The overlay does not build.
    """
    if overlay not in OVERLAYS:
        raise DeployError(f"overlay {overlay!r} is not one of {', '.join(OVERLAYS)}")
    root = deploy_dir()
    if not components:
        return parse(_kubectl("kustomize", str(root / "overlays" / overlay)))
    with tempfile.TemporaryDirectory(prefix="wmco-kustomize-") as scratch:
        # kustomize takes only relative paths to other kustomizations.
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(root / "overlays" / overlay, scratch)],
            "components": [
                os.path.relpath(root / "components" / name, scratch) for name in components
            ],
        }
        (Path(scratch) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return parse(_kubectl("kustomize", scratch))


def parse(text: str) -> list[Manifest]:
    """The objects of a multi-document YAML stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def without(manifests: Iterable[Manifest], kinds: Iterable[str]) -> list[Manifest]:
    """The manifests minus every object of one of ``kinds``."""
    dropped = set(kinds)
    return [m for m in manifests if m.get("kind") not in dropped]


def ordered(manifests: Iterable[Manifest]) -> list[Manifest]:
    """Namespaces, ServiceAccounts and roles first, then the rest, each group in its order."""
    items = list(manifests)

    def rank(manifest: Manifest) -> int:
        kind = manifest.get("kind", "")
        return _APPLY_ORDER.index(kind) if kind in _APPLY_ORDER else len(_APPLY_ORDER)

    return sorted(items, key=rank)


def apply(kubeconfig: Path, manifests: Iterable[Manifest]) -> None:
    """Server-side apply ``manifests`` as the kubeconfig's user, in dependency order.

    Raises:
        DeployError: The API server refused one (e.g. a Role in a namespace that does not exist).
    """
    stream = "\n---\n".join(json.dumps(m) for m in ordered(manifests))
    _kubectl(
        f"--kubeconfig={kubeconfig}",
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        stdin=stream,
    )


def delete(kubeconfig: Path, manifests: Iterable[Manifest]) -> None:
    """Delete ``manifests`` (missing ones are fine) and wait until they are gone."""
    stream = "\n---\n".join(json.dumps(m) for m in reversed(ordered(manifests)))
    _kubectl(
        f"--kubeconfig={kubeconfig}",
        "delete",
        "--ignore-not-found",
        "--wait=true",
        "--timeout=120s",
        "-f",
        "-",
        stdin=stream,
    )


def find(manifests: Iterable[Manifest], kind: str, name: str) -> Manifest:
    """The one object of ``kind`` and ``name``.

    Raises:
        DeployError: There is none.
    """
    for manifest in manifests:
        if manifest.get("kind") == kind and manifest.get("metadata", {}).get("name") == name:
            return manifest
    raise DeployError(f"the manifests have no {kind} {name}")


def operator_container(manifests: Iterable[Manifest]) -> Manifest:
    """The operator's container of the Deployment."""
    deployment = find(manifests, "Deployment", OPERATOR_DEPLOYMENT)
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        if container.get("name") == OPERATOR_CONTAINER:
            return dict(container)
    raise DeployError(f"Deployment {OPERATOR_DEPLOYMENT} has no container {OPERATOR_CONTAINER}")


def operator_env(manifests: Iterable[Manifest]) -> dict[str, str]:
    """The literal environment (``value``, not ``valueFrom``) the Deployment gives the operator."""
    return {
        item["name"]: str(item["value"])
        for item in operator_container(manifests).get("env") or []
        if "value" in item
    }


def operator_namespace(manifests: Iterable[Manifest]) -> str:
    """The namespace the operator runs in."""
    return str(find(manifests, "Deployment", OPERATOR_DEPLOYMENT)["metadata"]["namespace"])


def token_kubeconfig(
    plane: cp.ControlPlane, namespace: str, path: Path, *, duration: str = "48h"
) -> Path:
    """Write ``path``: a kubeconfig with a token of the operator's ServiceAccount (never admin)."""
    token = plane.kubectl(
        "create", "token", OPERATOR_SERVICE_ACCOUNT, "-n", namespace, f"--duration={duration}"
    ).strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "sandbox",
                "cluster": {
                    "server": plane.server,
                    "certificate-authority-data": base64.b64encode(plane.ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": OPERATOR_SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [
            {
                "name": "operator",
                "context": {"cluster": "sandbox", "user": OPERATOR_SERVICE_ACCOUNT},
            }
        ],
        "current-context": "operator",
    }
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config))
    return path
