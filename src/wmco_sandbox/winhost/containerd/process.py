r"""The simulated ``containerd.exe``: the Windows service the SCM runs, with its CRI.

The service's command line is containerd's (urfave/cli flags, ``--flag value`` or
``--flag=value``): ``--config <toml>``, ``--log-file <path>``, ``--log-level <level>``,
``--run-service`` (talk to the SCM; without it a service start fails), ``--address``,
``--root``, ``--state``. An unknown flag ends it with Go's ``flag provided but not defined``.

``start()`` reads the configuration (:mod:`~wmco_sandbox.winhost.containerd.config`); what
containerd refuses ends the process with ``containerd: <error>`` in its log file (Windows
services' stderr goes to ``--log-file``), and the SCM marks the service stopped. Otherwise the
CRI plugin loads (:class:`~wmco_sandbox.winhost.containerd.sandboxes.CriService`) and the
process offers the kubelet :class:`~wmco_sandbox.winhost.core.processes.CriRuntime`.

Log lines are logrus text (``time="..." level=info msg="..." key=value``), filtered by
``--log-level``, written both to the service log (``env.log``) and appended to ``--log-file``.
The release simulated is the one the image is, as the real binary knows its own: for a real
``containerd.exe`` (a Go binary, whose build information the disk reads even when it keeps only
the digest of a big file) the version of the ``github.com/containerd/containerd/v2`` (or, for
1.x, ``github.com/containerd/containerd``) module it was built from; ``hack/payload/build.sh``
stamps ``version.Version`` with exactly that, so it is what the real one reports. For the fake
binaries of the generated payload it is read from their header (``WMCO-FAKE-BINARY
containerd.exe v1.7.27...``); 1.7.27 when there is neither. It decides which configuration
versions load. The revision logged is the stamped one: empty for a real binary (the module proxy
gives no commit), a fixed commit for a fake one.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import NoReturn

from wmco_sandbox.winhost.containerd import config as containerd_config
from wmco_sandbox.winhost.containerd import sandboxes as containerd_sandboxes
from wmco_sandbox.winhost.core.processes import (
    ContainerBehaviour,
    ContainerRecord,
    ContainerRequest,
    CriError,
    CriStatus,
    PodSandbox,
    PodSandboxRequest,
    Process,
    ProgramEnvironment,
    ProgramStartError,
)

__all__ = ["DEFAULT_VERSION", "ContainerdFactory", "SimulatedContainerd", "parse_argv"]

DEFAULT_VERSION = "v1.7.27"
DEFAULT_CONFIG = "C:\\Program Files\\containerd\\config.toml"
_REVISION = "883c4fd5bcc3d7b3dd43b4ee3e58d0b0dab2f2cb"
_LEVELS = {"trace": 0, "debug": 1, "info": 2, "warn": 3, "warning": 3, "error": 4, "fatal": 5}
_VALUE_FLAGS = {
    "config": "config",
    "c": "config",
    "log-level": "log-level",
    "l": "log-level",
    "address": "address",
    "a": "address",
    "root": "root",
    "state": "state",
    "log-file": "log-file",
    "service-name": "service-name",
}
_BOOL_FLAGS = {"run-service", "register-service", "unregister-service", "help", "h", "version", "v"}


def parse_argv(argv: list[str]) -> dict[str, str]:
    """Parse containerd's global flags (the program path first, or not).

    Returns:
        Flag name -> value (``"true"`` for boolean flags).

    Raises:
        ProgramStartError: On a flag containerd does not define, or a missing value.
    """
    args = list(argv)
    if args and not args[0].startswith("-"):
        args = args[1:]
    flags: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if not arg.startswith("-"):
            raise ProgramStartError(f"No help topic for '{arg}'")
        name, eq, value = arg.lstrip("-").partition("=")
        if name in _BOOL_FLAGS:
            flags[name] = value if eq else "true"
        elif name in _VALUE_FLAGS:
            if not eq:
                if index >= len(args):
                    raise ProgramStartError(f"flag needs an argument: -{name}")
                value = args[index]
                index += 1
            flags[_VALUE_FLAGS[name]] = value
        else:
            raise ProgramStartError(f"flag provided but not defined: -{name}")
    return flags


_MODULES = ("github.com/containerd/containerd/v2", "github.com/containerd/containerd")


def _binary_version(env: ProgramEnvironment, image: str) -> tuple[str, str]:
    """The release and revision of the containerd image at ``image``."""
    info = env.disk.build_info(image) if image else None
    for path in _MODULES:
        module = info.module(path) if info is not None else None
        if module is not None:
            return module.effective.version, ""
    data = env.read_file(image) if image else None
    match = re.search(rb"WMCO-FAKE-BINARY containerd(?:\.exe)? (v?\d+\.\d+\.\d+)", data or b"")
    if match is None:
        return DEFAULT_VERSION, _REVISION
    version = match.group(1).decode()
    return (version if version.startswith("v") else f"v{version}"), _REVISION


class ContainerdFactory:
    """The ``ProgramFactory`` of ``containerd.exe`` on one host; keeps containerd's state.

    Args:
        behaviours: What containers of an image do (``Machine.container_behaviours``; shared,
            so behaviours registered later are used too).
    """

    def __init__(self, behaviours: Mapping[str, ContainerBehaviour] | None = None) -> None:
        self.behaviours: Mapping[str, ContainerBehaviour] = (
            behaviours if behaviours is not None else {}
        )
        self.state = containerd_sandboxes.CriState()

    def __call__(self, argv: list[str], env: ProgramEnvironment) -> Process:
        """Build the process for one start of the service."""
        return SimulatedContainerd(argv, env, self)


class SimulatedContainerd:
    """One run of ``containerd.exe`` (a ``Process`` that implements ``CriRuntime``).

    Attributes:
        version: The containerd release simulated.
        revision: The commit it says it was built from.
        config: The loaded configuration (after ``start()``).
    """

    def __init__(
        self, argv: list[str], env: ProgramEnvironment, factory: ContainerdFactory
    ) -> None:
        self._argv = list(argv)
        self._env = env
        self._factory = factory
        self._level = _LEVELS["info"]
        self._log_file: str | None = None
        self._cri: containerd_sandboxes.CriService | None = None
        self.version = DEFAULT_VERSION
        self.revision = _REVISION
        self.config: containerd_config.ContainerdConfig | None = None

    # ------------------------------------------------------------------------------ logging

    def _write(self, line: str) -> None:
        self._env.log(line)
        if self._log_file:
            old = self._env.read_file(self._log_file) or b""
            self._env.write_file(self._log_file, old + line.encode() + b"\n")

    def log(self, level: str, message: str, fields: Mapping[str, str]) -> None:
        """Write a logrus text line, if ``--log-level`` lets it through."""
        if _LEVELS.get(level, 2) < self._level:
            return
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        parts = [f'time="{now}"', f"level={level}", f"msg={json.dumps(message)}"]
        parts += [f"{key}={json.dumps(value)}" for key, value in fields.items()]
        self._write(" ".join(parts))

    # ---------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Parse the flags and the configuration, then load the CRI plugin.

        Raises:
            ProgramStartError: containerd exits (its message is in the log file too).
        """
        try:
            flags = parse_argv(self._argv)
        except ProgramStartError as err:
            self._fail(str(err))
        self._log_file = flags.get("log-file")
        level = flags.get("log-level", "info").lower()
        if level not in _LEVELS:
            self._fail(f'not a valid logrus Level: "{level}"')
        self._level = _LEVELS[level]
        if "run-service" not in flags:
            self._fail(
                "The service process could not connect to the service controller "
                "(containerd was started as a service without --run-service)"
            )
        image = self._argv[0] if self._argv and not self._argv[0].startswith("-") else ""
        self.version, self.revision = _binary_version(self._env, image)
        path = flags.get("config", DEFAULT_CONFIG)
        data = self._env.read_file(path)
        if data is None and "config" not in flags:
            data = b""
        try:
            config = containerd_config.load_config(data, path, self.version)
        except containerd_config.ConfigError as err:
            for lvl, message in err.logged:
                self.log(lvl, message, {})
            self._fail(err.message)
        self.config = config
        self.log(
            "info", "starting containerd", {"revision": self.revision, "version": self.version}
        )
        for warning in config.warnings:
            self.log("warning", warning, {})
        if config.cri is None:
            plugin, _, error = config.cri_error.partition(": ")
            self.log("warning", plugin, {"error": error})
        self._cri = containerd_sandboxes.CriService(
            self._env, config, self._factory.state, self._factory.behaviours, self.log
        )
        self._cri.init()
        self.log("info", "serving...", {"address": config.grpc_address})
        self.log("info", "containerd successfully booted in 0.052317s", {})

    def _fail(self, message: str) -> NoReturn:
        self._write(f"containerd: {message}")
        raise ProgramStartError(f"containerd: {message}")

    async def stop(self) -> None:
        """Stop at once (the state survives, as containerd's root and state dirs do)."""
        if self._cri is not None:
            self.log("info", "Stop CRI service", {})
        self._cri = None

    # ---------------------------------------------------------------------------------- CRI

    def _service(self) -> containerd_sandboxes.CriService:
        if self._cri is None:
            raise CriError(containerd_sandboxes.NO_CRI)
        return self._cri

    def runtime_version(self) -> str:
        """The release simulated, as the CRI ``Version`` call reports it."""
        return self.version

    def status(self) -> CriStatus:
        """RuntimeReady and NetworkReady, evaluated now."""
        if self._cri is None:
            return CriStatus(False, False)
        return self._cri.status()

    async def run_pod_sandbox(self, request: PodSandboxRequest) -> PodSandbox:
        """Create a pod sandbox (see :class:`~containerd_sandboxes.CriService`)."""
        return await self._service().run_pod_sandbox(request)

    async def remove_pod_sandbox(self, uid: str) -> None:
        """Tear down a pod sandbox."""
        await self._service().remove_pod_sandbox(uid)

    async def start_container(self, sandbox_id: str, request: ContainerRequest) -> None:
        """Create and start a container."""
        await self._service().start_container(sandbox_id, request)

    def containers(self) -> list[ContainerRecord]:
        """The compute systems running now (none while the CRI plugin is down)."""
        return self._cri.containers() if self._cri else []

    def container_log(self, pod_uid: str, container: str) -> str | None:
        """A container's log so far."""
        return self._cri.container_log(pod_uid, container) if self._cri else None
