"""The monitoring objects (pure) and the operator's own metrics.

The EndpointSlice lists exactly the Ready Windows nodes' IPv4 InternalIPs; the difference
functions see an edit of what the operator owns and nothing the API server adds; the metrics
registry exposes the ``wmco_*`` families with bounded labels.
"""

from __future__ import annotations

import base64
import datetime

from lightkube.models.core_v1 import (
    NodeAddress,
    NodeCondition,
    NodeStatus,
    ServicePort,
)
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node, Secret
from prometheus_client.parser import text_string_to_metric_families

from wmco import names
from wmco.cluster import exporterca, exportersecret
from wmco.cluster import monitoring as objects
from wmco.nodeconfig.instance import Step
from wmco.runtime import metrics as metrics_mod


def node(
    name: str,
    *addresses: tuple[str, str],
    ready: str = "True",
    os: str = "windows",
    deleting: bool = False,
) -> Node:
    return Node(
        metadata=ObjectMeta(
            name=name,
            labels={names.OS_LABEL: os},
            deletionTimestamp=datetime.datetime.now(datetime.UTC) if deleting else None,
        ),
        status=NodeStatus(
            addresses=[NodeAddress(type=kind, address=value) for kind, value in addresses],
            conditions=[NodeCondition(type="Ready", status=ready)],
        ),
    )


def test_the_slice_lists_exactly_the_ready_windows_nodes_internal_ipv4s() -> None:
    nodes = [
        node("win-b", ("InternalIP", "10.0.0.7"), ("Hostname", "win-b")),
        node(
            "win-a",
            ("InternalIP", "10.0.0.5"),
            ("InternalIP", "fd00::5"),
            ("ExternalIP", "1.2.3.4"),
        ),
        node("win-notready", ("InternalIP", "10.0.0.8"), ready="False"),
        node("win-unknown", ("InternalIP", "10.0.0.9"), ready="Unknown"),
        node("linux", ("InternalIP", "10.0.0.10"), os="linux"),
        node("win-going", ("InternalIP", "10.0.0.11"), deleting=True),
        node("win-noip", ("Hostname", "win-noip")),
    ]
    assert objects.exporter_endpoints(nodes) == [("10.0.0.5", "win-a"), ("10.0.0.7", "win-b")]
    slice_ = objects.desired_slice("ns", objects.exporter_endpoints(nodes))
    assert slice_.addressType == "IPv4"
    assert [(p.name, p.port) for p in slice_.ports or []] == [("metrics", 9182)]
    assert [e.targetRef.name for e in slice_.endpoints if e.targetRef] == ["win-a", "win-b"]
    assert (slice_.metadata.labels or {})[names.SERVICE_NAME_LABEL] == "windows-exporter"


def test_an_edited_slice_is_seen_and_an_equal_one_is_not() -> None:
    wanted = objects.desired_slice("ns", [("10.0.0.5", "win-a")])
    same = objects.desired_slice("ns", [("10.0.0.5", "win-a")])
    assert objects.slice_differences(same, wanted) == []
    edited = objects.desired_slice("ns", [("10.0.0.5", "win-a"), ("6.6.6.6", "evil")])
    assert objects.slice_differences(edited, wanted) == ["endpoints"]
    assert edited.ports is not None
    edited.ports[0].port = 80
    assert objects.slice_differences(edited, wanted) == ["ports", "endpoints"]


def test_the_service_is_headless_without_selector_and_edits_are_seen() -> None:
    service = objects.desired_service("ns")
    assert service.spec is not None and service.spec.selector is None
    assert service.spec.clusterIP == "None"
    assert objects.service_differences(service) == []
    service.spec.selector = {"app": "x"}
    service.spec.ports = [ServicePort(port=80)]
    assert service.metadata is not None
    service.metadata.labels = {"other": "label"}
    changed = objects.service_differences(service)
    assert changed == [
        "label app.kubernetes.io/name",
        "label app.kubernetes.io/managed-by",
        "spec.selector",
        "spec.ports",
    ]
    assert objects.service_differences(objects.restored_service(service)) == []


def test_the_service_monitor_spec_compares_exactly() -> None:
    spec = objects.desired_monitor_spec("ns")
    labels = dict(objects.MONITOR_LABELS)
    assert objects.monitor_differences(labels, spec, "ns") == []
    endpoint = spec["endpoints"][0]
    assert endpoint["scheme"] == "https" and endpoint["port"] == "metrics"
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": "windows-exporter-ca", "key": "ca.crt"}
    edited = {**spec, "endpoints": [{**endpoint, "scheme": "http"}], "sampleLimit": 10}
    assert objects.monitor_differences({}, edited, "ns") == [
        "label app.kubernetes.io/managed-by",
        "spec.endpoints",
        "spec.sampleLimit",
    ]


def rendered(metrics: metrics_mod.Metrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    body, _ = metrics.render()
    result: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            result.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return result


def test_hosts_by_phase_always_shows_every_phase() -> None:
    metrics = metrics_mod.Metrics()
    assert sorted((labels["phase"], v) for labels, v in rendered(metrics)["wmco_hosts"]) == [
        ("configuring", 0.0),
        ("failed", 0.0),
        ("ready", 0.0),
    ]
    metrics.hosts.set("10.0.0.5", metrics_mod.HostPhase.CONFIGURING)
    metrics.hosts.set("10.0.0.6", metrics_mod.HostPhase.FAILED)
    metrics.hosts.set("10.0.0.5", metrics_mod.HostPhase.READY)
    metrics.hosts.forget("10.0.0.6")
    assert dict((labels["phase"], v) for labels, v in rendered(metrics)["wmco_hosts"]) == {
        "configuring": 0.0,
        "failed": 0.0,
        "ready": 1.0,
    }


def test_steps_ssh_errors_and_csr_decisions_are_counted_by_bounded_labels() -> None:
    metrics = metrics_mod.Metrics()
    metrics.step_finished(Step.FILES, 0.3)
    metrics.step_finished(Step.FILES, 12.0)
    metrics.ssh_error("connection-dropped")
    metrics.csr_decided(approved=True, reason="client-bootstrap")
    metrics.csr_decided(approved=False, reason="wrong-subject")
    got = rendered(metrics)
    assert ({"step": "files"}, 2.0) in got["wmco_configure_step_duration_seconds_count"]
    assert ({"step": "files"}, 12.3) in got["wmco_configure_step_duration_seconds_sum"]
    assert ({"step": "files", "le": "0.5"}, 1.0) in got[
        "wmco_configure_step_duration_seconds_bucket"
    ]
    assert got["wmco_ssh_errors_total"] == [({"kind": "connection-dropped"}, 1.0)]
    assert got["wmco_csr_approvals_total"] == [({"reason": "client-bootstrap"}, 1.0)]
    assert got["wmco_csr_refusals_total"] == [({"reason": "wrong-subject"}, 1.0)]
    body, _ = metrics.render()
    assert b"# TYPE workqueue_depth gauge" in body  # kept from the controller runtime


def test_addresses_an_endpointslice_refuses_are_left_out_and_named() -> None:
    nodes = [
        node("win-loop", ("InternalIP", "127.0.10.2")),
        node("win-link", ("InternalIP", "169.254.3.4")),
        node("win-ok", ("InternalIP", "198.18.0.2")),
    ]
    assert objects.exporter_endpoints(nodes) == [("198.18.0.2", "win-ok")]
    assert objects.unlistable_endpoints(nodes) == [
        ("127.0.10.2", "win-loop", "is in the loopback range (127.0.0.0/8, ::1/128)"),
        ("169.254.3.4", "win-link", "is in the link-local range (169.254.0.0/16, fe80::/10)"),
    ]


def test_the_ca_secret_is_judged_by_its_type_and_content() -> None:
    ca = exporterca.generate_ca()
    data = {k: base64.b64encode(v.encode()).decode() for k, v in ca.secret_data().items()}
    good = Secret(metadata=ObjectMeta(name="x"), type="kubernetes.io/tls", data=data)
    assert exportersecret.usable(good) == ca
    assert exportersecret.usable(None) == "it does not exist"
    opaque = Secret(metadata=ObjectMeta(name="x"), type="Opaque", data=data)
    assert exportersecret.usable(opaque) == "its type is 'Opaque', not kubernetes.io/tls"
    empty = Secret(
        metadata=ObjectMeta(name="x"), type="kubernetes.io/tls", data={"tls.crt": "", "tls.key": ""}
    )
    assert exportersecret.usable(empty) == "it has no tls.crt, tls.key, ca.crt"
