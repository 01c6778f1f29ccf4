"""The service planner: which sc.exe steps, in which order, move a host to its declared services.

Pure functions of "what is declared" (:class:`wmco.windows.services.ServiceSpec`), "what the
host reported" (:class:`ObservedService`, from ``sc.exe qc`` / ``sc.exe query``) and "which files
are about to change". The result, a :class:`ServicePlan`, has three parts because the flow puts
the file writes in the middle (contract §5, issue 8 §4):

1. ``stop``: exactly the running services whose held files or definitions change, or that go
   away, plus the running services that depend on them (sc.exe refuses to stop a service whose
   dependents run: 1051), dependents first;
2. then the flow copies and writes the files; then ``apply``: delete, create, change;
3. ``start``: every declared service that is not running or was stopped in step 1,
   dependencies first.

Nothing else is stopped: a host whose only changes are live files (the kubelet's client CA, the
bootstrap kubeconfig, the CNI configuration) gets an empty ``stop``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Collection, Mapping, Sequence

from wmco.windows import answers, commands, services


class ActionKind(enum.StrEnum):
    """One sc.exe step."""

    CREATE = "create"
    CHANGE = "change"
    DESCRIBE = "describe"
    SET_RECOVERY = "set-recovery"
    STOP = "stop"
    START = "start"
    DELETE = "delete"


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceAction:
    """One step of a plan: what to do to which service (and the declaration, when relevant)."""

    kind: ActionKind
    service: str
    spec: services.ServiceSpec | None = None

    def command(self, *, bare: bool = False) -> str:
        """The exact command that performs this step (see :mod:`wmco.windows.commands`).

        ``bare``: the sc.exe statement alone, for a stage of a script (:mod:`wmco.windows.batch`).
        """
        spec = self.spec
        match self.kind:
            case ActionKind.CREATE:
                assert spec is not None
                return commands.create_service(
                    spec.name, spec.command_line, spec.depends_on, bare=bare
                )
            case ActionKind.CHANGE:
                assert spec is not None
                return commands.change_service(
                    spec.name, spec.command_line, spec.depends_on, bare=bare
                )
            case ActionKind.DESCRIBE:
                assert spec is not None
                return commands.set_service_description(spec.name, spec.description, bare=bare)
            case ActionKind.SET_RECOVERY:
                return commands.set_service_recovery(self.service, bare=bare)
            case ActionKind.STOP:
                return commands.stop_service(self.service, bare=bare)
            case ActionKind.START:
                return commands.start_service(self.service, bare=bare)
            case ActionKind.DELETE:
                return commands.delete_service(self.service, bare=bare)


@dataclasses.dataclass(frozen=True, slots=True)
class ObservedService:
    """What the host says about one service: ``None`` config means it does not exist (1060).

    Attributes:
        name: Service name.
        config: Parsed ``sc.exe qc``; ``None`` when the service does not exist.
        state: Parsed ``sc.exe query`` state; ``None`` when unknown or absent.
    """

    name: str
    config: answers.ServiceConfig | None = None
    state: answers.ServiceState | None = None

    @property
    def exists(self) -> bool:
        """Whether the service is installed."""
        return self.config is not None

    @property
    def active(self) -> bool:
        """Whether the service runs or is on its way (it must be stopped before changes)."""
        return self.state in (
            answers.ServiceState.RUNNING,
            answers.ServiceState.START_PENDING,
            answers.ServiceState.CONTINUE_PENDING,
            answers.ServiceState.PAUSED,
            answers.ServiceState.PAUSE_PENDING,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ServicePlan:
    """The steps of one pass, in three groups (see the module docstring).

    Attributes:
        stop: Run before any file changes.
        apply: Deletions, creations and changes, run after the files are written.
        start: Run last.
    """

    stop: tuple[ServiceAction, ...] = ()
    apply: tuple[ServiceAction, ...] = ()
    start: tuple[ServiceAction, ...] = ()

    @property
    def actions(self) -> tuple[ServiceAction, ...]:
        """Every step, in order."""
        return (*self.stop, *self.apply, *self.start)

    @property
    def stopped(self) -> tuple[str, ...]:
        """Services this plan stops, in stop order."""
        return tuple(action.service for action in self.stop)

    def __len__(self) -> int:
        return len(self.actions)


def needs_change(spec: services.ServiceSpec, config: answers.ServiceConfig) -> bool:
    """Whether the installed configuration differs from the declaration.

    Compares the command line (exactly, as sc.exe stores it), the start type (automatic) and the
    set of dependencies.
    """
    return (
        config.binary_path != spec.command_line
        or config.start_type is not answers.StartType.AUTO
        or frozenset(config.dependencies) != frozenset(spec.depends_on)
    )


def holders_of(specs: Sequence[services.ServiceSpec], changed_files: Collection[str]) -> set[str]:
    """The services that hold at least one of ``changed_files`` (Windows paths, any case)."""
    changed = {path.lower() for path in changed_files}
    return {spec.name for spec in specs if any(path.lower() in changed for path in spec.held_files)}


def plan_services(
    desired: Sequence[services.ServiceSpec],
    observed: Mapping[str, ObservedService],
    *,
    changed_files: Collection[str] = (),
    remove: Sequence[str] = (),
    deferred: Collection[str] = (),
) -> ServicePlan:
    """Plan the sc.exe steps that turn the observed services into the desired ones.

    Args:
        desired: Every declared service of the node (any order; dependencies are respected).
        observed: What the host reported, by service name. A name absent here is treated as not
            installed.
        changed_files: Files about to be written because their content differs on the host.
        remove: Managed service names that must not exist (pieces of another profile); removed
            only if observed as installed.
        deferred: Declared services whose turn comes later in the flow (kube-proxy waits for the
            network): this plan may stop them (a held file or a dependency changes) but neither
            creates, changes nor starts them.

    Returns:
        The plan; empty when the host is already as declared.

    Raises:
        ServiceSpecError: The declaration has duplicates or a cycle.
    """
    order = services.start_order(desired)
    by_name = {spec.name: spec for spec in desired}
    now = [name for name in order if name not in deferred]

    def seen(name: str) -> ObservedService:
        return observed.get(name, ObservedService(name=name))

    to_create = [name for name in now if not seen(name).exists]
    to_change = [
        name
        for name in now
        if (config := seen(name).config) is not None and needs_change(by_name[name], config)
    ]
    to_delete = [name for name in remove if name not in by_name and seen(name).exists]

    must_stop = {name for name in (*to_change, *to_delete) if seen(name).active}
    must_stop |= {name for name in holders_of(desired, changed_files) if seen(name).active}
    dependents = _installed_dependents(observed)
    frontier = list(must_stop)
    while frontier:
        current = frontier.pop()
        for dependent in dependents.get(current, ()):
            if dependent not in must_stop and seen(dependent).active:
                must_stop.add(dependent)
                frontier.append(dependent)

    stop = tuple(
        ServiceAction(ActionKind.STOP, name) for name in _stop_order(must_stop, dependents)
    )
    apply: list[ServiceAction] = [ServiceAction(ActionKind.DELETE, name) for name in to_delete]
    for name in to_create:
        spec = by_name[name]
        apply += [
            ServiceAction(ActionKind.CREATE, name, spec),
            ServiceAction(ActionKind.DESCRIBE, name, spec),
            ServiceAction(ActionKind.SET_RECOVERY, name, spec),
        ]
    for name in to_change:
        spec = by_name[name]
        apply += [
            ServiceAction(ActionKind.CHANGE, name, spec),
            ServiceAction(ActionKind.DESCRIBE, name, spec),
        ]
    start = tuple(
        ServiceAction(ActionKind.START, name, by_name[name])
        for name in now
        if name in must_stop or not seen(name).active
    )
    return ServicePlan(stop=stop, apply=tuple(apply), start=start)


def plan_service_removal(observed: Mapping[str, ObservedService]) -> list[ServiceAction]:
    """Plan stopping and deleting every observed, installed service (deconfiguration).

    Dependents are stopped before what they depend on; deletion follows the same order.
    """
    installed = {name for name, service in observed.items() if service.exists}
    dependents = _installed_dependents(observed)
    order = _stop_order(installed, dependents)
    actions = [ServiceAction(ActionKind.STOP, name) for name in order if observed[name].active]
    actions += [ServiceAction(ActionKind.DELETE, name) for name in order]
    return actions


def _installed_dependents(observed: Mapping[str, ObservedService]) -> dict[str, list[str]]:
    dependents: dict[str, list[str]] = {}
    for name, service in observed.items():
        if service.config is None:
            continue
        for dependency in service.config.dependencies:
            dependents.setdefault(dependency, []).append(name)
    return dependents


def _stop_order(names_to_stop: set[str], dependents: Mapping[str, list[str]]) -> list[str]:
    """Dependents before their dependencies; ties in reverse start order of managed services."""
    rank = {name: index for index, name in enumerate(reversed(services.ALL_MANAGED_SERVICES))}
    pending = sorted(names_to_stop, key=lambda name: (rank.get(name, -1), name))
    order: list[str] = []
    placed: set[str] = set()

    def place(name: str, trail: frozenset[str]) -> None:
        if name in placed or name in trail:
            return
        for dependent in dependents.get(name, ()):
            if dependent in names_to_stop:
                place(dependent, trail | {name})
        placed.add(name)
        order.append(name)

    for name in pending:
        place(name, frozenset())
    return order
