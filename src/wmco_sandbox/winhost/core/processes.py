"""The seam between the simulated Windows host and the simulated kubelet.

The host's service control manager knows nothing about Kubernetes: when it starts a service whose
binary is ``kubelet.exe`` it builds the argv from the service's binPath (Windows command-line
splitting rules) and hands it, together with a narrow view of the host
(:class:`KubeletEnvironment`), to a :data:`KubeletFactory`. The kubelet simulation
(``kubelet/``, written separately) lives on the other side of this interface, so that each
side can be built and tested on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "HostFacts",
    "KubeletConfigError",
    "KubeletEnvironment",
    "KubeletFactory",
    "KubeletProcess",
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


class KubeletEnvironment(Protocol):
    """What the kubelet simulation may see and do on its host."""

    facts: HostFacts

    def read_file(self, path: str) -> bytes | None:
        """Read a file of the virtual disk by Windows path; ``None`` if missing (or sunk)."""
        ...

    def write_file(self, path: str, data: bytes) -> None:
        """Write a file of the virtual disk (e.g. certificates under the cert dir)."""
        ...

    def service_running(self, name: str) -> bool:
        """Whether the named service (e.g. ``"containerd"``) is RUNNING."""
        ...

    def log(self, line: str) -> None:
        """Append a line to the host's kubelet log (readable by tests)."""
        ...

    def exited(self, code: int, reason: str) -> None:
        """Report that the kubelet died: the SCM marks the service STOPPED."""
        ...


class KubeletProcess(Protocol):
    """A running (simulated) kubelet, owned by the host's service control manager."""

    async def start(self) -> None:
        """Parse the command line and files; raise :class:`KubeletConfigError` if wrong."""
        ...

    async def stop(self) -> None:
        """Stop at once (service stop or reboot): heartbeats stop immediately."""
        ...


KubeletFactory = Callable[[list[str], KubeletEnvironment], KubeletProcess]
"""Builds a kubelet process from the argv parsed from binPath and the host environment."""


class KubeletConfigError(Exception):
    """The kubelet's command line or configuration files are wrong: the service fails to start."""
