r"""What files a node must hold, as :class:`wmco.windows.transfer.Content` records (pure).

Two kinds: the payload's files (binaries, copied as they are) and the files the operator
generates for this node (containerd's configuration, the kubelet's configuration, its CAs and
bootstrap kubeconfig, and on ``ovn-hybrid`` our hns.psm1). The CNI configuration and kube-proxy's
configuration are generated later in the flow, from what the host's network turned out to be
(:mod:`wmco.nodeconfig.network`); windows_exporter's web config, certificate and key right after
these, since whether a new certificate is due depends on what the host holds
(:mod:`wmco.nodeconfig.exportertls`).

The flow compares all of them with the host first and only then decides which services stop
(:func:`wmco.windows.planner.plan_services`).
"""

from __future__ import annotations

import dataclasses
from typing import Final

from wmco import settings as settings_mod
from wmco.cluster import clientca
from wmco.nodeconfig import bootstrap
from wmco.payload import manifest as payload_manifest
from wmco.windows import configfiles, kubelet, layout, transfer

GENERATED_PATHS: Final = (
    layout.CONTAINERD_CONFIG,
    layout.KUBELET_CONFIG,
    layout.BOOTSTRAP_CA,
    layout.KUBELET_CA,
    layout.BOOTSTRAP_KUBECONFIG,
    layout.HNS_MODULE,
    layout.OVN_CNI_CONFIG,
    layout.KUBE_PROXY_CONFIG,
    layout.WINDOWS_EXPORTER_WEB_CONFIG,
    layout.WINDOWS_EXPORTER_CERT,
    layout.WINDOWS_EXPORTER_KEY,
)
"""Every file the operator generates."""

GENERATED_DESTINATIONS: Final = frozenset(path.lower() for path in GENERATED_PATHS)
"""The same, lower-case: a payload must not bring its own copy of one."""


@dataclasses.dataclass(frozen=True, slots=True)
class NodeFiles:
    """The inputs of :func:`generated_files` that come from the cluster and the host.

    Attributes:
        profile: The resolved network profile.
        sandbox_image: The pause image for the host's build.
        endpoint: API server URL and serving CA (the bootstrap CA).
        token: The instance's bootstrap token; ``None`` when none is minted (the kubelet holds a
            valid client certificate, :func:`wmco.nodeconfig.configure.bootstrap_files`): the
            bootstrap kubeconfig is then neither compared nor written.
        client_ca: The kubelet client CA bundle.
        kubelet: The ``KubeletConfiguration`` inputs.
        hyperv_handlers: containerd's Hyper-V runtimes on this node (none: process isolation).
    """

    profile: settings_mod.NetworkProfile
    sandbox_image: str
    endpoint: bootstrap.ClusterEndpoint
    token: bootstrap.Token | None
    client_ca: clientca.ClientCa
    kubelet: kubelet.KubeletConfigInputs
    hyperv_handlers: tuple[str, ...] = ()


def generated_files(inputs: NodeFiles) -> tuple[transfer.Content, ...]:
    """The files the operator writes on every pass, with the content they must have.

    The bootstrap kubeconfig only with a token (see :class:`NodeFiles`).

    Raises:
        ValueError: A generator refused its inputs (e.g. an unresolved profile).
    """
    files = [
        transfer.Content.of_bytes(
            layout.CONTAINERD_CONFIG,
            configfiles.containerd_config(
                inputs.profile, inputs.sandbox_image, inputs.hyperv_handlers
            ).encode(),
            "containerd configuration",
        ),
        transfer.Content.of_bytes(
            layout.KUBELET_CONFIG,
            kubelet.kubelet_config_json(inputs.kubelet).encode(),
            "kubelet configuration",
        ),
        transfer.Content.of_bytes(layout.BOOTSTRAP_CA, inputs.endpoint.ca_pem, "bootstrap CA"),
        transfer.Content.of_bytes(layout.KUBELET_CA, inputs.client_ca.pem, "kubelet client CA"),
    ]
    if inputs.token is not None:
        files.append(
            transfer.Content.of_bytes(
                layout.BOOTSTRAP_KUBECONFIG,
                bootstrap.bootstrap_kubeconfig(inputs.endpoint, layout.BOOTSTRAP_CA, inputs.token),
                "bootstrap kubeconfig",
            )
        )
    if inputs.profile is settings_mod.NetworkProfile.OVN_HYBRID:
        files.append(
            transfer.Content.of_bytes(layout.HNS_MODULE, configfiles.hns_module(), "hns.psm1")
        )
    return tuple(files)


def payload_files(payload: payload_manifest.Manifest) -> tuple[transfer.Content, ...]:
    """The payload's files as contents to place."""
    return tuple(transfer.Content.of_file(item) for item in payload.files)


def clashes(payload: payload_manifest.Manifest) -> list[str]:
    """Payload destinations the operator generates itself (the payload must not have them)."""
    return [
        item.destination
        for item in payload.files
        if item.destination.lower() in GENERATED_DESTINATIONS
    ]
