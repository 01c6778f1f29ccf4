r"""The ONE place that generates the configuration files of a node's programs.

- containerd's TOML (``C:\k\containerd\containerd_conf.toml``): the CRI CNI directories of the
  network profile, the ``runhcs-wcow-process`` runtime, the pause image for the host's Windows
  build and the registry ``config_path`` (contract §4); on a Hyper-V node also the Hyper-V
  runtimes (:func:`containerd_config`'s ``hyperv_handlers``);
- the win-overlay CNI configuration (``C:\k\cni\config\cni.conf``, ``ovn-hybrid``), exactly
  ``shared/reference/windows-networking.md`` §1.3;
- kube-proxy's ``KubeProxyConfiguration`` (``C:\k\kube-proxy.conf``, ``ovn-hybrid``), JSON text
  (which is YAML, what kube-proxy reads);
- and, not generated but shipped beside them as package data, our ``hns.psm1``
  (``C:\Temp\hns.psm1``, ``ovn-hybrid``), which makes the VIP endpoint (:func:`hns_module`).

All three are pure functions of their inputs, so the operator can hash the result and compare it
with the host's copy before deciding whether anything (and which service) must change.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import ipaddress
import json
import re
from collections.abc import Sequence
from typing import Any, Final

from wmco import names, settings
from wmco.windows import layout

# --- Pause image ------------------------------------------------------------------------------

PAUSE_REPOSITORY: Final = "mcr.microsoft.com/oss/kubernetes/pause"
DEFAULT_PAUSE_IMAGE: Final = f"{PAUSE_REPOSITORY}:3.10.2"
"""3.10.2 is the first pause whose manifest list has a Windows Server 2025 (26100) entry; it also
serves 2019 (17763) and 2022 (20348)."""

_PAUSE_FOR_BUILD: Final = {
    17763: DEFAULT_PAUSE_IMAGE,
    20348: DEFAULT_PAUSE_IMAGE,
    26100: DEFAULT_PAUSE_IMAGE,
}
SUPPORTED_BUILDS: Final = frozenset(_PAUSE_FOR_BUILD)
"""Windows builds the operator configures (it knows their pause image): 2019, 2022, 2025."""
_WS2025_BUILD: Final = 26100
_WS2025_MIN_PAUSE: Final = (3, 10, 2)
_PAUSE_TAG: Final = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def pause_image(build: int, override: str | None = None) -> str:
    """The sandbox image containerd uses on a host of Windows build ``build``.

    Args:
        build: ``CurrentBuildNumber`` of the host (17763, 20348, 26100...).
        override: The ``pause_image`` setting, which wins when set.

    Returns:
        The image reference.
    """
    if override:
        return override
    return _PAUSE_FOR_BUILD.get(build, DEFAULT_PAUSE_IMAGE)


def pause_serves_build(image: str, build: int) -> bool | None:
    """Whether a pause image of the upstream repository has an entry for ``build``.

    Returns:
        ``False`` for an upstream pause older than 3.10.2 on Windows Server 2025 or later
        (containerd then fails every sandbox with "no match for platform in manifest"),
        ``True`` for an upstream pause known to serve it, ``None`` for any other image (a mirror:
        the operator cannot tell).
    """
    repository, _, tag = image.rpartition(":")
    match = _PAUSE_TAG.fullmatch(tag)
    if repository != PAUSE_REPOSITORY or match is None:
        return None
    version = tuple(int(part or 0) for part in match.groups())
    return build < _WS2025_BUILD or version >= _WS2025_MIN_PAUSE


# --- containerd -------------------------------------------------------------------------------


def _toml_string(value: str, what: str) -> str:
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError(f"{what} contains a control character")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


RUNHCS_RUNTIME_TYPE: Final = "io.containerd.runhcs.v1"
_HANDLER: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _hyperv_runtime(cri: str, handler: str) -> tuple[str, ...]:
    """One Hyper-V runtime: runhcs with each pod in a utility VM.

    ``SandboxIsolation = 1`` is hcsshim's HYPERVISOR isolation (``runhcs.proto``);
    ``SandboxPlatform`` is required with it by hcsshim since microsoft/hcsshim#2473 (containerd's
    own default omits it and breaks on containerd 2.2.1+, microsoft/hcsshim#2619);
    ``ScaleCpuLimitsToSandbox`` scales a container's CPU limit from the host's core count to the
    VM's, as containerd's default Hyper-V runtime does. No pod or container annotations are let
    through: a tenant must not resize or reconfigure its utility VM.
    """
    if not _HANDLER.fullmatch(handler):
        raise ValueError(f"runtime handler {handler!r} is not a DNS label")
    table = f"{cri}.containerd.runtimes.{handler}"
    return (
        f"{table}]",
        f'  runtime_type = "{RUNHCS_RUNTIME_TYPE}"',
        "",
        f"{table}.options]",
        "  SandboxIsolation = 1",
        '  SandboxPlatform = "windows/amd64"',
        "  ScaleCpuLimitsToSandbox = true",
        "",
    )


def containerd_config(
    profile: settings.NetworkProfile,
    sandbox_image: str,
    hyperv_handlers: Sequence[str] = (),
) -> str:
    """The configuration of containerd (``version = 2``, which containerd 1.7 and 2.x both load).

    Args:
        profile: ``ovn-hybrid`` or ``hostprocess``: decides ``bin_dir`` and ``conf_dir``.
        sandbox_image: From :func:`pause_image`.
        hyperv_handlers: Hyper-V runtimes to define besides ``runhcs-wcow-process`` (a Hyper-V
            node's ``runhcs-wcow-hypervisor`` and per-build handlers); none on other nodes.

    Returns:
        The TOML text.

    Raises:
        ValueError: The profile is ``auto``, the image has control characters, or a handler is
            not a DNS label.
    """
    dirs = layout.cni_dirs(profile)

    def q(value: str, what: str = "path") -> str:
        return _toml_string(value, what)

    cri = '[plugins."io.containerd.grpc.v1.cri"'
    hyperv = tuple(
        line for handler in dict.fromkeys(hyperv_handlers) for line in _hyperv_runtime(cri, handler)
    )
    return "\n".join(
        (
            "version = 2",
            f"root = {q(layout.CONTAINERD_ROOT)}",
            f"state = {q(layout.CONTAINERD_STATE)}",
            "",
            "[grpc]",
            f"  address = {q(layout.CONTAINERD_PIPE)}",
            "",
            f"{cri}]",
            f"  sandbox_image = {q(sandbox_image, 'sandbox image')}",
            "",
            f"{cri}.containerd]",
            '  snapshotter = "windows"',
            f'  default_runtime_name = "{names.PROCESS_HANDLER}"',
            "",
            f"{cri}.containerd.runtimes.{names.PROCESS_HANDLER}]",
            f'  runtime_type = "{RUNHCS_RUNTIME_TYPE}"',
            "",
            *hyperv,
            f"{cri}.cni]",
            f"  bin_dir = {q(dirs.bin_dir)}",
            f"  conf_dir = {q(dirs.conf_dir)}",
            "  max_conf_num = 1",
            '  conf_template = ""',
            '  ip_pref = "ipv4"',
            "",
            f"{cri}.registry]",
            f"  config_path = {q(layout.CONTAINERD_REGISTRIES_DIR)}",
            "",
        )
    )


# --- CNI (ovn-hybrid) -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class OverlayNetwork:
    """The parts of the overlay HNS network the CNI configuration is made of.

    Attributes:
        address_prefix: ``Subnets[0].AddressPrefix`` (the node's hybrid-overlay subnet).
        management_ip: ``ManagementIP``, the host's underlay address (the provider address).
    """

    address_prefix: str
    management_ip: str


def cni_config(network: OverlayNetwork, service_cidr: str) -> str:
    """The win-overlay configuration of windows-networking.md §1.3, as JSON text.

    Args:
        network: The overlay network as the host reports it.
        service_cidr: The cluster's service network.

    Returns:
        The JSON text (``name`` is the HNS network's, which win-overlay looks up).

    Raises:
        ValueError: The prefix, the service CIDR or the management IP is not an address.
    """
    subnet = str(ipaddress.ip_network(network.address_prefix, strict=False))
    services_cidr = str(ipaddress.ip_network(service_cidr, strict=False))
    provider = str(ipaddress.ip_address(network.management_ip))
    config: dict[str, Any] = {
        "cniVersion": "0.2.0",
        "name": names.HYBRID_OVERLAY_NETWORK,
        "type": "win-overlay",
        "apiVersion": 2,
        "capabilities": {"portMappings": True, "dns": True},
        "ipam": {"type": "host-local", "subnet": subnet},
        "policies": [
            {
                "name": "EndpointPolicy",
                "value": {
                    "type": "OutBoundNAT",
                    "settings": {
                        "exceptionList": [services_cidr],
                        "destinationPrefix": "",
                        "needEncap": False,
                    },
                },
            },
            {
                "name": "EndpointPolicy",
                "value": {
                    "type": "SDNRoute",
                    "settings": {
                        "exceptionList": [],
                        "destinationPrefix": services_cidr,
                        "needEncap": True,
                    },
                },
            },
            {
                "name": "EndpointPolicy",
                "value": {"type": "ProviderAddress", "settings": {"providerAddress": provider}},
            },
        ],
    }
    return json.dumps(config, indent=2) + "\n"


# --- kube-proxy (ovn-hybrid) ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class KubeProxyInputs:
    """What differs from node to node in kube-proxy's configuration.

    Attributes:
        node_name: ``hostnameOverride``.
        node_subnet: ``clusterCIDR``: the node's hybrid-overlay subnet (not the cluster's).
        source_vip: ``winkernel.sourceVip``: the VIP endpoint's address.
        debug: ``logging.verbosity`` 4 instead of 2.
    """

    node_name: str
    node_subnet: str
    source_vip: str
    debug: bool = False


def kube_proxy_config(inputs: KubeProxyInputs) -> str:
    """The ``KubeProxyConfiguration`` of contract §4 (winkernel, DSR, the overlay network).

    Raises:
        ValueError: The subnet or the VIP is not an address.
    """
    config: dict[str, Any] = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": layout.KUBECONFIG},
        "clusterCIDR": str(ipaddress.ip_network(inputs.node_subnet, strict=False)),
        "featureGates": {"WinDSR": True, "WinOverlay": True},
        "hostnameOverride": inputs.node_name,
        "mode": "kernelspace",
        "winkernel": {
            "enableDSR": True,
            "networkName": names.HYBRID_OVERLAY_NETWORK,
            "sourceVip": str(ipaddress.ip_address(inputs.source_vip)),
        },
        "logging": {"verbosity": 4 if inputs.debug else 2},
    }
    return json.dumps(config, separators=(",", ":"))


# --- hns.psm1 ---------------------------------------------------------------------------------

HNS_MODULE_RESOURCE: Final = "hns.psm1"


@functools.cache
def hns_module() -> bytes:
    """Our hns.psm1 (New-HNSEndpoint, Attach-HNSHostEndpoint, Invoke-HNSRequest), as shipped."""
    return importlib.resources.files("wmco.windows").joinpath(HNS_MODULE_RESOURCE).read_bytes()
