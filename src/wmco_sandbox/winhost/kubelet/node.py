"""What the simulated kubelet writes into the API: Node, node status and Lease (pure).

These are the *decisions* of the kubelet, kept free of I/O so that they can be unit-tested and
read next to the reference (``kubelet-windows.md`` §2, §3, §5): the labels and taints of the
initial Node (``initialNode``), the four node conditions with their literal reasons and messages,
addresses, capacity and allocatable (generic node-allocatable rule), ``nodeInfo`` of a Windows
host, and the node Lease. What the kubelet writes about pods is in ``kubelet_podstatus``.

Bodies are plain ``dict``s in API (JSON) shape rather than lightkube models, because they are sent
as strategic-merge patches and because the API server is strict about time formats: ``Time``
fields are RFC 3339 with seconds, ``MicroTime`` (``renewTime``) needs exactly six fractional
digits.
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightkube.utils.quantity import parse_quantity

from wmco_sandbox.winhost.kubelet import options as kubelet_options

__all__ = [
    "ATTACH_DETACH_ANNOTATION",
    "LEASE_NAMESPACE",
    "HostView",
    "allocatable",
    "conditions",
    "default_labels",
    "initial_node",
    "lease_spec",
    "micro_time",
    "node_addresses",
    "node_status",
    "status_differs",
    "time_str",
]

LEASE_NAMESPACE = "kube-node-lease"
ATTACH_DETACH_ANNOTATION = "volumes.kubernetes.io/controller-managed-attach-detach"
PROVIDED_NODE_IP_ANNOTATION = "alpha.kubernetes.io/provided-node-ip"
UNINITIALIZED_TAINT = "node.cloudprovider.kubernetes.io/uninitialized"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

# Labels the kubelet owns and reconciles when it finds its Node already registered
# (``updateDefaultLabels``); the beta os/arch pair is set at creation only.
RECONCILED_LABELS = (
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "node.kubernetes.io/windows-build",
)

_READY_REASONS = {
    True: ("True", "KubeletReady", "kubelet is posting ready status"),
    False: ("False", "KubeletNotReady", ""),
}
_PRESSURE = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)
_HEARTBEAT_FIELDS = ("lastHeartbeatTime",)


@dataclass(frozen=True, slots=True)
class HostView:
    """What the kubelet knows about its machine, beyond :class:`HostFacts`.

    Attributes:
        hostname: ``os.Hostname()`` (case preserved; the ``machineID``).
        address: The host's only non-loopback IPv4 address.
        windows_build: ``Major.Minor.Build``.
        os_image: Registry ``ProductName``.
        kernel_version: ``Major.Minor.Build.UBR``.
        kubelet_version: The kubelet's git version.
        containerd_version: ``containerd://<version>``.
        capacity: ``cpu``, ``memory``, ``ephemeral-storage`` (``pods`` comes from maxPods).
        boot_id: The Windows BootId, a decimal string.
    """

    hostname: str
    address: str
    windows_build: str
    os_image: str
    kernel_version: str
    kubelet_version: str
    containerd_version: str
    capacity: Mapping[str, str]
    boot_id: str


def time_str(now: dt.datetime) -> str:
    """Format a ``metav1.Time`` (RFC 3339, seconds, UTC)."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(now: dt.datetime) -> str:
    """Format a ``metav1.MicroTime`` (exactly six fractional digits, UTC)."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def windows_build(value: str) -> str:
    """Reduce a Windows version to ``Major.Minor.Build`` (``10.0.20348.2527`` → ``10.0.20348``)."""
    return ".".join(value.split(".")[:3])


def default_labels(node_name: str, host: HostView) -> dict[str, str]:
    """Return the labels a Windows kubelet sets on its Node at first registration."""
    return {
        "kubernetes.io/hostname": node_name,
        "kubernetes.io/os": "windows",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "windows",
        "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/windows-build": windows_build(host.windows_build),
    }


def register_taints(opts: kubelet_options.KubeletOptions) -> list[dict[str, str]]:
    """Return the taints of the initial Node (``registerWithTaints`` plus implied ones)."""
    taints = [t.to_dict() for t in opts.taints]
    if not opts.register_schedulable:
        taints.append({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"})
    if opts.cloud_provider == "external":
        taints.append({"key": UNINITIALIZED_TAINT, "value": "true", "effect": "NoSchedule"})
    return taints


def initial_node(opts: kubelet_options.KubeletOptions, host: HostView) -> dict[str, Any]:
    """Build the Node that the kubelet POSTs at registration (``initialNode``).

    Args:
        opts: Resolved kubelet options.
        host: The host.

    Returns:
        The Node object (without status; status follows as a PATCH of ``/status``).
    """
    labels = default_labels(opts.node_name, host)
    labels.update(opts.node_labels)  # --node-labels may override the defaults
    annotations = {ATTACH_DETACH_ANNOTATION: "true"}
    if opts.cloud_provider == "external" and opts.node_ip:
        annotations[PROVIDED_NODE_IP_ANNOTATION] = opts.node_ip
    spec: dict[str, Any] = {}
    taints = register_taints(opts)
    if taints:
        spec["taints"] = taints
    if opts.provider_id:
        spec["providerID"] = opts.provider_id
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": opts.node_name, "labels": labels, "annotations": annotations},
        "spec": spec,
    }


def reconcile_labels_patch(
    existing_labels: Mapping[str, str],
    existing_annotations: Mapping[str, str],
    wanted: Mapping[str, Any],
) -> dict[str, Any] | None:
    """Return the metadata patch a restarted kubelet sends to an already registered Node.

    Only kubelet-owned default labels (and the attach-detach annotation) are reconciled, so
    labels set by others (``node-role.kubernetes.io/worker``...) are never touched.

    Args:
        existing_labels: Labels of the Node found in the API.
        existing_annotations: Its annotations.
        wanted: The Node from :func:`initial_node`.

    Returns:
        A merge patch, or ``None`` when nothing differs.
    """
    wanted_labels: Mapping[str, str] = wanted["metadata"]["labels"]
    labels = {
        k: wanted_labels[k]
        for k in RECONCILED_LABELS
        if k in wanted_labels and existing_labels.get(k) != wanted_labels[k]
    }
    annotations = {}
    if existing_annotations.get(ATTACH_DETACH_ANNOTATION) != "true":
        annotations[ATTACH_DETACH_ANNOTATION] = "true"
    if not labels and not annotations:
        return None
    meta: dict[str, Any] = {}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta}


def node_ip_error(node_ip: str | None, host: HostView) -> str | None:
    """Validate ``--node-ip`` as ``validateNodeIP`` does; return the error message, if any."""
    if node_ip is None:
        return None
    ip = ipaddress.ip_address(node_ip)
    if str(ip) == host.address:
        # The sandbox's hosts live on 127.x addresses; their one "NIC" address is accepted.
        return None
    if ip.is_loopback:
        return "failed to validate nodeIP: nodeIP can't be loopback address"
    if ip.is_multicast:
        return "failed to validate nodeIP: nodeIP can't be a multicast address"
    if ip.is_link_local:
        return "failed to validate nodeIP: nodeIP can't be a link-local unicast address"
    if ip.is_unspecified:
        return "failed to validate nodeIP: nodeIP can't be an all zeros address"
    return f'failed to validate nodeIP: node IP: "{node_ip}" not found in the host\'s network interfaces'


def node_addresses(node_name: str, node_ip: str | None, host: HostView) -> list[dict[str, str]]:
    """Return ``status.addresses``: the InternalIP (``--node-ip`` or host address), then Hostname.

    An invalid ``--node-ip`` yields no addresses (the kubelet logs the error on every sync).
    """
    if node_ip_error(node_ip, host):
        return []
    return [
        {"type": "InternalIP", "address": node_ip or host.address},
        {"type": "Hostname", "address": node_name},
    ]


def _millis(value: str) -> int:
    q = parse_quantity(value)
    return int((q or decimal.Decimal(0)) * 1000)


def _bytes(value: str, capacity: int) -> int:
    if value.endswith("%"):
        return int(capacity * decimal.Decimal(value[:-1]) / 100)
    q = parse_quantity(value)
    return int(q or 0)


def _fmt_cpu(millis: int) -> str:
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _fmt_bytes(value: int) -> str:
    return f"{value // 1024}Ki" if value % 1024 == 0 else str(value)


def capacity(opts: kubelet_options.KubeletOptions, host: HostView) -> dict[str, str]:
    """Return ``status.capacity`` (no hugepages keys on Windows)."""
    cap = {
        k: host.capacity[k] for k in ("cpu", "memory", "ephemeral-storage") if k in host.capacity
    }
    cap["pods"] = str(opts.max_pods)
    return cap


def allocatable(opts: kubelet_options.KubeletOptions, cap: Mapping[str, str]) -> dict[str, str]:
    """Allocatable = capacity - kubeReserved - systemReserved - hard eviction (never below 0)."""
    reserved = [opts.system_reserved, opts.kube_reserved]
    out = dict(cap)
    if "cpu" in cap:
        cpu = _millis(cap["cpu"]) - sum(_millis(r["cpu"]) for r in reserved if "cpu" in r)
        out["cpu"] = _fmt_cpu(max(cpu, 0))
    for key, signal in (("memory", "memory.available"), ("ephemeral-storage", "nodefs.available")):
        if key not in cap:
            continue
        total = _bytes(cap[key], 0)
        value = total - sum(_bytes(r[key], total) for r in reserved if key in r)
        if signal in opts.eviction_hard:
            value -= _bytes(opts.eviction_hard[signal], total)
        out[key] = _fmt_bytes(max(value, 0))
    return out


def conditions(
    runtime_error: str | None,
    now: dt.datetime,
    previous: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, str]]:
    """Return the four node conditions; ``lastTransitionTime`` moves only on a status change.

    Args:
        runtime_error: Why the node is not ready (``None``: ready).
        now: The heartbeat time.
        previous: The conditions last posted, to carry transition times over.

    Returns:
        MemoryPressure, DiskPressure, PIDPressure and Ready, in the kubelet's order.
    """
    before = {str(c.get("type")): c for c in previous}
    stamp = time_str(now)

    def cond(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        old = before.get(kind)
        transition = stamp
        if old is not None and old.get("status") == status and old.get("lastTransitionTime"):
            transition = str(old["lastTransitionTime"])
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": transition,
        }

    out = [cond(kind, "False", reason, message) for kind, reason, message in _PRESSURE]
    status, reason, message = _READY_REASONS[runtime_error is None]
    out.append(cond("Ready", status, reason, runtime_error or message))
    return out


def node_status(
    opts: kubelet_options.KubeletOptions,
    host: HostView,
    runtime_error: str | None,
    now: dt.datetime,
    previous_conditions: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Build the body of ``PATCH /api/v1/nodes/<n>/status`` (strategic merge).

    Args:
        opts: Resolved kubelet options.
        host: The host.
        runtime_error: ``None`` when the container runtime is up, else why the node is not ready.
        now: The heartbeat time.
        previous_conditions: Conditions last posted.

    Returns:
        ``{"status": {...}}``.
    """
    cap = capacity(opts, host)
    return {
        "status": {
            "addresses": node_addresses(opts.node_name, opts.node_ip, host),
            "capacity": cap,
            "allocatable": allocatable(opts, cap),
            "conditions": conditions(runtime_error, now, previous_conditions),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": opts.port}},
            "nodeInfo": {
                "machineID": host.hostname,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, host.hostname.lower())).upper(),
                "bootID": host.boot_id,
                "kernelVersion": host.kernel_version,
                "osImage": host.os_image,
                "containerRuntimeVersion": host.containerd_version,
                "kubeletVersion": host.kubelet_version,
                "operatingSystem": "windows",
                "architecture": "amd64",
            },
        }
    }


def status_differs(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether two status bodies differ in anything but heartbeat timestamps."""
    if old is None:
        return True

    def strip(body: Mapping[str, Any]) -> Any:
        status = dict(body["status"])
        status["conditions"] = [
            {k: v for k, v in c.items() if k not in _HEARTBEAT_FIELDS} for c in status["conditions"]
        ]
        return status

    return bool(strip(old) != strip(new))


def lease_spec(node_name: str, duration_seconds: int, now: dt.datetime) -> dict[str, Any]:
    """Return the Lease ``spec`` of a renewal."""
    return {
        "holderIdentity": node_name,
        "leaseDurationSeconds": duration_seconds,
        "renewTime": micro_time(now),
    }


def node_owner_reference(node_name: str, node_uid: str) -> dict[str, str]:
    """The Lease's owner reference to its Node (no ``controller``/``blockOwnerDeletion``)."""
    return {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}
