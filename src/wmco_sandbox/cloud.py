"""The sandbox's simulated cloud: one simulated Windows Server host per Machine (or listed host).

It implements the Machine API's :class:`~wmco_sandbox.machineapi.HostProvider` by starting a
:class:`~wmco_sandbox.winhost.host.WindowsHost` on its own loopback address, booted with the
Machine's user data and running the simulated kubelet, and it also boots the "bring your own host"
instances the sandbox lists in ``windows-instances``. It keeps every host it runs, so the progress
view and ``hosts.json`` can describe them, and stops them all on :meth:`close`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import itertools
import logging

from wmco_sandbox.machineapi import cloud as machine_cloud
from wmco_sandbox.winhost import kubelet as sim_kubelet
from wmco_sandbox.winhost.core import profile as host_profile
from wmco_sandbox.winhost.core.processes import ContainerBehaviour
from wmco_sandbox.winhost.host import WindowsHost, allocate_address

log = logging.getLogger(__name__)


class Origin(enum.StrEnum):
    """What brought a simulated host into the cluster."""

    MACHINE = "machine"
    CONFIGMAP = "configmap"


@dataclasses.dataclass
class SimHost:
    """A simulated host and how it came to be."""

    name: str
    origin: Origin
    year: str
    host: WindowsHost

    def describe(self) -> dict[str, object]:
        """The ``hosts.json`` entry of this host."""
        return {
            "name": self.name,
            "hostname": self.host.facts.hostname,
            "address": self.host.address,
            "ssh_port": self.host.port,
            "windows_build": self.host.facts.windows_build,
            "windows_version": f"Windows Server {self.year}",
            "brought_by": self.origin.value,
        }


class SimulatedCloud:
    """Boots and destroys simulated Windows hosts; a Machine API host provider."""

    def __init__(
        self,
        *,
        ssh_port: int,
        reboot_seconds: float = 1.0,
        lease_renew: float = 2.0,
        profile: host_profile.HostProfile = host_profile.FAST,
    ) -> None:
        self.ssh_port = ssh_port
        self.reboot_seconds = reboot_seconds
        self.profile = profile
        self.hosts: dict[str, SimHost] = {}
        self._ids = itertools.count(1)
        self._kubelet_factory = sim_kubelet.factory_with(
            lease_renew_interval=lease_renew,
            bootstrap_delay=profile.kubelet_bootstrap,
            registration_delay=profile.kubelet_registration,
        )
        self.container_behaviours: dict[str, ContainerBehaviour] = {}
        """Installed on every host booted from now on (stand-ins for HostProcess DaemonSets)."""

    def _new_host(self, year: str, hostname: str | None = None) -> WindowsHost:
        host = WindowsHost(
            address=allocate_address(),
            hostname=hostname,
            port=self.ssh_port,
            image=year,
            kubelet_factory=self._kubelet_factory,
            sink_threshold=64 * 1024,
            profile=self.profile,
        )
        host.faults.reboot_unreachable = self.reboot_seconds
        host.machine.container_behaviours.update(self.container_behaviours)
        return host

    async def boot(
        self, name: str, *, user_data: str, windows_build: str
    ) -> machine_cloud.BootedHost:
        """Boot the host of Machine ``name`` (the Machine API calls this)."""
        year = machine_cloud.WINDOWS_YEARS.get(windows_build, "2022")
        # Like vSphere and Azure, the cloud names the VM after its Machine.
        host = self._new_host(year, hostname=name.lower())
        self.hosts[name] = SimHost(name, Origin.MACHINE, year, host)
        await host.boot(user_data)
        log.info("cloud: booted %s (Windows Server %s) at %s", name, year, host.address)
        return machine_cloud.BootedHost(
            address=host.address, instance_id=f"i-{next(self._ids):08x}"
        )

    async def destroy(self, name: str) -> None:
        """Destroy the host of Machine ``name``; nothing happens if it is already gone."""
        sim = self.hosts.pop(name, None)
        if sim is not None:
            await sim.host.stop()
            log.info("cloud: destroyed %s", name)

    async def boot_listed(self, name: str, *, user_data: str, year: str) -> SimHost:
        """Boot a host the user brings (listed in ``windows-instances``)."""
        host = self._new_host(year)
        sim = SimHost(name, Origin.CONFIGMAP, year, host)
        self.hosts[name] = sim
        await host.boot(user_data)
        return sim

    async def close(self) -> None:
        """Stop every host still running."""
        hosts = list(self.hosts.values())
        self.hosts.clear()
        await asyncio.gather(*(sim.host.stop() for sim in hosts), return_exceptions=True)
