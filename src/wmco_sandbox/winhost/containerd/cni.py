r"""Which CNI network configuration containerd's CRI plugin has loaded (go-cni semantics).

go-cni lists ``conf_dir`` for ``*.conf``, ``*.conflist`` and ``*.json`` (other files, such as
hybrid-overlay's ``ovnkube-client-*.pem`` next to ``cni.conf``, are never read), sorts them
lexically and loads them one by one until ``max_conf_num`` loaded: the first file that does not
load fails the whole load. With nothing loaded the CRI status reports ``NetworkReady=false``,
reason ``NetworkPluginNotReady``, message ``Network plugin returns error: cni plugin not
initialized`` (``shared/reference/windows-networking.md`` §0, §4).

The simulation asks more than go-cni before it calls the network ready, because the issue's
contract does (an approximation, in ``docs/windows-surface.md``): every plugin ``type`` must be a
binary ``<bin_dir>\<type>.exe`` and a win-overlay / win-bridge (sdnoverlay / sdnbridge, or a
flannel delegate of those) network must name an existing HNS network of type ``Overlay`` /
``L2Bridge``. A real containerd loads such a file and fails at sandbox creation instead.

Evaluated on demand (containerd watches the directory with fsnotify; the simulation reads it
whenever the kubelet asks for the status), so a removed file turns the node NotReady and a
restored one Ready within the kubelet's runtime check interval.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wmco_sandbox.winhost.containerd import config as containerd_config
from wmco_sandbox.winhost.core.disk import DirNode, FileNode, VirtualDisk
from wmco_sandbox.winhost.network.hns import HnsState

__all__ = [
    "CNI_NOT_INITIALIZED",
    "HNS_PLUGIN_TYPES",
    "CniLoad",
    "CniPlugin",
    "NetworkConfig",
    "find_plugin",
    "load_network",
]

CNI_NOT_INITIALIZED = "cni plugin not initialized"
CONF_EXTENSIONS = (".conf", ".conflist", ".json")
HNS_PLUGIN_TYPES: Mapping[str, str] = {
    "win-overlay": "Overlay",
    "sdnoverlay": "Overlay",
    "win-bridge": "L2Bridge",
    "sdnbridge": "L2Bridge",
}
"""CNI plugins that attach pods to an HNS network named by the config, and its required type."""


@dataclass(frozen=True, slots=True)
class CniPlugin:
    """One plugin of a network configuration list.

    Attributes:
        type: The plugin binary's name (``win-overlay``).
        conf: The plugin's JSON object (``name`` and ``cniVersion`` of the list injected).
    """

    type: str
    conf: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """A loaded CNI network configuration list (a ``.conf`` becomes a list of one).

    Attributes:
        name: The network name.
        cni_version: ``cniVersion``.
        plugins: The plugins, in order.
        file: The file it came from.
    """

    name: str
    cni_version: str
    plugins: tuple[CniPlugin, ...]
    file: str


@dataclass(frozen=True, slots=True)
class CniLoad:
    """The outcome of loading ``conf_dir``.

    Attributes:
        network: The default network (the first loaded), or ``None``.
        error: Why nothing loaded (go-cni's error, as containerd logs it), or ``""``.
    """

    network: NetworkConfig | None
    error: str = ""


def _conf_files(disk: VirtualDisk, conf_dir: str) -> list[str]:
    node = disk.get(conf_dir)
    if not isinstance(node, DirNode):
        return []
    names = [
        display
        for display, child in node.children.values()
        if isinstance(child, FileNode) and display.endswith(CONF_EXTENSIONS)
    ]
    return sorted(f"{conf_dir.rstrip(chr(92))}\\{name}" for name in names)


def _parse(path: str, data: bytes | None) -> NetworkConfig:
    """Parse one file as libcni does (``ConfFromBytes`` / ``ConfListFromBytes``)."""
    if data is None:
        raise ValueError(f"failed to load CNI config file {path}: error reading file")
    listing = path.endswith(".conflist")
    kind = "config list" if listing else "config"
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"failed to load CNI {kind} file {path}: error parsing configuration: {err}"
        ) from None
    if not isinstance(doc, dict):
        raise ValueError(f"failed to load CNI {kind} file {path}: error parsing configuration")
    name, version = doc.get("name"), doc.get("cniVersion")
    if not isinstance(name, str) or not name:
        raise ValueError(f"failed to load CNI {kind} file {path}: no name")
    if not isinstance(version, str) or not version:
        raise ValueError(f"failed to load CNI {kind} file {path}: no cniVersion")
    if listing:
        raw_plugins = doc.get("plugins")
        if not isinstance(raw_plugins, list):
            raise ValueError(
                f"failed to load CNI config list file {path}: error parsing configuration list: "
                "no 'plugins' key"
            )
    else:
        raw_plugins = [doc]
    plugins = []
    for raw in raw_plugins:
        plugin_type = raw.get("type") if isinstance(raw, dict) else None
        if not isinstance(plugin_type, str) or not plugin_type:
            raise ValueError(f"network type not found in {path}")
        plugins.append(CniPlugin(plugin_type, {**raw, "name": name, "cniVersion": version}))
    if not plugins:
        raise ValueError(f"CNI config list in config file {path} has no networks, skipping")
    return NetworkConfig(name, version, tuple(plugins), path)


def find_plugin(disk: VirtualDisk, plugin_type: str, bin_dirs: tuple[str, ...]) -> str | None:
    r"""The path of ``<dir>\<type>.exe`` in the first bin dir that has it (``FindInPath``)."""
    for directory in bin_dirs:
        path = f"{directory.rstrip(chr(92))}\\{plugin_type}.exe"
        if isinstance(disk.get(path), FileNode):
            return path
    return None


def _hns_network_of(plugin: CniPlugin) -> tuple[str, str] | None:
    """``(HNS network name, required type)`` the plugin attaches pods to, if it uses HNS."""
    if plugin.type in HNS_PLUGIN_TYPES:
        return str(plugin.conf["name"]), HNS_PLUGIN_TYPES[plugin.type]
    if plugin.type == "flannel":
        delegate = plugin.conf.get("delegate")
        delegate_type = "win-bridge"
        if isinstance(delegate, dict) and isinstance(delegate.get("type"), str):
            delegate_type = delegate["type"]
        if delegate_type in HNS_PLUGIN_TYPES:
            return str(plugin.conf["name"]), HNS_PLUGIN_TYPES[delegate_type]
    return None


def _usable(
    network: NetworkConfig, disk: VirtualDisk, bin_dirs: tuple[str, ...], hns: HnsState
) -> str:
    """Why the simulation does not call a parsed network ready (``""``: it is)."""
    for plugin in network.plugins:
        if find_plugin(disk, plugin.type, bin_dirs) is None:
            return f'failed to find plugin "{plugin.type}" in path [{" ".join(bin_dirs)}]'
        wanted = _hns_network_of(plugin)
        if wanted is None:
            continue
        hns_network = hns.network_named(wanted[0])
        if hns_network is None:
            return f'HNS network "{wanted[0]}" not found'
        if hns_network.type.lower() != wanted[1].lower():
            return f"network {wanted[0]} is of an unexpected type: {hns_network.type}"
    return ""


def load_network(disk: VirtualDisk, cni: containerd_config.CniSettings, hns: HnsState) -> CniLoad:
    """Load the default network from ``conf_dir`` as go-cni would, plus the readiness checks.

    Args:
        disk: The host's disk.
        cni: The CRI plugin's ``cni`` settings.
        hns: The host's HNS state.

    Returns:
        The loaded network, or why none is.
    """
    files = _conf_files(disk, cni.conf_dir)
    if not files:
        return CniLoad(
            None,
            f"cni config load failed: no network config found in {cni.conf_dir}: "
            f"{CNI_NOT_INITIALIZED}: failed to load cni config",
        )
    loaded: list[NetworkConfig] = []
    for path in files:
        try:
            network = _parse(path, disk.read_file(path))
        except ValueError as err:
            return CniLoad(None, f"cni config load failed: {err}: invalid cni config")
        loaded.append(network)
        if len(loaded) == max(cni.max_conf_num, 1):
            break
    first = loaded[0]
    reason = _usable(first, disk, cni.bin_dirs, hns)
    if reason:
        return CniLoad(None, f"cni config load failed: {first.file}: {reason}")
    return CniLoad(first)
