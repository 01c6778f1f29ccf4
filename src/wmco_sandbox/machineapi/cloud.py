"""The simulated cloud: what a Machine asks for, and the pluggable provider that boots hosts.

A real cloud actuator turns ``spec.providerSpec.value`` into an API call (``RunInstances``,
``CreateVM``...) and reports an instance id, addresses and a state. Here the "cloud API" is the
:class:`HostProvider` protocol: ``boot`` one simulated Windows host with the Machine's user data and
Windows build, ``destroy`` it on delete. The sandbox plugs in the simulated Windows host
(``wmco_sandbox.winhost``); tests plug in :class:`InMemoryHostProvider`.

This module holds only what is decided from the provider spec (pure functions: the Windows build,
zone/region/instance type, the providerID format) and the protocol. The Machine lifecycle that
calls it is :mod:`.machine`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

PROVIDER_ID_SCHEME: Final = "wmco-sandbox"
DEFAULT_ZONE: Final = "sandbox-1a"
DEFAULT_REGION: Final = "sandbox-1"
DEFAULT_INSTANCE_TYPE: Final = "sandbox.windows.large"

WINDOWS_BUILDS: Final[Mapping[str, str]] = {
    "2019": "10.0.17763",
    "2022": "10.0.20348",
    "2025": "10.0.26100",
}
"""Windows Server release (as it appears in image names) → OS build (``node.kubernetes.io/windows-build``
is its first three parts)."""

WINDOWS_YEARS: Final[Mapping[str, str]] = {build: year for year, build in WINDOWS_BUILDS.items()}
"""OS build → Windows Server release (the inverse of :data:`WINDOWS_BUILDS`)."""

DEFAULT_WINDOWS_BUILD: Final = WINDOWS_BUILDS["2022"]


@dataclass(frozen=True, slots=True)
class BootedHost:
    """What the cloud reports about a freshly booted instance.

    Attributes:
        address: The host's IPv4 address (becomes the Machine's ``InternalIP``).
        instance_id: The cloud's id of the instance (last segment of the providerID).
    """

    address: str
    instance_id: str


class HostProvider(Protocol):
    """The cloud API the simulated machine controller drives: one simulated Windows host per Machine."""

    async def boot(self, name: str, *, user_data: str, windows_build: str) -> BootedHost:
        """Boot a host for the Machine ``name`` with ``user_data`` (the Secret's ``userData``)."""
        ...

    async def destroy(self, name: str) -> None:
        """Destroy the host of the Machine ``name`` (no error if it is already gone)."""
        ...


class InvalidConfigurationError(Exception):
    """The Machine's provider configuration cannot work: the Machine goes ``Failed`` for good.

    MAO's ``InvalidMachineConfiguration``: the permanent-failure signal of an actuator.
    """


# --- Decisions from the provider spec -----------------------------------------------------------


def _image_strings(value: Mapping[str, Any]) -> Iterator[str]:
    """Every string that names the OS image, for the providers the WMCO docs cover.

    AWS ``ami`` (``id``/``arn``/``filters[].values``), Azure ``image`` (``sku``/``offer``/
    ``resourceID``...), vSphere ``template``, GCP ``disks[].image``, Nutanix ``image.name``, and a
    plain string ``image``.
    """

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, str):
            yield node
        elif isinstance(node, Mapping):
            for item in node.values():
                yield from walk(item)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    for key in ("image", "ami", "template"):
        yield from walk(value.get(key))
    for disk in value.get("disks") or []:
        if isinstance(disk, Mapping):
            yield from walk(disk.get("image"))


def windows_build(provider_value: Mapping[str, Any]) -> str:
    """The Windows build the image in the provider spec installs (default: Server 2022).

    Args:
        provider_value: ``spec.providerSpec.value`` of the Machine.

    Returns:
        ``10.0.17763`` for an image naming 2019, ``10.0.20348`` for 2022, ``10.0.26100`` for 2025.
    """
    for text in _image_strings(provider_value):
        for release in re.findall(r"(?<!\d)(20(?:19|22|25))(?!\d)", text):
            return WINDOWS_BUILDS[release]
    return DEFAULT_WINDOWS_BUILD


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an instance lands and what it is (becomes Machine labels and the providerID).

    Attributes:
        region: ``machine.openshift.io/region``.
        zone: ``machine.openshift.io/zone`` and the providerID's middle segment.
        instance_type: ``machine.openshift.io/instance-type``.
    """

    region: str
    zone: str
    instance_type: str


def placement(provider_value: Mapping[str, Any]) -> Placement:
    """Read region, zone and instance type from an AWS-, Azure- or GCP-shaped provider spec.

    Args:
        provider_value: ``spec.providerSpec.value`` of the Machine.

    Returns:
        The placement, with sandbox defaults for what the spec leaves out.
    """
    aws = provider_value.get("placement")
    aws = aws if isinstance(aws, Mapping) else {}
    region = aws.get("region") or provider_value.get("location") or provider_value.get("region")
    zone = aws.get("availabilityZone") or provider_value.get("zone")
    instance_type = (
        provider_value.get("instanceType")
        or provider_value.get("vmSize")
        or provider_value.get("machineType")
    )
    return Placement(
        region=str(region or DEFAULT_REGION),
        zone=str(zone or DEFAULT_ZONE),
        instance_type=str(instance_type or DEFAULT_INSTANCE_TYPE),
    )


def provider_id(zone: str, instance_id: str) -> str:
    """The providerID of an instance, AWS-shaped: ``wmco-sandbox:///<zone>/<instance-id>``.

    WMCO takes the instance id as the last ``/``-separated segment, as it does on AWS.
    """
    return f"{PROVIDER_ID_SCHEME}:///{zone}/{instance_id}"


def user_data_secret_name(provider_value: Mapping[str, Any]) -> str | None:
    """``providerSpec.value.userDataSecret.name``, if set."""
    ref = provider_value.get("userDataSecret")
    if isinstance(ref, Mapping) and ref.get("name"):
        return str(ref["name"])
    return None


# --- A provider for tests --------------------------------------------------------------------


@dataclass(slots=True)
class BootRecord:
    """What :class:`InMemoryHostProvider` was asked to boot.

    Attributes:
        host: What it reported.
        user_data: The user data it got.
        windows_build: The Windows build it got.
    """

    host: BootedHost
    user_data: str
    windows_build: str


@dataclass
class InMemoryHostProvider:
    """A :class:`HostProvider` that boots nothing: it records calls and hands out addresses.

    Addresses come from a random ``10.x.0.0/16`` per provider, so Nodes left over from another test
    cannot match a Machine of this one by InternalIP.

    Attributes:
        running: Hosts booted and not destroyed, by Machine name.
        booted: Every boot, in order (Machine names).
        destroyed: Every destroy, in order (Machine names).
        boot_delay: Seconds each boot takes (to make phases observable).
    """

    running: dict[str, BootRecord] = field(default_factory=dict)
    booted: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    boot_delay: float = 0.0
    _network: ipaddress.IPv4Network = field(
        default_factory=lambda: ipaddress.IPv4Network(f"10.{secrets.randbelow(200) + 50}.0.0/16")
    )
    _next_host: int = 10

    async def boot(self, name: str, *, user_data: str, windows_build: str) -> BootedHost:
        """Record the boot and return a fresh address and instance id."""
        if self.boot_delay:
            await asyncio.sleep(self.boot_delay)
        address = str(self._network[self._next_host])
        self._next_host += 1
        host = BootedHost(address=address, instance_id=f"i-{secrets.token_hex(8)}")
        self.running[name] = BootRecord(host, user_data, windows_build)
        self.booted.append(name)
        return host

    async def destroy(self, name: str) -> None:
        """Forget the host (idempotent)."""
        self.running.pop(name, None)
        self.destroyed.append(name)
