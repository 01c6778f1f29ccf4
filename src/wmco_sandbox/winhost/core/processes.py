"""The seam between the service control manager and the programs it runs.

The SCM knows nothing about Kubernetes or networking: when it starts a service whose image (the
binary, or the child of ``kube-log-runner.exe``) has a registered :data:`ProgramFactory`, it
builds the argv from the service's binPath (Windows command-line splitting rules) and hands it,
with a :class:`ProgramEnvironment` (a narrow view of the host), to that factory. The programs
(``kubelet/``, ``containerd/``, ``agents/``) live on the other side of this interface, above the
core, so each side can be built and tested on its own. A service whose image has no factory runs
as a plain process that does nothing.

The kubelet talks to containerd only through :class:`CriRuntime`, the simulated CRI: its status
(RuntimeReady / NetworkReady, as ``crictl info`` shows them) and pod sandboxes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from wmco_sandbox.winhost.core.disk import VirtualDisk
from wmco_sandbox.winhost.network.hns import HnsState

__all__ = [
    "ContainerBehaviour",
    "ContainerRecord",
    "ContainerRequest",
    "CriError",
    "CriRuntime",
    "CriStatus",
    "HostFacts",
    "KubeletConfigError",
    "KubeletEnvironment",
    "KubeletFactory",
    "KubeletProcess",
    "PodSandbox",
    "PodSandboxRequest",
    "Process",
    "ProgramEnvironment",
    "ProgramFactory",
    "ProgramStartError",
    "ServiceStatus",
]


@dataclass(frozen=True, slots=True)
class HostFacts:
    """Immutable facts about a simulated Windows host, as the kubelet would report them.

    Attributes:
        hostname: The host name, lower case (e.g. ``"win-0a1b2c"``).
        address: The host's IPv4 address (e.g. ``"127.0.3.7"``).
        windows_build: ``"10.0.17763"``, ``"10.0.20348"`` or ``"10.0.26100"``.
        os_image: e.g. ``"Windows Server 2022 Datacenter"``.
        kernel_version: e.g. ``"10.0.20348.2527"``.
    """

    hostname: str
    address: str
    windows_build: str
    os_image: str
    kernel_version: str


@dataclass(frozen=True, slots=True)
class CriStatus:
    """containerd's CRI ``Status``: the two runtime conditions the kubelet reads.

    Attributes:
        runtime_ready: ``RuntimeReady``.
        network_ready: ``NetworkReady``.
        network_reason: Reason of a false NetworkReady (``NetworkPluginNotReady``).
        network_message: Message of a false NetworkReady (``Network plugin returns error: cni
            plugin not initialized``).
    """

    runtime_ready: bool
    network_ready: bool
    network_reason: str = ""
    network_message: str = ""


@dataclass(frozen=True, slots=True)
class PodSandboxRequest:
    """What the kubelet asks containerd for when it starts a pod (``RunPodSandbox``).

    Attributes:
        namespace: Pod namespace.
        name: Pod name.
        uid: Pod UID.
        host_network: ``spec.hostNetwork`` (HostProcess pods): no CNI call, the host's address.
        runtime_handler: The RuntimeClass handler; ``""`` means containerd's default runtime.
        images: The images of the pod's containers, in order.
    """

    namespace: str
    name: str
    uid: str
    host_network: bool = False
    runtime_handler: str = ""
    images: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PodSandbox:
    """A running pod sandbox: its id and the IP the CNI plugin gave it."""

    sandbox_id: str
    ip: str


@dataclass(frozen=True, slots=True)
class ContainerRequest:
    """One container the kubelet asks containerd to create and start in a pod sandbox.

    Attributes:
        pod_namespace: Pod namespace.
        pod_name: Pod name.
        pod_uid: Pod UID.
        node_name: The node the pod runs on (what a downward-API ``spec.nodeName`` gives).
        name: Container name.
        image: Image reference as written in the pod spec.
        command: ``command``.
        args: ``args``.
        host_process: ``securityContext.windowsOptions.hostProcess``: it acts on the host itself.
    """

    pod_namespace: str
    pod_name: str
    pod_uid: str
    node_name: str
    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    host_process: bool = False


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """One compute system containerd runs, as HCS lists it (``hcsshim.GetContainers``).

    Every pod sandbox that is not hostNetwork (its pause container) and every container that is
    not HostProcess is one; HostProcess containers are job objects, not compute systems.

    Attributes:
        container_id: 64 hex digits (without the ``containerd://`` prefix).
        pod_uid: The pod's UID.
        name: The container's name; ``""`` for the pod sandbox itself.
        started_at: Unix time it started.
    """

    container_id: str
    pod_uid: str
    name: str
    started_at: float


ContainerBehaviour = Callable[[ContainerRequest, "ProgramEnvironment"], Awaitable[list[str]]]
"""What a container of a given image does when it starts; returns the lines it logs.

Registered by image name without tag or digest in ``Machine.container_behaviours`` (the sandbox
registers stand-ins for HostProcess DaemonSets that write a CNI configuration and create an HNS
network). An image without a behaviour just runs; its log is synthesised by containerd.
"""


class CriError(Exception):
    """A CRI call failed; the message is containerd's gRPC error text (``rpc error: ...``)."""


class CriRuntime(Protocol):
    """The simulated CRI a running containerd offers the kubelet."""

    def status(self) -> CriStatus:
        """RuntimeReady and NetworkReady, evaluated now (config files are read on demand)."""
        ...

    def runtime_version(self) -> str:
        """The ``runtimeVersion`` of the CRI ``Version`` call (containerd's release, ``v2.2.9``)."""
        ...

    async def run_pod_sandbox(self, request: PodSandboxRequest) -> PodSandbox:
        """Create the pod's sandbox and network; raise :class:`CriError` the way containerd does."""
        ...

    async def remove_pod_sandbox(self, uid: str) -> None:
        """Tear down the pod's sandbox and release its address (no error if unknown)."""
        ...

    async def start_container(self, sandbox_id: str, request: ContainerRequest) -> None:
        """Create and start a container (its behaviour runs); raise :class:`CriError` if it fails."""
        ...

    def container_log(self, pod_uid: str, container: str) -> str | None:
        """What the container wrote to its log so far; ``None`` if there is no such container."""
        ...

    def containers(self) -> list[ContainerRecord]:
        """The compute systems running now (pod sandboxes and process-isolated containers)."""
        ...


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One installed service as the SCM reports it (``EnumServicesStatusEx`` + ``QueryServiceConfig``).

    Attributes:
        name: Service name.
        display_name: Display name.
        state: ``running``, ``stopped``, ``start pending`` or ``stop pending``.
        start_type: ``auto``, ``delayed-auto``, ``demand``, ``disabled``, ``boot`` or ``system``.
        bin_path: The command line (``binPath=``).
        pid: Process id while running, else 0.
        started_at: Unix time of its latest start while running, else ``None``.
    """

    name: str
    display_name: str
    state: str
    start_type: str
    bin_path: str
    pid: int
    started_at: float | None


class ProgramEnvironment(Protocol):
    """What a program started by the SCM may see and do on its host."""

    facts: HostFacts
    service: str
    disk: VirtualDisk
    hns: HnsState

    @property
    def boot_time(self) -> float:
        """Unix time of the host's latest boot."""
        ...

    def services(self) -> list[ServiceStatus]:
        """Every installed service, as the SCM reports it now."""
        ...

    def read_file(self, path: str) -> bytes | None:
        """Read a file of the virtual disk by Windows path; ``None`` if missing (or sunk)."""
        ...

    def write_file(self, path: str, data: bytes) -> None:
        """Write a file of the virtual disk, creating missing parent directories."""
        ...

    def service_running(self, name: str) -> bool:
        """Whether the named service (e.g. ``"containerd"``) is RUNNING."""
        ...

    def cri(self) -> CriRuntime | None:
        """The CRI of the running containerd service; ``None`` while containerd is not running."""
        ...

    def firewall_allows(self, port: int) -> bool:
        """Whether the host firewall lets inbound TCP connections reach ``port``."""
        ...

    def hyperv_running(self) -> bool:
        """Whether the hypervisor runs (Hyper-V role enabled): utility VMs can start."""
        ...

    def log(self, line: str) -> None:
        """Append a line to this service's log (readable by tests)."""
        ...

    def exited(self, code: int, reason: str) -> None:
        """Report that the program died: the SCM marks the service STOPPED, then recovers it."""
        ...


class Process(Protocol):
    """A running (simulated) program, owned by the host's service control manager."""

    async def start(self) -> None:
        """Parse the command line and files; raise :class:`ProgramStartError` if wrong."""
        ...

    async def stop(self) -> None:
        """Stop at once (service stop or reboot)."""
        ...


ProgramFactory = Callable[[list[str], ProgramEnvironment], Process]
"""Builds a process from the argv parsed from binPath and the host environment."""


class ProgramStartError(Exception):
    """The program's command line or files are wrong: it exits at once and the service stops."""


# The kubelet was the first program behind this seam; its names stay for its callers.
KubeletConfigError = ProgramStartError
KubeletEnvironment = ProgramEnvironment
KubeletProcess = Process
KubeletFactory = ProgramFactory
