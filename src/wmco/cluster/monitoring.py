"""The monitoring objects the operator keeps, as desired state and differences (pure).

In the operator's namespace, for Prometheus to find every host's windows_exporter:

* Service ``windows-exporter``: headless, **no selector** (nothing runs in a pod), port
  ``metrics`` 9182. It exists for the EndpointSlice to belong to and for the ServiceMonitor to
  select.
* EndpointSlice ``windows-exporter`` (label ``kubernetes.io/service-name``): one endpoint per
  IPv4 InternalIP of every **Ready** Windows node, ``targetRef`` the Node (so Prometheus' targets
  get a ``node`` label), port 9182. A node that is NotReady or has no InternalIP is not listed,
  nor an address the API server refuses in an EndpointSlice (loopback, link-local, unspecified,
  multicast: a node that reports one is logged).
* ServiceMonitor ``windows-exporter`` (``monitoring.coreos.com/v1``, when the CRD is served):
  HTTPS, the CA bundle ``ca.crt`` of Secret ``windows-exporter-ca``, ``instance`` = the node
  name, ``job`` = ``windows-exporter``. Prometheus must discover targets through EndpointSlices
  (``serviceDiscoveryRole: EndpointSlice`` on the Prometheus object; OpenShift's cluster
  monitoring does): the operator keeps no Endpoints object.

Each ``*_differences`` function lists what a live object has that the operator did not write,
in words for the Event that says it was restored; an empty list means leave it alone. Only the
operator's fields are compared: what the API server adds (cluster IPs, defaults, managed fields,
other labels) is not a difference.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any, Final

from lightkube.models.core_v1 import ObjectReference, ServicePort, ServiceSpec
from lightkube.models.discovery_v1 import Endpoint, EndpointConditions, EndpointPort
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.core_v1 import Node, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from wmco import names
from wmco.cluster import exporterca

APP_LABEL: Final = "app.kubernetes.io/name"
SERVICE_LABELS: Final = {
    APP_LABEL: names.WINDOWS_EXPORTER,
    names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
}
"""Labels of the Service (the ServiceMonitor selects the first)."""

SLICE_LABELS: Final = {
    names.SERVICE_NAME_LABEL: names.WINDOWS_EXPORTER,
    names.ENDPOINTSLICE_MANAGED_BY_LABEL: names.ENDPOINTSLICE_MANAGED_BY_VALUE,
    names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
}
MONITOR_LABELS: Final = {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE}

SCRAPE_INTERVAL: Final = "30s"


def _missing_labels(labels: Mapping[str, str] | None, wanted: Mapping[str, str]) -> list[str]:
    have = labels or {}
    return [f"label {key}" for key, value in wanted.items() if have.get(key) != value]


# --- Service ----------------------------------------------------------------------------------


def desired_service(namespace: str) -> Service:
    """The headless, selector-less Service ``windows-exporter``."""
    return Service(
        metadata=ObjectMeta(
            name=names.WINDOWS_EXPORTER, namespace=namespace, labels=dict(SERVICE_LABELS)
        ),
        spec=ServiceSpec(
            type="ClusterIP",
            clusterIP="None",
            ports=[
                ServicePort(
                    name=names.WINDOWS_EXPORTER_PORT_NAME,
                    port=names.WINDOWS_EXPORTER_PORT,
                    targetPort=names.WINDOWS_EXPORTER_PORT,
                    protocol="TCP",
                )
            ],
        ),
    )


def _ports(service: Service) -> list[tuple[Any, ...]]:
    ports = (service.spec.ports if service.spec else None) or []
    return [(p.name, p.port, p.targetPort, p.protocol or "TCP") for p in ports]


def service_differences(live: Service) -> list[str]:
    """What the live Service has that the operator did not write."""
    wanted = desired_service("")
    found = _missing_labels(live.metadata.labels if live.metadata else None, SERVICE_LABELS)
    spec = live.spec or ServiceSpec()
    if spec.selector:
        found.append("spec.selector")
    if (spec.type or "ClusterIP") != "ClusterIP":
        found.append("spec.type")
    if spec.clusterIP != "None":
        found.append("spec.clusterIP (not headless)")
    if _ports(live) != _ports(wanted):
        found.append("spec.ports")
    return found


def restored_service(live: Service) -> Service:
    """``live`` with the operator's fields put back (for a conditional replace)."""
    wanted = desired_service(live.metadata.namespace or "" if live.metadata else "")
    assert wanted.metadata is not None and wanted.spec is not None
    metadata = live.metadata or ObjectMeta()
    metadata.labels = {**(metadata.labels or {}), **SERVICE_LABELS}
    spec = live.spec or ServiceSpec()
    spec.selector = None
    spec.type = "ClusterIP"
    spec.ports = wanted.spec.ports
    return Service(metadata=metadata, spec=spec)


# --- EndpointSlice ----------------------------------------------------------------------------


def _ready(node: Node) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def endpoint_ip_problem(address: str) -> str | None:
    """Why the API server would refuse ``address`` in an EndpointSlice (``ValidateNonSpecialIP``)."""
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        return "is unspecified"
    if ip.is_loopback:
        return "is in the loopback range (127.0.0.0/8, ::1/128)"
    if ip.is_link_local:
        return "is in the link-local range (169.254.0.0/16, fe80::/10)"
    if ip.is_multicast:
        return "is a multicast address"
    return None


def exporter_endpoints(nodes: Iterable[Node]) -> list[tuple[str, str]]:
    """``(InternalIP, node name)`` of every Ready Windows node, IPv4 only, sorted.

    Addresses an EndpointSlice may not hold (loopback, link-local...: :func:`endpoint_ip_problem`)
    are left out; :func:`unlistable_endpoints` names them for a log line.
    """
    return [pair for pair in _ready_internal_ips(nodes) if endpoint_ip_problem(pair[0]) is None]


def unlistable_endpoints(nodes: Iterable[Node]) -> list[tuple[str, str, str]]:
    """``(InternalIP, node name, why)`` of the Ready nodes' addresses an EndpointSlice refuses."""
    result = []
    for ip, name in _ready_internal_ips(nodes):
        problem = endpoint_ip_problem(ip)
        if problem is not None:
            result.append((ip, name, problem))
    return result


def _ready_internal_ips(nodes: Iterable[Node]) -> list[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for node in nodes:
        metadata = node.metadata
        if metadata is None or not metadata.name or metadata.deletionTimestamp is not None:
            continue
        labels = metadata.labels or {}
        if labels.get(names.OS_LABEL) != names.OS_LABEL_WINDOWS or not _ready(node):
            continue
        for address in (node.status.addresses if node.status else None) or []:
            if address.type != "InternalIP":
                continue
            try:
                if ipaddress.ip_address(address.address).version == 4:
                    found.add((address.address, metadata.name))
            except ValueError:
                continue
    return sorted(found)


def desired_slice(
    namespace: str, endpoints: Iterable[tuple[str, str]], service: Service | None = None
) -> EndpointSlice:
    """The EndpointSlice listing ``endpoints`` (owned by the Service when it is given)."""
    owners = None
    if service is not None and service.metadata is not None and service.metadata.uid:
        owners = [
            OwnerReference(
                apiVersion="v1",
                kind="Service",
                name=names.WINDOWS_EXPORTER,
                uid=service.metadata.uid,
                controller=True,
                blockOwnerDeletion=True,
            )
        ]
    return EndpointSlice(
        metadata=ObjectMeta(
            name=names.WINDOWS_EXPORTER,
            namespace=namespace,
            labels=dict(SLICE_LABELS),
            ownerReferences=owners,
        ),
        addressType="IPv4",
        ports=[
            EndpointPort(
                name=names.WINDOWS_EXPORTER_PORT_NAME,
                port=names.WINDOWS_EXPORTER_PORT,
                protocol="TCP",
            )
        ],
        endpoints=[
            Endpoint(
                addresses=[ip],
                conditions=EndpointConditions(ready=True),
                nodeName=node_name,
                targetRef=ObjectReference(kind="Node", name=node_name),
            )
            for ip, node_name in endpoints
        ],
    )


def _slice_endpoints(endpoint_slice: EndpointSlice) -> list[tuple[Any, ...]]:
    result = []
    for endpoint in endpoint_slice.endpoints or []:
        ref = endpoint.targetRef
        result.append(
            (
                tuple(endpoint.addresses or ()),
                bool(endpoint.conditions.ready) if endpoint.conditions else None,
                endpoint.nodeName,
                (ref.kind, ref.name) if ref else None,
            )
        )
    return sorted(result, key=repr)


def slice_differences(live: EndpointSlice, wanted: EndpointSlice) -> list[str]:
    """What differs between the live EndpointSlice and the wanted one."""
    found = _missing_labels(live.metadata.labels if live.metadata else None, SLICE_LABELS)
    if live.addressType != wanted.addressType:
        found.append("addressType")
    ports = [(p.name, p.port, p.protocol or "TCP") for p in live.ports or []]
    if ports != [(p.name, p.port, p.protocol) for p in wanted.ports or []]:
        found.append("ports")
    if _slice_endpoints(live) != _slice_endpoints(wanted):
        found.append("endpoints")
    return found


def slice_addresses(endpoint_slice: EndpointSlice) -> list[str]:
    """Every endpoint address of a slice, sorted (for log lines)."""
    return sorted(a for e in endpoint_slice.endpoints or [] for a in e.addresses or [])


# --- ServiceMonitor ---------------------------------------------------------------------------


def desired_monitor_spec(namespace: str) -> dict[str, Any]:
    """The ServiceMonitor's spec (every defaulted field spelt out, so that it compares equal)."""
    return {
        "jobLabel": APP_LABEL,
        "namespaceSelector": {"matchNames": [namespace]},
        "selector": {"matchLabels": {APP_LABEL: names.WINDOWS_EXPORTER}},
        "endpoints": [
            {
                "port": names.WINDOWS_EXPORTER_PORT_NAME,
                "scheme": "https",
                "path": "/metrics",
                "interval": SCRAPE_INTERVAL,
                "tlsConfig": {
                    "ca": {
                        "secret": {
                            "name": names.WINDOWS_EXPORTER_CA_SECRET,
                            "key": exporterca.BUNDLE_KEY,
                        }
                    },
                },
                "relabelings": [
                    {
                        "action": "replace",
                        "sourceLabels": ["__meta_kubernetes_endpointslice_address_target_name"],
                        "targetLabel": "instance",
                    },
                ],
            }
        ],
    }


def monitor_differences(
    labels: Mapping[str, str] | None, spec: Mapping[str, Any] | None, namespace: str
) -> list[str]:
    """What the live ServiceMonitor (its labels and spec) has that the operator did not write."""
    found = _missing_labels(labels, MONITOR_LABELS)
    have = spec or {}
    wanted = desired_monitor_spec(namespace)
    found += [
        f"spec.{key}" for key in sorted(set(have) | set(wanted)) if have.get(key) != wanted.get(key)
    ]
    return found
