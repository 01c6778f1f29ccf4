r"""CNI ADD and DEL of a pod sandbox through the Windows plugins, with host-local IPAM.

The plugins: win-overlay, win-bridge, their sdn* successors and flannel's delegation to them.

ADD, as ``containernetworking/plugins`` does it with ``apiVersion: 2`` (HCN) or without (HNS v1):

1. the network plugin's binary must be in a ``bin_dir`` (libcni ``FindInPath``): otherwise
   ``failed to find plugin "<type>" in path [<dirs>]``;
2. the HNS network named by the config's ``name`` must exist (``error while
   hcn.GetNetworkByName(<n>): Network name "<n>" not found``; v1: ``error while
   GETHNSNewtorkByName(<n>): Network <n> not found``) and be of the plugin's type
   (``network <n> is of an unexpected type: <type>``);
3. host-local allocates the next free address of ``ipam.subnet`` (or ``ipam.ranges``) after the
   last one it reserved, skipping the gateway (the first address), and records it as
   ``C:\var\lib\cni\networks\<name>\<ip>`` (content: container id, CRLF, interface name) and
   ``last_reserved_ip.0``; a full range gives ``no IP addresses available in range set``;
4. an HNS endpoint ``<container id>_<network>`` with that address is created on the network.

Every failure is wrapped by libcni as ``plugin type="<type>" name="<name>" failed (add): ...``;
the address is released again, as containerd's teardown (CNI DEL) would. DEL removes the
endpoint and the host-local reservation. Chained plugins after the first (``portmap``...) only
have to exist. Other plugin types (Calico, Antrea) are not simulated: ADD fails saying so.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wmco_sandbox.winhost.containerd import cni as containerd_cni
from wmco_sandbox.winhost.core.disk import DirNode, DiskError, VirtualDisk
from wmco_sandbox.winhost.network.hns import HnsError, HnsState

__all__ = ["IPAM_DATA_DIR", "Attachment", "CniAddError", "add", "delete"]

IPAM_DATA_DIR = "C:\\var\\lib\\cni\\networks"
FLANNEL_SUBNET_ENV = "C:\\run\\flannel\\subnet.env"
_LAST_RESERVED = "last_reserved_ip.0"


class CniAddError(Exception):
    """CNI ADD failed; the message is libcni's (``plugin type=... failed (add): ...``)."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """A pod's network attachment, what DEL needs to undo it.

    Attributes:
        ip: The pod's IPv4 address.
        ipam_network: The host-local directory name (the network name), or ``""``.
        endpoint_id: The HNS endpoint's ID, or ``""``.
    """

    ip: str
    ipam_network: str = ""
    endpoint_id: str = ""


@dataclass(frozen=True, slots=True)
class _Effective:
    """What the interface plugin does: the HNS plugin type, its network, its IPAM."""

    hns_type: str
    network: str
    ipam: Mapping[str, Any]
    hcn: bool


class _Failed(Exception):
    """A plugin's own error text (before libcni's wrapping)."""


WriteFile = Callable[[str, bytes], None]


def _subnet(ipam: Mapping[str, Any]) -> ipaddress.IPv4Network:
    raw = ipam.get("subnet")
    if raw is None:
        ranges = ipam.get("ranges")
        if isinstance(ranges, list) and ranges and isinstance(ranges[0], list) and ranges[0]:
            first = ranges[0][0]
            raw = first.get("subnet") if isinstance(first, dict) else None
    if not isinstance(raw, str):
        raise _Failed("no IP ranges specified")
    try:
        return ipaddress.IPv4Network(raw, strict=False)
    except ValueError:
        raise _Failed(f"invalid CIDR {raw}") from None


def _allocate(
    disk: VirtualDisk, write: WriteFile, network: str, ipam: Mapping[str, Any], container_id: str
) -> str:
    subnet = _subnet(ipam)
    hosts = list(subnet.hosts())
    gateway = str(ipam.get("gateway") or hosts[0])
    directory = f"{IPAM_DATA_DIR}\\{network}"
    node = disk.get(directory)
    taken = {name for name in node.children} if isinstance(node, DirNode) else set()
    last = (disk.read_file(f"{directory}\\{_LAST_RESERVED}") or b"").decode().strip()
    start = next((i + 1 for i, h in enumerate(hosts) if str(h) == last), 0)
    for offset in range(len(hosts)):
        candidate = str(hosts[(start + offset) % len(hosts)])
        if candidate == gateway or candidate.lower() in taken:
            continue
        write(f"{directory}\\{candidate}", f"{container_id}\r\neth0".encode())
        write(f"{directory}\\{_LAST_RESERVED}", candidate.encode())
        return candidate
    raise _Failed(f"no IP addresses available in range set: {hosts[0]}-{hosts[-1]}")


def _release(disk: VirtualDisk, network: str, ip: str) -> None:
    with contextlib.suppress(DiskError):
        disk.remove(f"{IPAM_DATA_DIR}\\{network}\\{ip}")


def _flannel_ipam(disk: VirtualDisk, delegate: Mapping[str, Any]) -> Mapping[str, Any]:
    ipam = delegate.get("ipam")
    if isinstance(ipam, dict):
        return ipam
    env = disk.read_file(FLANNEL_SUBNET_ENV)
    if env is None:
        raise _Failed(
            "failed to load flannel 'subnet.env' file: open /run/flannel/subnet.env: The system "
            "cannot find the path specified.. Check the flannel pod log for this node."
        )
    values = dict(
        line.split("=", 1) for line in env.decode(errors="replace").splitlines() if "=" in line
    )
    return {"type": "host-local", "subnet": values.get("FLANNEL_SUBNET", "").strip()}


def _effective(disk: VirtualDisk, plugin: containerd_cni.CniPlugin) -> _Effective:
    conf, name = plugin.conf, str(plugin.conf["name"])
    if plugin.type in containerd_cni.HNS_PLUGIN_TYPES:
        raw_ipam = conf.get("ipam")
        ipam: Mapping[str, Any] = raw_ipam if isinstance(raw_ipam, dict) else {}
        return _Effective(plugin.type, name, ipam, conf.get("apiVersion") == 2)
    if plugin.type == "flannel":
        raw = conf.get("delegate")
        delegate: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
        hns_type = str(delegate.get("type", "win-bridge"))
        if hns_type in containerd_cni.HNS_PLUGIN_TYPES:
            hcn = delegate.get("apiVersion") == 2
            return _Effective(hns_type, name, _flannel_ipam(disk, delegate), hcn)
    raise _Failed(f'the simulated host does not implement the CNI plugin "{plugin.type}"')


def _attach(
    disk: VirtualDisk,
    write: WriteFile,
    hns: HnsState,
    plugin: containerd_cni.CniPlugin,
    container_id: str,
) -> Attachment:
    eff = _effective(disk, plugin)
    network = hns.network_named(eff.network)
    if network is None:
        if eff.hcn:
            raise _Failed(
                f"error while hcn.GetNetworkByName({eff.network}): "
                f'Network name "{eff.network}" not found'
            )
        raise _Failed(
            f"error while GETHNSNewtorkByName({eff.network}): Network {eff.network} not found"
        )
    wanted = containerd_cni.HNS_PLUGIN_TYPES[eff.hns_type]
    if network.type.lower() != wanted.lower():
        raise _Failed(f"network {eff.network} is of an unexpected type: {network.type}")
    ip: str | None = None
    if eff.ipam:
        ipam_type = str(eff.ipam.get("type", ""))
        try:
            if ipam_type != "host-local":
                raise _Failed(f'the simulated host does not implement the IPAM "{ipam_type}"')
            ip = _allocate(disk, write, eff.network, eff.ipam, container_id)
        except _Failed as err:
            if eff.hcn:
                raise _Failed(
                    "error while adding HostComputeEndpoint: error while processing endpoint "
                    f"args: error while executing IPAM addition: {err}"
                ) from None
            raise _Failed(f"error while ipam.ExecAdd: {err}") from None
    name = f"{container_id}_{eff.network}"
    try:
        endpoint = hns.create_endpoint(network.id, name, ip_address=ip)
    except HnsError as err:
        if ip is not None:
            _release(disk, eff.network, ip)
        if eff.hcn:
            raise _Failed(f"error while adding HostComputeEndpoint: {err}") from None
        raise _Failed(
            f"error while AddHnsEndpoint({name},{network.id},{container_id}): {err}"
        ) from None
    return Attachment(endpoint.ip_address, eff.network if ip else "", endpoint.id)


def add(
    disk: VirtualDisk,
    write: WriteFile,
    hns: HnsState,
    network: containerd_cni.NetworkConfig,
    bin_dirs: tuple[str, ...],
    container_id: str,
) -> Attachment:
    """CNI ADD of a pod sandbox to the default network.

    Args:
        disk: The host's disk.
        write: Writes a file, creating parent directories.
        hns: The host's HNS state.
        network: The loaded network configuration.
        bin_dirs: Where plugin binaries are looked up.
        container_id: The sandbox id.

    Returns:
        The attachment (the pod's IP).

    Raises:
        CniAddError: With libcni's message.
    """
    for index, plugin in enumerate(network.plugins):
        description = f'plugin type="{plugin.type}" name="{network.name}" failed (add)'
        path = containerd_cni.find_plugin(disk, plugin.type, bin_dirs)
        try:
            if path is None:
                raise _Failed(
                    f'failed to find plugin "{plugin.type}" in path [{" ".join(bin_dirs)}]'
                )
            if index == 0:
                ipam = plugin.conf.get("ipam")
                ipam_type = ipam.get("type") if isinstance(ipam, dict) else None
                if isinstance(ipam_type, str) and not containerd_cni.find_plugin(
                    disk, ipam_type, bin_dirs
                ):
                    raise _Failed(
                        f'failed to find plugin "{ipam_type}" in path [{" ".join(bin_dirs)}]'
                    )
                attachment = _attach(disk, write, hns, plugin, container_id)
        except _Failed as err:
            raise CniAddError(f"{description}: {err}") from None
    return attachment


def delete(disk: VirtualDisk, hns: HnsState, attachment: Attachment) -> None:
    """CNI DEL: remove the HNS endpoint and release the host-local address (idempotent)."""
    if attachment.endpoint_id and attachment.endpoint_id in hns.endpoints:
        hns.remove_endpoint(attachment.endpoint_id)
    if attachment.ipam_network:
        _release(disk, attachment.ipam_network, attachment.ip)
