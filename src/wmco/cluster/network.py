"""Resolve the ``auto`` network profile once at start-up (contract §7).

``auto`` becomes:

- ``ovn-hybrid`` when ``networks.operator.openshift.io/cluster`` says OVN-Kubernetes with a
  non-empty ``hybridOverlayConfig.hybridClusterNetwork`` (OpenShift with the hybrid overlay:
  the reference operator's only network);
- ``hostprocess`` when that CRD or that object does not exist (plain Kubernetes, whose CNI and
  kube-proxy run as HostProcess DaemonSets);
- a refusal otherwise: an OVN-Kubernetes cluster without a hybrid overlay gives
  ``cluster is not configured for OVN hybrid networking`` (the reference operator's words), a
  malformed one ``invalid OVN hybrid networking configuration``, another network type names it.

An explicit profile is used as set, without looking at the cluster.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any, Final, cast

from wmco import kube, names, settings

NetworkConfig: Final = kube.global_custom_resource(
    names.NETWORK_OPERATOR_GROUP,
    names.NETWORK_OPERATOR_VERSION,
    names.NETWORK_OPERATOR_KIND,
    names.NETWORK_OPERATOR_PLURAL,
)
"""``networks.operator.openshift.io`` (cluster-scoped)."""

NOT_HYBRID: Final = "cluster is not configured for OVN hybrid networking"
INVALID_HYBRID: Final = "invalid OVN hybrid networking configuration"


class NetworkProfileError(ValueError):
    """The cluster's network cannot be served by any profile without the user choosing one."""


@dataclasses.dataclass(frozen=True, slots=True)
class HybridClusterNetwork:
    """One ``hybridClusterNetwork`` entry: where OVN-Kubernetes allocates Windows node subnets."""

    cidr: str
    host_prefix: int


def _section(document: Mapping[str, Any], *path: str) -> Any:
    current: Any = document
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def hybrid_cluster_networks(network_config: Mapping[str, Any]) -> tuple[HybridClusterNetwork, ...]:
    """The hybrid cluster networks of a ``networks.operator.openshift.io`` object.

    Raises:
        NetworkProfileError: An entry without a valid ``cidr`` and ``hostPrefix``.
    """
    entries = _section(
        network_config,
        "spec",
        "defaultNetwork",
        "ovnKubernetesConfig",
        "hybridOverlayConfig",
        "hybridClusterNetwork",
    )
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise NetworkProfileError(f"{INVALID_HYBRID}: hybridClusterNetwork is not a list")
    result = []
    for entry in entries:
        cidr = entry.get("cidr") if isinstance(entry, Mapping) else None
        host_prefix = entry.get("hostPrefix") if isinstance(entry, Mapping) else None
        try:
            network = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            raise NetworkProfileError(f"{INVALID_HYBRID}: cidr {cidr!r}") from None
        if (
            isinstance(host_prefix, bool)
            or not isinstance(host_prefix, int)
            or not network.prefixlen <= host_prefix <= network.max_prefixlen
        ):
            raise NetworkProfileError(f"{INVALID_HYBRID}: hostPrefix {host_prefix!r} for {cidr}")
        result.append(HybridClusterNetwork(str(network), host_prefix))
    return tuple(result)


def resolve_profile(
    setting: settings.NetworkProfile, network_config: Mapping[str, Any] | None
) -> settings.NetworkProfile:
    """The profile to use, given the setting and OpenShift's network configuration.

    Args:
        setting: The ``network_profile`` setting.
        network_config: ``networks.operator.openshift.io/cluster`` as a dict, ``None`` when the
            CRD or the object does not exist.

    Returns:
        ``ovn-hybrid`` or ``hostprocess`` (never ``auto``).

    Raises:
        NetworkProfileError: ``auto`` on a cluster no profile fits (the message says why).
    """
    if setting is not settings.NetworkProfile.AUTO:
        return setting
    if network_config is None:
        return settings.NetworkProfile.HOSTPROCESS
    network_type = _section(network_config, "spec", "defaultNetwork", "type")
    if network_type != names.OVN_KUBERNETES_NETWORK_TYPE:
        raise NetworkProfileError(
            f"cluster network type {network_type!r} is not supported: Windows nodes need "
            f"{names.OVN_KUBERNETES_NETWORK_TYPE} with a hybrid overlay, or set "
            "WMCO_NETWORK_PROFILE=hostprocess if the cluster's CNI runs as HostProcess DaemonSets"
        )
    if not hybrid_cluster_networks(network_config):
        raise NetworkProfileError(NOT_HYBRID)
    return settings.NetworkProfile.OVN_HYBRID


async def resolve(client: kube.Client, current: settings.Settings) -> settings.Settings:
    """The settings with ``network_profile`` resolved (read the cluster only for ``auto``).

    Raises:
        NetworkProfileError: No profile fits the cluster.
        kube.KubeError: The network configuration could not be read (other than 404).
    """
    if current.network_profile is not settings.NetworkProfile.AUTO:
        return current
    found = await kube.get(client, NetworkConfig, names.NETWORK_OPERATOR_NAME)
    document = dict(cast(Mapping[str, Any], found)) if found is not None else None
    profile = resolve_profile(current.network_profile, document)
    return dataclasses.replace(current, network_profile=profile)
