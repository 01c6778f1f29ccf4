"""The Machine API's resource handles and every name it shares with the cluster.

The objects are handled as plain JSON dictionaries (``Obj``): the Machine API types are wide and
mostly free-form (``providerSpec.value``), and the controllers read a handful of paths from them.
Typed models would add a second, partial copy of the schema in :mod:`.crds` for no gain.

Names follow openshift/api ``machine/v1beta1`` and openshift/machine-api-operator (MAO); see
``shared/reference/machine-api.md`` §2.
"""

from __future__ import annotations

from typing import Any, Final, cast

from lightkube.generic_resource import GenericNamespacedResource, create_namespaced_resource

Obj = dict[str, Any]
"""A Kubernetes object as JSON (what ``to_dict()`` returns)."""

GROUP: Final = "machine.openshift.io"
VERSION: Final = "v1beta1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

Machine: type[GenericNamespacedResource] = create_namespaced_resource(
    GROUP, VERSION, "Machine", "machines"
)
MachineSet: type[GenericNamespacedResource] = create_namespaced_resource(
    GROUP, VERSION, "MachineSet", "machinesets"
)

DEFAULT_NAMESPACE: Final = "openshift-machine-api"

# --- Finalizer, labels, annotations (machine-api.md §2) ----------------------------------------

MACHINE_FINALIZER: Final = "machine.machine.openshift.io"
"""Added by the machine controller; removed once the instance and the Node are gone."""

CLUSTER_LABEL: Final = "machine.openshift.io/cluster-api-cluster"
MACHINESET_LABEL: Final = "machine.openshift.io/cluster-api-machineset"
INSTANCE_TYPE_LABEL: Final = "machine.openshift.io/instance-type"
REGION_LABEL: Final = "machine.openshift.io/region"
ZONE_LABEL: Final = "machine.openshift.io/zone"

DELETE_MACHINE_ANNOTATION: Final = "machine.openshift.io/delete-machine"
LEGACY_DELETE_MACHINE_ANNOTATION: Final = "machine.openshift.io/cluster-api-delete-machine"
INSTANCE_STATE_ANNOTATION: Final = "machine.openshift.io/instance-state"
EXCLUDE_DRAIN_ANNOTATION: Final = "machine.openshift.io/exclude-node-draining"
NODE_MACHINE_ANNOTATION: Final = "machine.openshift.io/machine"
"""On the Node, set by nodelink: ``<namespace>/<machine name>``."""

# --- Phases and error reasons (machine-api.md §1.1) --------------------------------------------

PHASE_PROVISIONING: Final = "Provisioning"
PHASE_PROVISIONED: Final = "Provisioned"
PHASE_RUNNING: Final = "Running"
PHASE_DELETING: Final = "Deleting"
PHASE_FAILED: Final = "Failed"

INVALID_CONFIGURATION: Final = "InvalidConfiguration"

USER_DATA_KEY: Final = "userData"
"""Data key of the user-data Secret named in ``providerSpec.value.userDataSecret.name``."""


def as_json(obj: Any) -> Obj:
    """A lightkube object (typed model or generic resource) as JSON."""
    return cast(Obj, obj.to_dict())


def machine_resource(body: Obj) -> GenericNamespacedResource:
    """A Machine JSON body as the lightkube object ``create`` takes."""
    return cast(GenericNamespacedResource, cast(Any, Machine)(body))


def machineset_resource(body: Obj) -> GenericNamespacedResource:
    """A MachineSet JSON body as the lightkube object ``create`` takes."""
    return cast(GenericNamespacedResource, cast(Any, MachineSet)(body))


def meta(obj: Obj) -> Obj:
    """The object's ``metadata`` (an empty dict when absent)."""
    value: Obj = obj.get("metadata") or {}
    return value


def name_of(obj: Obj) -> str:
    """The object's name."""
    return str(meta(obj).get("name", ""))


def labels_of(obj: Obj) -> dict[str, str]:
    """The object's labels (empty when none)."""
    value: dict[str, str] = meta(obj).get("labels") or {}
    return value


def annotations_of(obj: Obj) -> dict[str, str]:
    """The object's annotations (empty when none)."""
    value: dict[str, str] = meta(obj).get("annotations") or {}
    return value


def is_deleting(obj: Obj) -> bool:
    """Whether the object has a deletionTimestamp."""
    return bool(meta(obj).get("deletionTimestamp"))


def status_of(obj: Obj) -> Obj:
    """The object's ``status`` (an empty dict when absent)."""
    value: Obj = obj.get("status") or {}
    return value


def spec_of(obj: Obj) -> Obj:
    """The object's ``spec`` (an empty dict when absent)."""
    value: Obj = obj.get("spec") or {}
    return value


def internal_ips(machine_or_node: Obj) -> list[str]:
    """The ``InternalIP`` addresses in ``status.addresses`` (Machine or Node)."""
    return [
        str(a.get("address"))
        for a in status_of(machine_or_node).get("addresses") or []
        if a.get("type") == "InternalIP" and a.get("address")
    ]


def controller_owner(obj: Obj) -> Obj | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            value: Obj = ref
            return value
    return None
