"""The CRI plugin of the simulated containerd: status, pod sandboxes, containers, their logs.

What the kubelet gets through :class:`~wmco_sandbox.winhost.core.processes.CriRuntime`, with
containerd 1.7's gRPC error texts (``pkg/cri/server/sandbox_run.go``):

* ``status()``: RuntimeReady while the CRI plugin loaded; NetworkReady per
  :func:`~wmco_sandbox.winhost.containerd.cni.load_network`, read at every call.
* ``run_pod_sandbox``: the pause image must serve the host's build (``code = NotFound desc =
  failed to get sandbox image ...: no match for platform in manifest: not found``); the
  RuntimeClass handler must be a configured runtime (``failed to get sandbox runtime: no runtime
  for "<h>" is configured``); a handler whose runhcs options say ``SandboxIsolation = 1`` needs
  the hypervisor (the Hyper-V role, enabled): without it HCS cannot start the pod's utility VM
  (``failed to create containerd task: failed to create shim task: hcs::CreateComputeSystem
  <id>@vm: The virtual machine could not be started because a required feature is not
  installed.: unknown``); a hostNetwork pod gets the host's address; any other goes through
  CNI ADD (``failed to setup network for sandbox "<id>": ...``).
* ``start_container``: runs the image's registered behaviour (the sandbox's HostProcess
  stand-ins), else synthesises a short log; the lines are kept for ``container_log``.
* ``remove_pod_sandbox``: CNI DEL (endpoint and address released).

The sandboxes live in a :class:`CriState` owned by the program factory, so they survive a
restart of the containerd service as containerd's state directory does (the shims keep the
containers running); at start, sandboxes made before the host's latest boot (their containers died
with it) or whose HNS endpoint vanished are dropped and their addresses released, so the kubelet
makes new ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from wmco_sandbox.winhost.containerd import cni as containerd_cni
from wmco_sandbox.winhost.containerd import config as containerd_config
from wmco_sandbox.winhost.containerd import images as containerd_images
from wmco_sandbox.winhost.containerd import plugins as containerd_plugins
from wmco_sandbox.winhost.core.processes import (
    ContainerBehaviour,
    ContainerRecord,
    ContainerRequest,
    CriError,
    CriStatus,
    PodSandbox,
    PodSandboxRequest,
    ProgramEnvironment,
)

__all__ = ["CriService", "CriState", "Sandbox"]

NETWORK_NOT_READY_REASON = "NetworkPluginNotReady"
NO_CRI = "rpc error: code = Unimplemented desc = unknown service runtime.v1.RuntimeService"


@dataclass(slots=True)
class Sandbox:
    """One pod sandbox and its containers' logs.

    Attributes:
        sandbox_id: 64 hex digits.
        request: What the kubelet asked for.
        ip: The pod's address.
        attachment: What CNI DEL must undo (``None`` for hostNetwork pods).
        logs: Container name -> the lines it logged.
        started_at: Unix time the sandbox was made.
        containers: Container name -> the compute system it runs as (``None``: HostProcess).
    """

    sandbox_id: str
    request: PodSandboxRequest
    ip: str
    attachment: containerd_plugins.Attachment | None = None
    logs: dict[str, list[str]] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    containers: dict[str, ContainerRecord | None] = field(default_factory=dict)


@dataclass(slots=True)
class CriState:
    """containerd's sandboxes, by pod UID (kept across restarts of the service)."""

    sandboxes: dict[str, Sandbox] = field(default_factory=dict)


Log = Callable[[str, str, Mapping[str, str]], None]
"""Writes one containerd log line: level, message, fields."""


def _metadata(request: PodSandboxRequest) -> str:
    return (
        f"&PodSandboxMetadata{{Name:{request.name},Uid:{request.uid},"
        f"Namespace:{request.namespace},Attempt:0,}}"
    )


class CriService:
    """The CRI plugin of one running containerd process.

    Args:
        env: The host as containerd sees it.
        config: The loaded configuration.
        state: The sandboxes (shared with the factory).
        behaviours: Container behaviours by image name without tag.
        log: containerd's logger.
    """

    def __init__(
        self,
        env: ProgramEnvironment,
        config: containerd_config.ContainerdConfig,
        state: CriState,
        behaviours: Mapping[str, ContainerBehaviour],
        log: Log,
    ) -> None:
        self._env = env
        self._config = config
        self._state = state
        self._behaviours = behaviours
        self._log = log
        self._last_cni_error: str | None = None

    @property
    def settings(self) -> containerd_config.CriSettings | None:
        """The CRI plugin's settings (``None``: the plugin failed to load)."""
        return self._config.cri

    # ------------------------------------------------------------------------------- start

    def init(self) -> None:
        """What the CRI plugin does when it loads: the conf dir, the first CNI load, GC."""
        cri = self._config.cri
        if cri is None:
            return
        self._env.disk.mkdir(cri.cni.conf_dir)
        loaded = self._load()
        if loaded.network is None:
            self._log(
                "error",
                "failed to load cni during init, please check CRI plugin status before setting "
                "up network for pods",
                {"error": loaded.error},
            )
        self._last_cni_error = loaded.error
        for uid, sandbox in list(self._state.sandboxes.items()):
            attachment = sandbox.attachment
            # Made before the latest boot: its containers died with the host (hostNetwork
            # sandboxes too); its endpoint vanished with the reboot.
            dead = sandbox.started_at < self._env.boot_time
            if dead or (attachment and attachment.endpoint_id not in self._env.hns.endpoints):
                if attachment:
                    containerd_plugins.delete(self._env.disk, self._env.hns, attachment)
                del self._state.sandboxes[uid]

    def _load(self) -> containerd_cni.CniLoad:
        assert self._config.cri is not None
        return containerd_cni.load_network(self._env.disk, self._config.cri.cni, self._env.hns)

    # ------------------------------------------------------------------------------ status

    def status(self) -> CriStatus:
        """RuntimeReady and NetworkReady, reading ``conf_dir`` now."""
        if self._config.cri is None:
            return CriStatus(False, False, NETWORK_NOT_READY_REASON, NO_CRI)
        loaded = self._load()
        if loaded.error != self._last_cni_error:
            if loaded.error:
                self._log(
                    "error",
                    "failed to reload cni configuration after receiving fs change "
                    f'event(WRITE "{self._config.cri.cni.conf_dir}")',
                    {"error": loaded.error},
                )
            self._last_cni_error = loaded.error
        if loaded.network is None:
            return CriStatus(
                True,
                False,
                NETWORK_NOT_READY_REASON,
                f"Network plugin returns error: {containerd_cni.CNI_NOT_INITIALIZED}",
            )
        return CriStatus(True, True)

    # --------------------------------------------------------------------------- sandboxes

    def _sandbox_error(self, request: PodSandboxRequest, message: str) -> CriError:
        self._log(
            "error", f"RunPodSandbox for {_metadata(request)} failed, error", {"error": message}
        )
        return CriError(message)

    async def run_pod_sandbox(self, request: PodSandboxRequest) -> PodSandbox:
        """Create a pod's sandbox and network (see the module docstring for the failures)."""
        cri = self._config.cri
        if cri is None:
            raise CriError(NO_CRI)
        self._log("info", f"RunPodSandbox for {_metadata(request)}", {})
        image = cri.sandbox_image
        if not containerd_images.pause_supports(image, self._env.facts.windows_build):
            raise self._sandbox_error(
                request,
                f'rpc error: code = NotFound desc = failed to get sandbox image "{image}": '
                f'failed to pull image "{image}": failed to pull and unpack image "{image}": '
                "no match for platform in manifest: not found",
            )
        handler = request.runtime_handler or cri.default_runtime_name
        if handler not in cri.runtimes:
            raise self._sandbox_error(
                request,
                "rpc error: code = Unknown desc = failed to get sandbox runtime: "
                f'no runtime for "{handler}" is configured',
            )
        sandbox_id = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
        if handler in cri.hypervisor_runtimes and not self._env.hyperv_running():
            raise self._sandbox_error(
                request,
                "rpc error: code = Unknown desc = failed to create containerd task: failed to "
                f"create shim task: hcs::CreateComputeSystem {sandbox_id}@vm: The virtual machine "
                "could not be started because a required feature is not installed.: unknown",
            )
        old = self._state.sandboxes.pop(request.uid, None)
        if old is not None and old.attachment is not None:
            containerd_plugins.delete(self._env.disk, self._env.hns, old.attachment)
        attachment: containerd_plugins.Attachment | None = None
        if request.host_network:
            ip = self._env.facts.address
        else:
            loaded = self._load()
            try:
                if loaded.network is None:
                    raise containerd_plugins.CniAddError(containerd_cni.CNI_NOT_INITIALIZED)
                attachment = containerd_plugins.add(
                    self._env.disk,
                    self._env.write_file,
                    self._env.hns,
                    loaded.network,
                    cri.cni.bin_dirs,
                    sandbox_id,
                )
            except containerd_plugins.CniAddError as err:
                raise self._sandbox_error(
                    request,
                    "rpc error: code = Unknown desc = failed to setup network for sandbox "
                    f'"{sandbox_id}": {err}',
                ) from None
            ip = attachment.ip
        self._state.sandboxes[request.uid] = Sandbox(sandbox_id, request, ip, attachment)
        self._log(
            "info",
            f'RunPodSandbox for {_metadata(request)} returns sandbox id "{sandbox_id}"',
            {},
        )
        return PodSandbox(sandbox_id, ip)

    async def remove_pod_sandbox(self, uid: str) -> None:
        """Tear down a pod's sandbox: CNI DEL, then forget it (no error if unknown)."""
        sandbox = self._state.sandboxes.pop(uid, None)
        if sandbox is None:
            return
        if sandbox.attachment is not None:
            with contextlib.suppress(Exception):
                containerd_plugins.delete(self._env.disk, self._env.hns, sandbox.attachment)
        self._log("info", f'RemovePodSandbox for "{sandbox.sandbox_id}" returns successfully', {})

    # -------------------------------------------------------------------------- containers

    async def start_container(self, sandbox_id: str, request: ContainerRequest) -> None:
        """Create and start a container: its behaviour, or a synthesised log."""
        sandbox = next(
            (s for s in self._state.sandboxes.values() if s.sandbox_id == sandbox_id), None
        )
        if sandbox is None:
            raise CriError(
                "rpc error: code = NotFound desc = failed to find sandbox "
                f'"{sandbox_id}": not found'
            )
        # The id the kubelet reports in the pod's status (containerd://<id>), so that what HCS
        # lists (windows_exporter) joins with kube-state-metrics' kube_pod_container_info.
        container_id = hashlib.sha256(f"{request.pod_uid}/{request.name}".encode()).hexdigest()
        behaviour = self._behaviours.get(containerd_images.image_name(request.image))
        if behaviour is None:
            lines = containerd_images.synthesised_log(request.image, request.command, request.args)
        else:
            lines = await behaviour(request, self._env)
        sandbox.logs[request.name] = list(lines)
        sandbox.containers[request.name] = (
            None
            if request.host_process
            else ContainerRecord(container_id, request.pod_uid, request.name, time.time())
        )
        self._log("info", f'StartContainer for "{container_id}" returns successfully', {})

    def containers(self) -> list[ContainerRecord]:
        """What HCS lists: each non-hostNetwork sandbox, each non-HostProcess container."""
        found: list[ContainerRecord] = []
        for uid, sandbox in self._state.sandboxes.items():
            if not sandbox.request.host_network:
                found.append(ContainerRecord(sandbox.sandbox_id, uid, "", sandbox.started_at))
            found += [record for record in sandbox.containers.values() if record is not None]
        return found

    def container_log(self, pod_uid: str, container: str) -> str | None:
        """What a container logged, one line each; ``None`` if there is no such container."""
        sandbox = self._state.sandboxes.get(pod_uid)
        if sandbox is None or container not in sandbox.logs:
            return None
        return "".join(f"{line}\n" for line in sandbox.logs[container])
