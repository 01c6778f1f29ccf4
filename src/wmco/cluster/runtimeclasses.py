"""Which RuntimeClasses the operator keeps, and what to do about the ones that exist (pure).

Process isolation needs the container's Windows build to equal the host's, so the operator keeps
one RuntimeClass per Windows build present among the nodes it manages: ``windows-2019``,
``windows-2022``, ``windows-2025`` (handler ``runhcs-wcow-process``; ``scheduling.nodeSelector``
on ``kubernetes.io/os`` and ``node.kubernetes.io/windows-build``; a toleration for the
``os=Windows:NoSchedule`` taint every Windows node registers with). A pod naming one can only be
scheduled onto nodes of that build, and a pod naming none tolerates no Windows node.

With Hyper-V isolation on, nodes labelled ``windowsmachineconfig.openshift.io/hyperv=true`` also
get, per host build present among them:

* ``windows-<year>-hyperv``: handler ``runhcs-wcow-hypervisor`` (containerd's Hyper-V runtime),
  containers of the host's own build, each pod in its own utility VM;
* ``windows-<older>-hyperv-on-<year>``: handler ``runhcs-wcow-hypervisor-<older build>`` (AKS's
  per-build naming), for every older build Microsoft's rules allow: Hyper-V isolation runs
  *older* container builds on a newer host, never newer ones on an older host
  (learn.microsoft.com "Windows container version compatibility"; KEP-1301 non-goals).

Every Hyper-V RuntimeClass carries the pod ``overhead`` of a utility VM, :data:`HYPERV_OVERHEAD`.
A RuntimeClass is the operator's own when it carries ``app.kubernetes.io/managed-by:
windows-machine-config-operator``; :func:`decide` never changes or deletes any other (a user's
own ``windows-2022`` is a :attr:`Action.CONFLICT`, which the controller reports in an Event).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import Final

from lightkube.models.core_v1 import Toleration
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.node_v1 import Overhead, Scheduling
from lightkube.resources.core_v1 import Node
from lightkube.resources.node_v1 import RuntimeClass

from wmco import names

HYPERV_OVERHEAD: Final = (("memory", "1Gi"),)
"""``overhead.podFixed`` of a Hyper-V isolated pod: its utility VM's memory.

hcsshim sizes a Windows utility VM at ``MemorySizeInMB: 1024`` unless told otherwise
(``internal/uvm/create.go``, ``newDefaultOptions``; containerd's runhcs options leave
``VmMemorySizeInMb`` unset). The VM's two virtual processors are time-shared, not reserved, so no
CPU overhead is charged."""

_TOLERATION: Final = (
    names.WINDOWS_TAINT_KEY,
    "Equal",
    names.WINDOWS_TAINT_VALUE,
    names.WINDOWS_TAINT_EFFECT,
)


def parse_build(label: str | None) -> int | None:
    """The build number of a ``node.kubernetes.io/windows-build`` label (``10.0.20348`` -> 20348)."""
    if not label:
        return None
    parts = label.split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return None
    return int(parts[2])


def older_builds(host_build: int) -> tuple[int, ...]:
    """The known builds older than ``host_build``: what Hyper-V isolation may run on it."""
    return tuple(sorted(build for build in names.WINDOWS_YEARS if build < host_build))


def hyperv_handlers(host_build: int) -> tuple[str, ...]:
    """The Hyper-V runtime handlers containerd defines on a Hyper-V host of ``host_build``.

    ``runhcs-wcow-hypervisor`` (the host's own build) first, then one per older build.
    """
    return (
        names.HYPERV_HANDLER,
        *(names.hyperv_build_handler(build) for build in older_builds(host_build)),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ManagedNode:
    """What a node the operator manages says about the RuntimeClasses it can serve.

    Attributes:
        name: The node's name.
        build: Its Windows build (``None`` when the label is missing or malformed).
        hyperv: Whether it is labelled for Hyper-V isolation.
    """

    name: str
    build: int | None
    hyperv: bool


def managed_nodes(nodes: Iterable[Node]) -> list[ManagedNode]:
    """The Windows nodes the operator configured (or is configuring), with their facts.

    A node counts once it carries the operator's ``version`` or ``desired-version`` annotation:
    a Windows node someone else runs is none of the operator's business.
    """
    found = []
    for node in nodes:
        metadata = node.metadata
        if metadata is None or not metadata.name:
            continue
        labels = metadata.labels or {}
        annotations = metadata.annotations or {}
        if labels.get(names.OS_LABEL) != names.OS_LABEL_WINDOWS:
            continue
        if not (
            names.VERSION_ANNOTATION in annotations
            or names.DESIRED_VERSION_ANNOTATION in annotations
        ):
            continue
        found.append(
            ManagedNode(
                name=metadata.name,
                build=parse_build(labels.get(names.WINDOWS_BUILD_LABEL)),
                hyperv=labels.get(names.HYPERV_LABEL) == names.TRUE,
            )
        )
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class Desired:
    """A RuntimeClass the operator wants to exist, as comparable values.

    Attributes:
        name: Its name.
        handler: ``handler`` (immutable once created).
        node_selector: ``scheduling.nodeSelector`` as sorted pairs.
        tolerations: ``scheduling.tolerations`` as (key, operator, value, effect).
        overhead: ``overhead.podFixed`` as sorted pairs (empty: no overhead).
    """

    name: str
    handler: str
    node_selector: tuple[tuple[str, str], ...]
    tolerations: tuple[tuple[str, str, str, str], ...] = (_TOLERATION,)
    overhead: tuple[tuple[str, str], ...] = ()


def _selector(build: int, *, hyperv: bool) -> tuple[tuple[str, str], ...]:
    selector = {
        names.OS_LABEL: names.OS_LABEL_WINDOWS,
        names.WINDOWS_BUILD_LABEL: f"10.0.{build}",
    }
    if hyperv:
        selector[names.HYPERV_LABEL] = names.TRUE
    return tuple(sorted(selector.items()))


def desired(nodes: Iterable[ManagedNode], *, hyperv: bool) -> dict[str, Desired]:
    """Every RuntimeClass that should exist for these nodes, by name.

    Args:
        nodes: The managed nodes (:func:`managed_nodes`).
        hyperv: Whether Hyper-V isolation is on (the ``hyperv`` setting is not ``off``); when it
            is off no Hyper-V RuntimeClass exists, whatever the nodes' labels say.

    Returns:
        The wanted RuntimeClasses. Builds the operator has no year for get none.
    """
    wanted: dict[str, Desired] = {}
    known = [node for node in nodes if node.build in names.WINDOWS_YEARS]
    for build in sorted({node.build for node in known if node.build is not None}):
        name = names.runtime_class_name(names.WINDOWS_YEARS[build])
        wanted[name] = Desired(name, names.PROCESS_HANDLER, _selector(build, hyperv=False))
    if not hyperv:
        return wanted
    for build in sorted({node.build for node in known if node.hyperv and node.build}):
        year = names.WINDOWS_YEARS[build]
        selector = _selector(build, hyperv=True)
        name = names.runtime_class_name(year, hyperv=True)
        wanted[name] = Desired(name, names.HYPERV_HANDLER, selector, overhead=HYPERV_OVERHEAD)
        for older in older_builds(build):
            name = names.runtime_class_name(names.WINDOWS_YEARS[older], hyperv=True, host_year=year)
            wanted[name] = Desired(
                name, names.hyperv_build_handler(older), selector, overhead=HYPERV_OVERHEAD
            )
    return wanted


def all_names() -> tuple[str, ...]:
    """Every name a managed RuntimeClass can have (what RBAC's resourceNames list)."""
    result: list[str] = []
    for build, year in sorted(names.WINDOWS_YEARS.items()):
        result.append(names.runtime_class_name(year))
        result.append(names.runtime_class_name(year, hyperv=True))
        for older in older_builds(build):
            result.append(
                names.runtime_class_name(names.WINDOWS_YEARS[older], hyperv=True, host_year=year)
            )
    return tuple(result)


# --- The existing object -----------------------------------------------------------------------


def is_managed(existing: RuntimeClass) -> bool:
    """Whether a RuntimeClass carries the operator's managed-by label."""
    labels = (existing.metadata.labels if existing.metadata else None) or {}
    return labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE


def observed(existing: RuntimeClass) -> Desired:
    """An existing RuntimeClass in the comparable shape of :class:`Desired`."""
    scheduling = existing.scheduling
    selector: Mapping[str, str] = (scheduling.nodeSelector if scheduling else None) or {}
    tolerations = tuple(
        (t.key or "", t.operator or "Equal", t.value or "", t.effect or "")
        for t in ((scheduling.tolerations if scheduling else None) or [])
    )
    overhead: Mapping[str, str] = (existing.overhead.podFixed if existing.overhead else None) or {}
    return Desired(
        name=(existing.metadata.name if existing.metadata else None) or "",
        handler=existing.handler,
        node_selector=tuple(sorted((str(k), str(v)) for k, v in selector.items())),
        tolerations=tolerations,
        overhead=tuple(sorted((str(k), str(v)) for k, v in overhead.items())),
    )


def differences(want: Desired, have: Desired) -> list[str]:
    """The fields in which ``have`` departs from ``want`` (empty: nothing to do)."""
    fields = (
        ("handler", want.handler, have.handler),
        ("scheduling.nodeSelector", want.node_selector, have.node_selector),
        ("scheduling.tolerations", want.tolerations, have.tolerations),
        ("overhead", want.overhead, have.overhead),
    )
    return [name for name, wanted, had in fields if wanted != had]


class Action(enum.StrEnum):
    """What the controller does about one RuntimeClass name."""

    NONE = "none"
    CREATE = "create"
    RESTORE = "restore"
    """Ours, edited: replace its scheduling and overhead with what they must be."""
    RECREATE = "recreate"
    """Ours with another handler (immutable): delete it and create it again."""
    DELETE = "delete"
    """Ours, and no node needs it any more."""
    CONFLICT = "conflict"
    """Wanted, but a RuntimeClass of that name exists that is not ours: leave it, report it."""


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """An :class:`Action` and the fields that made it (for RESTORE and RECREATE)."""

    action: Action
    changed: tuple[str, ...] = ()


def decide(want: Desired | None, existing: RuntimeClass | None) -> Decision:
    """What to do about one name, given what should exist and what does.

    Args:
        want: The wanted RuntimeClass of that name, ``None`` when none should exist.
        existing: The RuntimeClass of that name in the cluster, if any.

    Returns:
        The decision; anything not labelled as the operator's is never touched.
    """
    if existing is None:
        return Decision(Action.CREATE if want is not None else Action.NONE)
    if not is_managed(existing):
        return Decision(Action.CONFLICT if want is not None else Action.NONE)
    if want is None:
        return Decision(Action.DELETE)
    changed = tuple(differences(want, observed(existing)))
    if not changed:
        return Decision(Action.NONE)
    return Decision(Action.RECREATE if "handler" in changed else Action.RESTORE, changed)


def manifest(want: Desired, existing: RuntimeClass | None = None) -> RuntimeClass:
    """The object to create, or to replace ``existing`` with.

    ``existing``'s labels, annotations and resourceVersion are kept, so the replace is
    conditional and leaves what others added.
    """
    metadata = existing.metadata if existing is not None else None
    labels = dict((metadata.labels if metadata else None) or {})
    labels[names.MANAGED_BY_LABEL] = names.MANAGED_BY_VALUE
    return RuntimeClass(
        metadata=ObjectMeta(
            name=want.name,
            labels=labels,
            annotations=(metadata.annotations if metadata else None),
            resourceVersion=(metadata.resourceVersion if metadata else None),
        ),
        handler=want.handler,
        scheduling=Scheduling(
            nodeSelector=dict(want.node_selector),
            tolerations=[
                Toleration(key=key, operator=operator, value=value, effect=effect)
                for key, operator, value, effect in want.tolerations
            ],
        ),
        overhead=Overhead(podFixed=dict(want.overhead)) if want.overhead else None,
    )
