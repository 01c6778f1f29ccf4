"""The ``machine.openshift.io/v1beta1`` Machine and MachineSet CRDs, and how to install them.

The schemas follow openshift/api's generated Default-feature-set manifests
(``0000_10_machine-api_01_{machines,machinesets}-Default.crd.yaml``) in the parts a Windows node
operator and its users touch: no ``required`` list at ``spec``/``status`` level, required keys only
on nested items (taints, lifecycle hooks, ownerReferences, addresses, conditions), a free-form
``providerSpec.value`` and ``status.providerStatus``, the status subresource, the scale subresource
on MachineSets, and the real printer columns (including MachineSet ``Available`` typed as a string,
as upstream has it). The fields of the ``MachineAPIMigration`` feature gate (``authoritativeAPI``
and friends) are left out, as in the Default feature set; the API server prunes them.

The manifests are built as plain JSON (they read like the upstream YAML) and installed with
server-side apply, so installing twice is harmless and a changed schema is rolled forward.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final, cast

from lightkube import ALL_NS, ApiError, AsyncClient
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from wmco_sandbox.machineapi import resources

FIELD_MANAGER: Final = "wmco-sandbox-machineapi"

Schema = dict[str, Any]


def _string() -> Schema:
    return {"type": "string"}


def _string_map() -> Schema:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def _object(properties: dict[str, Schema], *, required: list[str] | None = None) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _free_form(description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "x-kubernetes-preserve-unknown-fields": True,
    }


def _object_meta_subset() -> Schema:
    owner_reference = _object(
        {
            "apiVersion": _string(),
            "kind": _string(),
            "name": _string(),
            "uid": _string(),
            "controller": {"type": "boolean"},
            "blockOwnerDeletion": {"type": "boolean"},
        },
        required=["apiVersion", "kind", "name", "uid"],
    )
    owner_reference["x-kubernetes-map-type"] = "atomic"
    return _object(
        {
            "annotations": _string_map(),
            "generateName": _string(),
            "labels": _string_map(),
            "name": _string(),
            "namespace": _string(),
            "ownerReferences": {"type": "array", "items": owner_reference},
        }
    )


def _taint() -> Schema:
    return _object(
        {
            "effect": _string(),
            "key": _string(),
            "timeAdded": {"type": "string", "format": "date-time"},
            "value": _string(),
        },
        required=["key", "effect"],
    )


def _lifecycle_hooks() -> Schema:
    hook = _object(
        {
            "name": {
                "type": "string",
                "minLength": 3,
                "maxLength": 256,
                "pattern": (
                    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
                ),
            },
            "owner": {"type": "string", "minLength": 3, "maxLength": 512},
        },
        required=["name", "owner"],
    )
    hooks: Schema = {
        "type": "array",
        "items": hook,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
    }
    return _object({"preDrain": hooks, "preTerminate": dict(hooks)})


def _machine_spec() -> Schema:
    return _object(
        {
            "lifecycleHooks": _lifecycle_hooks(),
            "metadata": _object_meta_subset(),
            "providerID": _string(),
            "providerSpec": _object(
                {"value": _free_form("The provider configuration (a RawExtension).")}
            ),
            "taints": {
                "type": "array",
                "items": _taint(),
                "x-kubernetes-list-type": "atomic",
            },
        }
    )


def _conditions() -> Schema:
    condition = _object(
        {
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "message": _string(),
            "reason": _string(),
            "severity": _string(),
            "status": _string(),
            "type": _string(),
        },
        required=["type", "status", "lastTransitionTime"],
    )
    return {
        "type": "array",
        "items": condition,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    }


def _machine_status() -> Schema:
    node_ref = _object(
        {
            "apiVersion": _string(),
            "fieldPath": _string(),
            "kind": _string(),
            "name": _string(),
            "namespace": _string(),
            "resourceVersion": _string(),
            "uid": _string(),
        }
    )
    node_ref["x-kubernetes-map-type"] = "atomic"
    return _object(
        {
            "addresses": {
                "type": "array",
                "items": _object(
                    {"address": _string(), "type": _string()}, required=["address", "type"]
                ),
                "x-kubernetes-list-type": "atomic",
            },
            "conditions": _conditions(),
            "errorMessage": _string(),
            "errorReason": _string(),
            "lastOperation": _object(
                {
                    "description": _string(),
                    "lastUpdated": {"type": "string", "format": "date-time"},
                    "state": _string(),
                    "type": _string(),
                }
            ),
            "lastUpdated": {"type": "string", "format": "date-time"},
            "nodeRef": node_ref,
            "phase": _string(),
            "providerID": _string(),
            "providerStatus": _free_form("Provider-specific status (a RawExtension)."),
        }
    )


def _label_selector() -> Schema:
    expression = _object(
        {"key": _string(), "operator": _string(), "values": {"type": "array", "items": _string()}},
        required=["key", "operator"],
    )
    selector = _object(
        {
            "matchExpressions": {"type": "array", "items": expression},
            "matchLabels": _string_map(),
        }
    )
    selector["x-kubernetes-map-type"] = "atomic"
    return selector


def _int32(**extra: Any) -> Schema:
    return {"type": "integer", "format": "int32", **extra}


def _machineset_spec() -> Schema:
    return _object(
        {
            "deletePolicy": {"type": "string", "enum": ["Random", "Newest", "Oldest"]},
            "minReadySeconds": _int32(),
            "replicas": _int32(default=1),
            "selector": _label_selector(),
            "template": _object({"metadata": _object_meta_subset(), "spec": _machine_spec()}),
        }
    )


def _machineset_status() -> Schema:
    return _object(
        {
            "availableReplicas": _int32(),
            "conditions": _conditions(),
            "errorMessage": _string(),
            "errorReason": _string(),
            "fullyLabeledReplicas": _int32(),
            "labelSelector": {"type": "string", "minLength": 1, "maxLength": 4096},
            "observedGeneration": {"type": "integer", "format": "int64"},
            "readyReplicas": _int32(),
            "replicas": _int32(),
        }
    )


def _crd(
    *,
    kind: str,
    plural: str,
    api_approved: str,
    spec: Schema,
    status: Schema,
    columns: list[dict[str, Any]],
    subresources: dict[str, Any],
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{resources.GROUP}",
            "annotations": {
                "api-approved.openshift.io": api_approved,
                "capability.openshift.io/name": "MachineAPI",
            },
        },
        "spec": {
            "group": resources.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": resources.VERSION,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": columns,
                    "subresources": subresources,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "apiVersion": _string(),
                                "kind": _string(),
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def _column(name: str, path: str, type_: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "jsonPath": path, "type": type_, **extra}


def machine_crd() -> dict[str, Any]:
    """The ``machines.machine.openshift.io`` CRD manifest."""
    return _crd(
        kind="Machine",
        plural="machines",
        api_approved="https://github.com/openshift/api/pull/948",
        spec=_machine_spec(),
        status=_machine_status(),
        subresources={"status": {}},
        columns=[
            _column("Phase", ".status.phase", description="Phase of machine"),
            _column("Type", ".metadata.labels['machine\\.openshift\\.io/instance-type']"),
            _column("Region", ".metadata.labels['machine\\.openshift\\.io/region']"),
            _column("Zone", ".metadata.labels['machine\\.openshift\\.io/zone']"),
            _column("Age", ".metadata.creationTimestamp", "date"),
            _column("Node", ".status.nodeRef.name", priority=1),
            _column("ProviderID", ".spec.providerID", priority=1),
            _column(
                "State",
                ".metadata.annotations['machine\\.openshift\\.io/instance-state']",
                priority=1,
            ),
        ],
    )


def machineset_crd() -> dict[str, Any]:
    """The ``machinesets.machine.openshift.io`` CRD manifest."""
    return _crd(
        kind="MachineSet",
        plural="machinesets",
        api_approved="https://github.com/openshift/api/pull/1032",
        spec=_machineset_spec(),
        status=_machineset_status(),
        subresources={
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.labelSelector",
            },
        },
        columns=[
            _column("Desired", ".spec.replicas", "integer"),
            _column("Current", ".status.replicas", "integer"),
            _column("Ready", ".status.readyReplicas", "integer"),
            _column("Available", ".status.availableReplicas", "string"),
            _column("Age", ".metadata.creationTimestamp", "date"),
        ],
    )


def manifests() -> list[dict[str, Any]]:
    """Both CRD manifests, Machine first."""
    return [machine_crd(), machineset_crd()]


def _established(crd: CustomResourceDefinition) -> bool:
    conditions = crd.status.conditions if crd.status else None
    return any(c.type == "Established" and c.status == "True" for c in conditions or [])


async def install_crds(client: AsyncClient, *, timeout: float = 30.0) -> None:
    """Apply the Machine and MachineSet CRDs and wait until both are Established.

    Idempotent: server-side apply with a fixed field manager, forced, so a second call (another test,
    another sandbox run against the same state dir) converges on the same manifests.

    Args:
        client: An admin client.
        timeout: Seconds to wait for the ``Established`` condition.

    Raises:
        TimeoutError: A CRD did not become Established in time.
    """
    names = []
    for manifest in manifests():
        crd = cast(CustomResourceDefinition, CustomResourceDefinition.from_dict(manifest))
        await client.apply(crd, field_manager=FIELD_MANAGER, force=True)
        names.append(manifest["metadata"]["name"])
    deadline = time.monotonic() + timeout
    for name in names:
        while not _established(await client.get(CustomResourceDefinition, name)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after {timeout}s")
            await asyncio.sleep(0.1)
    # Established is not yet servable: right after creation the API server answers 429 "storage is
    # (re)initializing" for a moment. Wait until a list works, so controllers start cleanly.
    for resource in (resources.Machine, resources.MachineSet):
        while True:
            try:
                _ = [obj async for obj in client.list(resource, namespace=ALL_NS)]
                break
            except ApiError as err:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{resource.__name__} not servable: {err}") from err
                await asyncio.sleep(0.1)
