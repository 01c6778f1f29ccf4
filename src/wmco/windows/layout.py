r"""Where things live on a Windows node: every path the operator writes, reads or points at.

The paths are the reference operator's (``shared/reference/wmco-anchor.md`` §1.8) and the contract
of issue 8 (``/work/notes/issue8-contract.md`` §1), so its documentation and troubleshooting
guides stay true. The network profile decides the CNI directories containerd reads
(:func:`cni_dirs`) and which directories exist (:func:`required_directories`); everything else is
the same on every node.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from wmco import settings

K_DIR: Final = "C:\\k"
TEMP_DIR: Final = "C:\\Temp"
LOG_DIR: Final = "C:\\var\\log"
STAGING_DIR: Final = "C:\\Windows\\Temp"
"""Where the archives of a pass are uploaded before ``tar.exe`` unpacks them (every Windows has it)."""

# --- Binaries (the payload puts them there) ---------------------------------------------------

KUBELET_EXE: Final = "C:\\k\\kubelet.exe"
KUBE_PROXY_EXE: Final = "C:\\k\\kube-proxy.exe"
KUBE_LOG_RUNNER_EXE: Final = "C:\\k\\kube-log-runner.exe"
WINDOWS_EXPORTER_EXE: Final = "C:\\k\\windows_exporter.exe"
HYBRID_OVERLAY_EXE: Final = "C:\\k\\hybrid-overlay-node.exe"
CONTAINERD_DIR: Final = "C:\\k\\containerd"
CONTAINERD_EXE: Final = "C:\\k\\containerd\\containerd.exe"
CONTAINERD_SHIM_EXE: Final = "C:\\k\\containerd\\containerd-shim-runhcs-v1.exe"

# --- Files the operator generates -------------------------------------------------------------

CONTAINERD_CONFIG: Final = "C:\\k\\containerd\\containerd_conf.toml"
CONTAINERD_REGISTRIES_DIR: Final = "C:\\k\\containerd\\registries"
KUBELET_CONFIG: Final = "C:\\k\\kubelet.conf"
BOOTSTRAP_KUBECONFIG: Final = "C:\\k\\bootstrap-kubeconfig"
KUBELET_CA: Final = "C:\\k\\kubelet-ca.crt"
BOOTSTRAP_CA: Final = "C:\\k\\bootstrap-ca.crt"
KUBE_PROXY_CONFIG: Final = "C:\\k\\kube-proxy.conf"
HNS_MODULE: Final = "C:\\Temp\\hns.psm1"
WINDOWS_EXPORTER_DIR: Final = "C:\\k\\windows_exporter"
WINDOWS_EXPORTER_WEB_CONFIG: Final = "C:\\k\\windows_exporter\\web-config.yml"
WINDOWS_EXPORTER_CERT: Final = "C:\\k\\windows_exporter\\tls.crt"
WINDOWS_EXPORTER_KEY: Final = "C:\\k\\windows_exporter\\tls.key"
"""windows_exporter's TLS: its exporter-toolkit web config, serving certificate and key."""

# --- Written by programs on the host ----------------------------------------------------------

KUBECONFIG: Final = "C:\\k\\kubeconfig"
"""The kubelet's kubeconfig after TLS bootstrap (node credentials); kube-proxy uses it too."""

KUBELET_CERT_DIR: Final = "C:\\var\\lib\\kubelet\\pki"

KUBELET_CLIENT_CERT: Final = KUBELET_CERT_DIR + "\\kubelet-client-current.pem"
"""The kubelet's client certificate and key (certificate block first), kept by its rotation."""

CNI_STATE_DIR: Final = "C:\\var\\lib\\cni"
"""host-local IPAM state (``networks\\<network>\\<ip>``); removed on deconfiguration."""

CONTAINERD_ENDPOINT: Final = "npipe://./pipe/containerd-containerd"
CONTAINERD_PIPE: Final = "\\\\.\\pipe\\containerd-containerd"
CONTAINERD_ROOT: Final = "C:\\ProgramData\\containerd\\root"
CONTAINERD_STATE: Final = "C:\\ProgramData\\containerd\\state"

# --- Logs -------------------------------------------------------------------------------------

CONTAINERD_LOG: Final = "C:\\var\\log\\containerd\\containerd.log"
KUBELET_LOG: Final = "C:\\var\\log\\kubelet\\kubelet.log"
KUBE_PROXY_LOG: Final = "C:\\var\\log\\kube-proxy\\kube-proxy.log"
HYBRID_OVERLAY_LOG: Final = "C:\\var\\log\\hybrid-overlay\\hybrid-overlay.log"
WINDOWS_EXPORTER_LOG: Final = "C:\\var\\log\\windows_exporter\\windows_exporter.log"

# --- CNI --------------------------------------------------------------------------------------

OVN_CNI_BIN_DIR: Final = "C:\\k\\cni"
OVN_CNI_CONF_DIR: Final = "C:\\k\\cni\\config"
OVN_CNI_CONFIG: Final = "C:\\k\\cni\\config\\cni.conf"
"""The win-overlay configuration the operator writes (``ovn-hybrid``)."""

HOSTPROCESS_CNI_BIN_DIR: Final = "C:\\opt\\cni\\bin"
HOSTPROCESS_CNI_CONF_DIR: Final = "C:\\etc\\cni\\net.d"
"""Where the HostProcess CNI DaemonSets (flannel, Calico, Antrea) write their configuration."""


@dataclasses.dataclass(frozen=True, slots=True)
class CniDirs:
    """The two directories of containerd's CRI CNI settings."""

    bin_dir: str
    conf_dir: str


def cni_dirs(profile: settings.NetworkProfile) -> CniDirs:
    """The CNI directories containerd reads under a network profile.

    Raises:
        ValueError: ``auto``, which must have been resolved at start-up.
    """
    match profile:
        case settings.NetworkProfile.OVN_HYBRID:
            return CniDirs(OVN_CNI_BIN_DIR, OVN_CNI_CONF_DIR)
        case settings.NetworkProfile.HOSTPROCESS:
            return CniDirs(HOSTPROCESS_CNI_BIN_DIR, HOSTPROCESS_CNI_CONF_DIR)
    raise ValueError(f"network profile {profile} was not resolved")


_COMMON_DIRECTORIES: Final = (
    K_DIR,
    CONTAINERD_DIR,
    CONTAINERD_REGISTRIES_DIR,
    KUBELET_CERT_DIR,
    LOG_DIR,
    LOG_DIR + "\\kubelet",
    LOG_DIR + "\\containerd",
    LOG_DIR + "\\windows_exporter",
    WINDOWS_EXPORTER_DIR,
)

_OVN_DIRECTORIES: Final = (
    TEMP_DIR,
    OVN_CNI_BIN_DIR,
    OVN_CNI_CONF_DIR,
    LOG_DIR + "\\kube-proxy",
    LOG_DIR + "\\hybrid-overlay",
)

_HOSTPROCESS_DIRECTORIES: Final = (HOSTPROCESS_CNI_BIN_DIR, HOSTPROCESS_CNI_CONF_DIR)


def required_directories(profile: settings.NetworkProfile) -> tuple[str, ...]:
    """Directories created on a host of this profile before any file is written."""
    extra = (
        _OVN_DIRECTORIES
        if profile is settings.NetworkProfile.OVN_HYBRID
        else _HOSTPROCESS_DIRECTORIES
    )
    return (*_COMMON_DIRECTORIES, *extra)


REMOVABLE_DIRECTORIES: Final = tuple(
    directory
    for directory in (*_COMMON_DIRECTORIES, *_OVN_DIRECTORIES, *_HOSTPROCESS_DIRECTORIES)
    if directory != TEMP_DIR
)
"""Every directory any profile makes except ``C:\\Temp``, which is not ours alone (only
:data:`HNS_MODULE` in it is); deconfiguration removes them, deepest first."""
