r"""The kubelet of a Windows node: its command-line flags and its ``KubeletConfiguration``.

Both follow the reference operator (``shared/reference/kubelet-windows.md`` §6) so that a node
built by us behaves like one built by it. The configuration is written to ``C:\k\kubelet.conf``
(a file the kubelet reads only at start: a change restarts it); the client CA it names,
``C:\k\kubelet-ca.crt``, is re-read by the kubelet and changes live.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from wmco import names
from wmco.windows import layout


@dataclasses.dataclass(frozen=True, slots=True)
class KubeletFlags:
    """What differs from node to node on the kubelet's command line.

    Attributes:
        node_name: ``--hostname-override`` (lower-case); ``None`` lets the kubelet use the host
            name.
        node_ip: ``--node-ip``; ``None`` lets the kubelet choose.
        debug: ``--v=4`` instead of ``--v=2``.
    """

    node_name: str | None = None
    node_ip: str | None = None
    debug: bool = False


def kubelet_args(flags: KubeletFlags) -> tuple[str, ...]:
    """The kubelet's flags (kubelet-windows.md §6), without the binary.

    Args:
        flags: Per-node values.

    Returns:
        ``--config``, ``--bootstrap-kubeconfig``, ``--kubeconfig``, ``--cert-dir``,
        ``--windows-service``, ``--node-labels``, ``--windows-priorityclass``,
        ``--container-runtime-endpoint``, ``--hostname-override`` / ``--node-ip`` when known,
        and ``--v``.
    """
    args = [
        f"--config={layout.KUBELET_CONFIG}",
        f"--bootstrap-kubeconfig={layout.BOOTSTRAP_KUBECONFIG}",
        f"--kubeconfig={layout.KUBECONFIG}",
        f"--cert-dir={layout.KUBELET_CERT_DIR}",
        "--windows-service",
        f"--node-labels={names.NODE_OS_ID_LABEL}={names.NODE_OS_ID_WINDOWS}",
        "--windows-priorityclass=ABOVE_NORMAL_PRIORITY_CLASS",
        f"--container-runtime-endpoint={layout.CONTAINERD_ENDPOINT}",
    ]
    if flags.node_name:
        args.append(f"--hostname-override={flags.node_name}")
    if flags.node_ip:
        args.append(f"--node-ip={flags.node_ip}")
    args.append(f"--v={4 if flags.debug else 2}")
    return tuple(args)


@dataclasses.dataclass(frozen=True, slots=True)
class KubeletConfigInputs:
    """Cluster values that go into the ``KubeletConfiguration``.

    Attributes:
        cluster_dns: DNS service IPs.
        cluster_domain: DNS domain.
        client_ca_file: CA bundle that signs clients of the kubelet's :10250 (the API server's
            kubelet-client certificate).
        provider_id: ``spec.providerID`` to register with (Machine-backed nodes), if any.
    """

    cluster_dns: tuple[str, ...]
    cluster_domain: str = "cluster.local"
    client_ca_file: str = layout.KUBELET_CA
    provider_id: str | None = None


def kubelet_config(inputs: KubeletConfigInputs) -> dict[str, Any]:
    """The ``KubeletConfiguration`` (kubelet-windows.md §6.3) as a JSON-ready dict."""
    config: dict[str, Any] = {
        "kind": "KubeletConfiguration",
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "rotateCertificates": True,
        "serverTLSBootstrap": True,
        "authentication": {
            "x509": {"clientCAFile": inputs.client_ca_file},
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": inputs.cluster_domain,
        "clusterDNS": list(inputs.cluster_dns),
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "runtimeRequestTimeout": "10m",
        "maxPods": 250,
        "kubeAPIQPS": 50,
        "kubeAPIBurst": 100,
        "serializeImagePulls": False,
        "logging": {"flushFrequency": "5s"},
        "enableSystemLogHandler": True,
        "enableSystemLogQuery": True,
        "featureGates": {"NodeLogQuery": True, "RotateKubeletServerCertificate": True},
        "containerLogMaxSize": "50Mi",
        "evictionHard": {"nodefs.available": "10%", "imagefs.available": "15%"},
        "systemReserved": {"cpu": "500m", "ephemeral-storage": "1Gi", "memory": "2Gi"},
        "containerRuntimeEndpoint": layout.CONTAINERD_ENDPOINT,
        "registerNode": True,
        "registerWithTaints": [
            {
                "key": names.WINDOWS_TAINT_KEY,
                "value": names.WINDOWS_TAINT_VALUE,
                "effect": names.WINDOWS_TAINT_EFFECT,
            }
        ],
        "resolvConf": "",
    }
    if inputs.provider_id:
        config["providerID"] = inputs.provider_id
    return config


def kubelet_config_json(inputs: KubeletConfigInputs) -> str:
    """:func:`kubelet_config` as compact one-line JSON."""
    return json.dumps(kubelet_config(inputs), separators=(",", ":"), sort_keys=True)
