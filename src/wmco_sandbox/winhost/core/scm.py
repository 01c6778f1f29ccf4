"""The service control manager of a simulated host.

Real semantics, because the operator's correctness depends on them: a service's binary (first
token of its binPath) must exist on the disk to start (error 2); dependencies start first
(missing → 1075) and block stopping (1051); disabled services do not start (1058); deleting a
running service only marks it for deletion (1072). A service whose image (the binary, or the
child of ``kube-log-runner.exe``) has a registered program factory runs that program (kubelet,
containerd, kube-proxy...; see :mod:`~wmco_sandbox.winhost.core.processes`); any other service runs
as a plain process that does nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum

from wmco_sandbox.winhost.core.disk import DiskError, FileNode, VirtualDisk, WinPath
from wmco_sandbox.winhost.core.faults import Faults
from wmco_sandbox.winhost.core.processes import (
    Process,
    ProgramEnvironment,
    ProgramFactory,
    ProgramStartError,
)
from wmco_sandbox.winhost.core.winargv import split_command_line

__all__ = ["MESSAGES", "ScmError", "Service", "ServiceControlManager", "State"]

MESSAGES = {
    2: "The system cannot find the file specified.",
    5: "Access is denied.",
    1051: "A stop control has been sent to a service that other running services are dependent on.",
    1053: "The service did not respond to the start or control request in a timely fashion.",
    1056: "An instance of the service is already running.",
    1058: "The service cannot be started, either because it is disabled or because it has no "
    "enabled devices associated with it.",
    1060: "The specified service does not exist as an installed service.",
    1062: "The service has not been started.",
    1067: "The process terminated unexpectedly.",
    1068: "The dependency service or group failed to start.",
    1072: "The specified service has been marked for deletion.",
    1073: "The specified service already exists.",
    1075: "The dependency service does not exist or has been marked for deletion.",
}


class State(IntEnum):
    """Service states with their SCM numbers."""

    STOPPED = 1
    START_PENDING = 2
    STOP_PENDING = 3
    RUNNING = 4


class ScmError(Exception):
    """A failed SCM call; ``code`` is the Win32 error."""

    def __init__(self, code: int) -> None:
        super().__init__(f"{code}: {MESSAGES.get(code, '')}")
        self.code = code


START_TYPES = {"boot": 0, "system": 1, "auto": 2, "delayed-auto": 2, "demand": 3, "disabled": 4}


@dataclass
class Service:
    """One installed service.

    Attributes:
        name: Service name (case preserved; lookups are case-insensitive).
        bin_path: The command line exactly as given to ``binPath=``.
        start_type: ``auto``, ``delayed-auto``, ``demand``, ``disabled``, ``boot``, ``system``.
        depend: Names of services it depends on.
        display_name: Display name (defaults to the name).
        description: Set by ``sc.exe description``.
        failure_reset: ``reset=`` of ``sc.exe failure`` (seconds), if set.
        failure_actions: ``actions=`` pairs (action, delay ms).
        state: Current state.
        exit_code: WIN32_EXIT_CODE (1077 = never started).
        pid: Process id while running.
        last_pid: Process id of the latest start (shown by ``sc.exe start``).
        marked_for_deletion: Deleted while running: disappears when it stops.
    """

    name: str
    bin_path: str
    start_type: str = "demand"
    depend: list[str] = field(default_factory=list)
    display_name: str = ""
    description: str = ""
    failure_reset: str | None = None
    failure_actions: list[tuple[str, int]] = field(default_factory=list)
    state: State = State.STOPPED
    exit_code: int = 1077
    pid: int = 0
    last_pid: int = 0
    marked_for_deletion: bool = False
    process: Process | None = None
    started_at: float | None = None

    @property
    def argv(self) -> list[str]:
        """The binPath split with Windows rules."""
        return split_command_line(self.bin_path)

    @property
    def image_name(self) -> str:
        """Process name as Get-Process shows it (binary base name without ``.exe``)."""
        base = self.argv[0].replace("/", "\\").rsplit("\\", 1)[-1] if self.argv else ""
        return base[:-4] if base.lower().endswith(".exe") else base


def _image(path: str) -> str:
    base = path.replace("/", "\\").rsplit("\\", 1)[-1].lower()
    return base[:-4] if base.endswith(".exe") else base


def wrapped_program(argv: list[str]) -> list[str]:
    r"""The program a service really runs: the child of ``kube-log-runner.exe`` if it wraps one.

    ``kube-log-runner.exe -log-file=X C:\k\kubelet.exe --flag`` runs ``kubelet.exe --flag`` with its
    output sent to ``X`` (the Kubernetes log runner; kubelet and kube-proxy are wrapped in it on
    Windows). Any other argv is returned unchanged (the same list object).
    """
    if not argv or _image(argv[0]) != "kube-log-runner":
        return argv
    for index, arg in enumerate(argv[1:], start=1):
        if not arg.startswith("-"):
            return argv[index:]
    return argv


ServiceHook = Callable[[bool], Awaitable[None]]
"""Called with True after a service started and False after it stopped (e.g. sshd)."""


class ServiceControlManager:
    """Installed services and their states.

    Args:
        disk: The host's disk (binaries must exist to start).
        faults: Live faults (``failing_services``).
        env_factory: Builds the environment of a program for a service name.
        factories: Program simulations by image name (``kubelet``, ``containerd``...); the dict
            is shared with the machine, so programs registered later are used too.
        log: Host log sink.
    """

    def __init__(
        self,
        disk: VirtualDisk,
        faults: Faults,
        env_factory: Callable[[str], ProgramEnvironment],
        factories: dict[str, ProgramFactory],
        log: Callable[[str], None],
        start_time: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.disk = disk
        self.start_time = start_time
        self.faults = faults
        self.env_factory = env_factory
        self.factories = factories
        self.log = log
        self.services: dict[str, Service] = {}
        self.hooks: dict[str, ServiceHook] = {}
        self._pids = itertools.count(1200, 4)
        self._restarts: set[asyncio.Task[None]] = set()
        self.boot_failures: dict[str, int] = {}
        """Automatic services that did not start at the latest boot (lower-case name -> error)."""

    def get(self, name: str) -> Service | None:
        """The service (case-insensitive) or None."""
        return self.services.get(name.lower())

    def require(self, name: str) -> Service:
        """The service, or raise 1060."""
        svc = self.get(name)
        if svc is None:
            raise ScmError(1060)
        return svc

    def running(self, name: str) -> bool:
        """Whether the service is RUNNING."""
        svc = self.get(name)
        return svc is not None and svc.state is State.RUNNING

    def create(self, name: str, bin_path: str, **fields: object) -> Service:
        """Create a stopped service (1073 exists, 1072 marked for deletion)."""
        old = self.get(name)
        if old is not None:
            raise ScmError(1072 if old.marked_for_deletion else 1073)
        svc = Service(name=name, bin_path=bin_path, display_name=name)
        for key, value in fields.items():
            setattr(svc, key, value)
        self.services[name.lower()] = svc
        return svc

    def delete(self, name: str) -> None:
        """Delete, or mark for deletion when running (1072 if already marked)."""
        svc = self.require(name)
        if svc.marked_for_deletion:
            raise ScmError(1072)
        if svc.state is State.STOPPED:
            del self.services[name.lower()]
        else:
            svc.marked_for_deletion = True

    def dependents(self, name: str) -> list[Service]:
        """Services that depend on ``name``."""
        key = name.lower()
        return [s for s in self.services.values() if key in (d.lower() for d in s.depend)]

    async def start(self, name: str, *, _chain: tuple[str, ...] = ()) -> Service:
        """Start a service after its dependencies.

        Raises:
            ScmError: 1060, 1056, 1058, 1072, 1075, 1068 (a dependency failed), 2, 1053.
        """
        svc = self.require(name)
        if svc.marked_for_deletion:
            raise ScmError(1072)
        if svc.state in (State.RUNNING, State.START_PENDING):
            raise ScmError(1056)
        if svc.start_type == "disabled":
            raise ScmError(1058)
        for dep in svc.depend:
            dep_svc = self.get(dep)
            if dep_svc is None or dep_svc.marked_for_deletion:
                raise ScmError(1075)
            if dep.lower() in _chain:
                raise ScmError(1068)
            if dep_svc.state is not State.RUNNING:
                try:
                    await self.start(dep, _chain=(*_chain, name.lower()))
                except ScmError as exc:
                    self._dependency_failed(svc, dep_svc, exc.code)
                    raise ScmError(1068) from None
                if not self.running(dep_svc.name):  # its process ended while starting
                    self._dependency_failed(svc, dep_svc, dep_svc.exit_code)
                    raise ScmError(1068)
        argv = svc.argv
        binary = self.disk.get(argv[0]) if argv and argv[0] else None
        if not isinstance(binary, FileNode):
            raise ScmError(2)
        if svc.name.lower() in {f.lower() for f in self.faults.failing_services}:
            svc.exit_code = 1053
            raise ScmError(1053)
        program = wrapped_program(argv)
        if program is not argv and not isinstance(self.disk.get(program[0]), FileNode):
            # kube-log-runner starts, fails to exec its child, and exits at once.
            self.log(f"service {svc.name}: kube-log-runner cannot start {program[0]}")
            raise ScmError(1067)
        if delay := self.start_time():
            # The host profile's service start time: START_PENDING meanwhile, and a second
            # start is refused as for a running service (1056), as the SCM does.
            svc.state = State.START_PENDING
            try:
                await asyncio.sleep(delay)
            finally:
                svc.state = State.STOPPED
        svc.state, svc.exit_code, svc.pid = State.RUNNING, 0, next(self._pids)
        svc.last_pid, svc.started_at = svc.pid, time.time()
        factory = self.factories.get(_image(program[0]))
        if factory is not None:
            proc = factory(program, self.env_factory(svc.name))
            svc.process = proc
            try:
                await proc.start()
            except ProgramStartError as exc:
                self.log(f"service {svc.name} failed to start: {exc}")
                svc.process = None
                self._stopped(svc, 1067)
                return svc
        hook = self.hooks.get(svc.name.lower())
        if hook is not None:
            await hook(True)
        return svc

    def _dependency_failed(self, svc: Service, dependency: Service, code: int) -> None:
        """System event 7001, as the SCM logs it when a dependency did not start."""
        self.log(
            f"service {svc.name}: The {svc.display_name or svc.name} service depends on the "
            f"{dependency.display_name or dependency.name} service which failed to start because "
            f"of the following error: {MESSAGES.get(code, f'error {code}')}"
        )

    async def stop(self, name: str, *, force: bool = False) -> Service:
        """Stop a service (1062 not started, 1051 running dependents unless force)."""
        svc = self.require(name)
        if svc.state is State.STOPPED:
            raise ScmError(1062)
        running_deps = [d for d in self.dependents(name) if d.state is not State.STOPPED]
        if running_deps and not force:
            raise ScmError(1051)
        for dep in running_deps:
            await self.stop(dep.name, force=True)
        await self._terminate(svc)
        self._stopped(svc, 0)
        return svc

    async def _terminate(self, svc: Service) -> None:
        proc, svc.process = svc.process, None
        if proc is not None:
            await proc.stop()
        hook = self.hooks.get(svc.name.lower())
        if hook is not None:
            await hook(False)

    def _stopped(self, svc: Service, code: int) -> None:
        svc.state, svc.exit_code, svc.pid, svc.started_at = State.STOPPED, code, 0, None
        if svc.marked_for_deletion:
            self.services.pop(svc.name.lower(), None)

    def process_exited(self, name: str, code: int, reason: str) -> None:
        """A service's process died (e.g. the kubelet): STOPPED, then recovery actions."""
        svc = self.get(name)
        if svc is None or svc.state is State.STOPPED:
            return
        self.log(f"service {svc.name} exited with {code}: {reason}")
        svc.process = None
        self._stopped(svc, 1067)
        if svc.failure_actions and svc.failure_actions[0][0] == "restart":
            delay = svc.failure_actions[0][1] / 1000
            task = asyncio.get_running_loop().create_task(self._restart_later(svc.name, delay))
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

    async def _restart_later(self, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.start(name)
        except ScmError as exc:
            self.log(f"recovery restart of {name} failed: {exc}")

    async def stop_all(self) -> None:
        """Stop everything at once (reboot): processes are killed, hooks told."""
        for task in list(self._restarts):
            task.cancel()
        self.boot_failures.clear()
        for svc in list(self.services.values()):
            if svc.state is not State.STOPPED:
                await self._terminate(svc)
                self._stopped(svc, 0)

    async def start_automatic(self) -> None:
        """Boot: start every auto-start service, dependencies first; failures are logged.

        As the SCM does at boot: each automatic service is started (its dependencies first,
        whatever their own start type); one that fails is logged (system event 7000, or 7001 for
        a dependency, whose dependents fail with 1068) and the boot goes on. Nothing retries a
        service that failed to start (recovery actions are for processes that exit).
        """
        for svc in list(self.services.values()):
            if svc.start_type in ("auto", "delayed-auto", "boot", "system"):
                current = self.get(svc.name)
                if current is None or current.state is State.RUNNING:
                    continue
                try:
                    await self.start(svc.name)
                except ScmError as exc:
                    self.log(f"service {svc.name} failed to start at boot: {exc}")
                    self.boot_failures[svc.name.lower()] = exc.code
                else:
                    if not self.running(svc.name):  # its process ended while starting
                        self.boot_failures[svc.name.lower()] = current.exit_code

    def processes(self) -> list[Service]:
        """Running services (their processes)."""
        return [s for s in self.services.values() if s.state is State.RUNNING]

    def held_paths(self) -> set[WinPath]:
        """The files running services hold: each image and the child of ``kube-log-runner``.

        Windows maps a running program's image; while it runs the file cannot be overwritten,
        renamed or deleted. Paths are lower-cased components (see ``VirtualDisk.held``).
        """
        held: set[WinPath] = set()
        for svc in self.services.values():
            if svc.state is State.STOPPED:
                continue
            argv = svc.argv
            program = wrapped_program(argv)
            for image in {argv[0] if argv else "", program[0] if program else ""}:
                if not image:
                    continue
                try:
                    held.add(tuple(p.lower() for p in self.disk.parse(image)))
                except DiskError:
                    continue
        return held
