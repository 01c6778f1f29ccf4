"""Node monitoring and the operator's own metrics, end to end (real control plane, real SSH).

Run by tests/integration/test_monitoring.py inside a network namespace of its own, where
198.18.0.0/15 is local: the simulated hosts get addresses there, because the API server refuses
loopback addresses (the sandbox's usual 127.0.x.y) in an EndpointSlice, and these tests need the
EndpointSlice to list real node InternalIPs. (The file name keeps pytest from collecting it
outside that namespace.)

The operator runs in-process against the real API server, with prometheus-operator's REAL
ServiceMonitor and PrometheusRule CRDs (from its Go module, hack/prometheus/build.sh) installed.
Every endpoint of the ``windows-exporter`` EndpointSlice is scraped over HTTPS, verified with
``ca.crt`` from Secret ``windows-exporter-ca``, and parsed with prometheus_client's parser. Edits
of the managed objects are restored with Events; a CA due for rotation is rotated and every host
serves a certificate of the new one; without the CRD nothing fails and the hosts are configured.
The operator's /metrics is read after the run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import itertools
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace, Node, Secret, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from exporter_helpers import https_get, samples
from kube_helpers import eventually, node_bootstrapper_binding
from prometheus_helpers import PROMETHEUS_RULE_CRD, SERVICE_MONITOR_CRD, crd
from wmco import kube as kube_mod
from wmco import names
from wmco import operator as operator_mod
from wmco.cluster import exporterca
from wmco.controllers import monitoring as monitoring_controller
from wmco.payload import manifest as payload_manifest
from wmco.runtime import manager as manager_mod
from wmco.settings import NetworkProfile, Settings
from wmco.windows import exporterconfig
from wmco_sandbox.controlplane import ControlPlane, free_port, project_root
from wmco_sandbox.netsim import ovn
from wmco_sandbox.winhost import kubelet as sim_kubelet
from wmco_sandbox.winhost.host import WindowsHost

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

ServiceMonitor = monitoring_controller.ServiceMonitor
HOST_NETWORK = os.environ.get("WMCO_TEST_HOST_NETWORK", "198.18")
"""First two octets of the local range the launcher routes to lo (``ip route add local``)."""
_addresses = itertools.count(2)


def allocate_address() -> str:
    """A fresh host address in the namespace's local range (not loopback: EndpointSlices can)."""
    n = next(_addresses)
    return f"{HOST_NETWORK}.{n // 250}.{2 + n % 250}"


CRDS = {
    SERVICE_MONITOR_CRD: "servicemonitors.monitoring.coreos.com",
    PROMETHEUS_RULE_CRD: "prometheusrules.monitoring.coreos.com",
}


async def served(kube: AsyncClient, namespace: str) -> bool:
    try:
        return await monitoring_controller.service_monitors_served(kube, namespace)  # type: ignore[arg-type]
    except kube_mod.KubeError:  # 429 "storage is (re)initializing" right after a CRD appears
        return False


async def install_crds(mon: Mon) -> None:
    for file, name in CRDS.items():
        mon.plane.kubectl("apply", "--server-side", "-f", str(crd(file)))
        mon.plane.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    await eventually(lambda: served(mon.kube, mon.ns), "ServiceMonitors to be served", 60)


@dataclass
class Mon:
    kube: AsyncClient
    plane: ControlPlane
    settings: Settings
    payload: payload_manifest.Manifest
    hosts: list[WindowsHost] = field(default_factory=list)
    manager: manager_mod.Manager | None = None
    task: asyncio.Task[None] | None = None

    @property
    def ns(self) -> str:
        return self.settings.namespace

    async def start(self) -> None:
        self.manager = operator_mod.build_manager(
            self.kube,  # type: ignore[arg-type]
            self.settings,
            self.payload,
            machine_api=False,
            port=0,
            service_monitors=await served(self.kube, self.ns),
        )
        self.task = asyncio.create_task(self.manager.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=30)
            self.task = None

    async def boot(self) -> WindowsHost:
        script = await eventually(self.user_data, "the user data", 60)
        host = WindowsHost(
            address=allocate_address(),
            port=self.settings.ssh_port,
            kubelet_factory=sim_kubelet.factory_with(lease_renew_interval=1.0, status_interval=1.0),
        )
        self.hosts.append(host)
        await host.boot(script)
        return host

    async def user_data(self) -> str | None:
        with contextlib.suppress(Exception):
            secret = await self.kube.get(
                Secret, names.USER_DATA_SECRET, namespace=self.settings.machine_api_namespace
            )
            data = (secret.data or {}).get(names.USER_DATA_SECRET_KEY)
            return base64.b64decode(data).decode() if data else None
        return None

    async def list_instances(self, *addresses: str) -> None:
        await self.kube.create(
            ConfigMap(
                metadata=ObjectMeta(name=names.INSTANCES_CONFIGMAP, namespace=self.ns),
                data={a: "username=Administrator" for a in addresses},
            )
        )

    async def ready(self, host: WindowsHost, timeout: float = 150) -> Node:
        async def check() -> Node | None:
            with contextlib.suppress(Exception):
                node = await self.kube.get(Node, host.facts.hostname)
                annotations = node.metadata.annotations or {}  # type: ignore[union-attr]
                conditions = (node.status.conditions if node.status else None) or []
                if names.VERSION_ANNOTATION in annotations and any(
                    c.type == "Ready" and c.status == "True" for c in conditions
                ):
                    return node
            return None

        return await eventually(check, f"host {host.address} to become a Ready node", timeout)

    async def get(self, resource: type[Any], name: str = names.WINDOWS_EXPORTER) -> Any:
        with contextlib.suppress(Exception):
            return await self.kube.get(resource, name, namespace=self.ns)
        return None

    async def ca_bundle(self) -> bytes:
        async def usable() -> bytes | None:
            secret = await self.get(Secret, names.WINDOWS_EXPORTER_CA_SECRET)
            value = ((secret.data if secret else None) or {}).get("ca.crt")
            return base64.b64decode(value) if value else None

        return await eventually(usable, "the exporter CA Secret", 60)

    async def slice_addresses(self, wanted: set[str], timeout: float = 60) -> EndpointSlice:
        async def listed() -> EndpointSlice | None:
            found = await self.get(EndpointSlice)
            addresses = (
                {a for e in (found.endpoints or []) for a in e.addresses} if found else set()
            )
            return found if addresses == wanted else None

        return await eventually(listed, f"the EndpointSlice to list {sorted(wanted)}", timeout)

    async def events(self, reason: str) -> list[Event]:
        return [e async for e in self.kube.list(Event, namespace=self.ns) if e.reason == reason]

    async def metrics(self) -> str:
        assert self.manager is not None
        async with httpx2.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{self.manager.port}/metrics")
        return response.text


def key_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


@pytest.fixture
async def mon(control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path) -> AsyncIterator[Mon]:
    suffix = base64.b32encode(os.urandom(5)).decode().lower().rstrip("=")
    operator_ns, mapi_ns, bootstrap_ns = f"mon-{suffix}", f"mapi-{suffix}", f"boot-{suffix}"
    for ns in (operator_ns, mapi_ns, bootstrap_ns):
        await kube.create(Namespace(metadata=ObjectMeta(name=ns)))
    # What deploy/ binds once for the real bootstrap namespace.
    binding = await kube.create(node_bootstrapper_binding(bootstrap_ns))
    await kube.create(
        Secret(
            metadata=ObjectMeta(name=names.PRIVATE_KEY_SECRET, namespace=operator_ns),
            data={names.PRIVATE_KEY_SECRET_KEY: base64.b64encode(key_pem()).decode()},
        )
    )
    settings = Settings(
        namespace=operator_ns,
        machine_api_namespace=mapi_ns,
        ssh_port=free_port(),
        ssh_connect_timeout=5,
        ssh_retry_interval=0.3,
        ssh_boot_deadline=20,
        ssh_command_timeout=30,
        node_ready_timeout=60,
        retry_max=5,
        leader_election=False,
        service_cidr="10.0.0.0/24",
        probe_bind_address="127.0.0.1:0",
        network_profile=NetworkProfile.OVN_HYBRID,
        network_timeout=60,
        bootstrap_namespace=bootstrap_ns,
    )
    payload = payload_manifest.generate_test_payload(tmp_path / "payload", version="test")
    world = Mon(kube, control_plane, settings, payload)
    allocator = ovn.HybridOverlaySubnetAllocator(kube, resync=1.0)
    await allocator.__aenter__()
    try:
        yield world
    finally:
        try:
            await world.stop()
        finally:
            await allocator.__aexit__(None, None, None)
            await asyncio.gather(*(h.stop() for h in world.hosts), return_exceptions=True)
            for host in world.hosts:
                with contextlib.suppress(Exception):
                    await kube.delete(Node, host.facts.hostname)
            for ns in (operator_ns, mapi_ns, bootstrap_ns):
                with contextlib.suppress(Exception):
                    await kube.delete(Namespace, ns)
            with contextlib.suppress(Exception):
                await kube.delete(type(binding), binding.metadata.name)  # type: ignore[union-attr]


async def test_every_ready_node_is_scraped_over_tls_through_the_endpointslice(mon: Mon) -> None:
    await install_crds(mon)
    await mon.start()
    hosts = [await mon.boot(), await mon.boot()]
    await mon.list_instances(*(h.address for h in hosts))
    nodes = [await mon.ready(h) for h in hosts]

    endpoint_slice = await mon.slice_addresses({h.address for h in hosts})
    ca = await mon.ca_bundle()
    by_node = {n.metadata.name: n for n in nodes if n.metadata}
    assert endpoint_slice.ports and endpoint_slice.ports[0].port == 9182
    for endpoint in endpoint_slice.endpoints:
        assert endpoint.targetRef is not None and endpoint.targetRef.name in by_node
        response = await https_get(endpoint.addresses[0], 9182, ca)
        assert response.status == 200
        text = response.body.decode()
        ((hostname, _),) = samples(text, "windows_os_hostname")
        assert hostname["hostname"] == endpoint.targetRef.name
        assert samples(text, "windows_cpu_time_total")
        state = {
            labels["state"]: value
            for labels, value in samples(text, "windows_service_state")
            if labels["name"] == "kubelet"
        }
        assert state["running"] == 1.0
        success = dict(
            (labels["collector"], v)
            for labels, v in samples(text, "windows_exporter_collector_success")
        )
        assert set(success) == set(exporterconfig.COLLECTORS) and all(success.values())
    service = await mon.get(Service)
    assert service.spec.selector is None and service.spec.clusterIP == "None"
    monitor = await eventually(lambda: mon.get(ServiceMonitor), "the ServiceMonitor", 60)
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": "windows-exporter-ca", "key": "ca.crt"}
    # A host taken out of windows-instances loses its node, and the slice lists only the other.
    await mon.kube.patch(
        ConfigMap, names.INSTANCES_CONFIGMAP, {"data": {hosts[1].address: None}},
        namespace=mon.ns, patch_type=PatchType.MERGE,
    )  # fmt: skip
    await mon.slice_addresses({hosts[0].address}, timeout=120)
    # The shipped monitoring manifests are valid objects of the real CRDs.
    mon.plane.kubectl("apply", "-f", str(project_root() / "deploy" / "base" / "namespace.yaml"))
    for manifest in ("windows-pod-rules.yaml", "operator-metrics.yaml"):
        path = project_root() / "deploy" / "monitoring" / manifest
        mon.plane.kubectl("apply", "--dry-run=server", "-f", str(path))


async def restored(mon: Mon, kind: str, seen: int) -> bool:
    events = await mon.events(names.EventReason.MONITORING_OBJECT_RESTORED)
    return len([e for e in events if (e.involvedObject.kind or "") == kind]) > seen


async def test_edited_monitoring_objects_are_restored_with_events(mon: Mon) -> None:
    await install_crds(mon)
    await mon.start()
    host = await mon.boot()
    await mon.list_instances(host.address)
    await mon.ready(host)
    await mon.slice_addresses({host.address})
    ca_before = await mon.ca_bundle()
    await eventually(lambda: mon.get(ServiceMonitor), "the ServiceMonitor", 60)

    await mon.kube.patch(
        Service, names.WINDOWS_EXPORTER,
        {"spec": {"ports": [{"name": "metrics", "port": 8080, "targetPort": 8080}]}},
        namespace=mon.ns, patch_type=PatchType.MERGE,
    )  # fmt: skip
    await eventually(lambda: restored(mon, "Service", 0), "the Service restored with an Event", 60)
    service = await mon.get(Service)
    assert [(p.port, p.targetPort) for p in service.spec.ports] == [(9182, 9182)]
    (event,) = await mon.events(names.EventReason.MONITORING_OBJECT_RESTORED)
    assert "was changed (spec.ports)" in (event.message or "")

    await mon.kube.delete(EndpointSlice, names.WINDOWS_EXPORTER, namespace=mon.ns)
    await eventually(
        lambda: restored(mon, "EndpointSlice", 0), "the EndpointSlice re-created with an Event", 60
    )
    await mon.slice_addresses({host.address})

    await mon.kube.patch(
        ServiceMonitor, names.WINDOWS_EXPORTER,
        {"spec": {"endpoints": [{"port": "metrics", "scheme": "http"}]}},
        namespace=mon.ns, patch_type=PatchType.MERGE,
    )  # fmt: skip
    await eventually(
        lambda: restored(mon, "ServiceMonitor", 0), "the ServiceMonitor restored with an Event", 60
    )
    monitor = await mon.get(ServiceMonitor)
    assert monitor["spec"]["endpoints"][0]["scheme"] == "https"

    # A key pasted over the CA's: the CA it held is written back, so the host keeps its cert.
    await mon.kube.patch(
        Secret, names.WINDOWS_EXPORTER_CA_SECRET,
        {"stringData": {"tls.key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}},
        namespace=mon.ns, patch_type=PatchType.MERGE,
    )  # fmt: skip
    await eventually(lambda: restored(mon, "Secret", 0), "the CA Secret restored with an Event", 60)
    assert await mon.ca_bundle() == ca_before
    assert (await https_get(host.address, 9182, ca_before)).status == 200


async def test_a_ca_due_for_rotation_is_rotated_and_every_host_gets_a_new_certificate(
    mon: Mon,
) -> None:
    old = exporterca.generate_ca(
        now=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=300)
    )
    await mon.kube.create(
        Secret(
            metadata=ObjectMeta(name=names.WINDOWS_EXPORTER_CA_SECRET, namespace=mon.ns),
            type="kubernetes.io/tls",
            stringData=old.secret_data(),
        )
    )
    await mon.start()

    rotated = await eventually(
        lambda: mon.events(names.EventReason.EXPORTER_CA_ROTATED), "an ExporterCARotated Event", 60
    )
    assert "due for rotation" in (rotated[0].message or "")
    bundle = await mon.ca_bundle()
    subjects = [c.subject for c in x509.load_pem_x509_certificates(bundle)]
    assert len(subjects) == 2 and subjects[1] == old.certificate.subject
    host = await mon.boot()
    await mon.list_instances(host.address)
    node = await mon.ready(host)
    record = exporterca.ServingRecord.from_annotation(
        (node.metadata.annotations or {}).get(names.EXPORTER_CERT_ANNOTATION)  # type: ignore[union-attr]
    )
    new_ca = x509.load_pem_x509_certificates(bundle)[0]
    assert record is not None
    response = await https_get(host.address, 9182, new_ca.public_bytes(serialization.Encoding.PEM))
    assert response.status == 200


async def test_without_the_crd_hosts_are_configured_and_the_servicemonitor_comes_later(
    mon: Mon, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in CRDS.values():
        mon.plane.kubectl("delete", "crd", name, "--ignore-not-found", "--wait=true")
    await eventually(lambda: _not(served(mon.kube, mon.ns)), "the CRD to be gone", 60)
    monkeypatch.setattr(monitoring_controller, "RECHECK", 1.0)
    await mon.start()
    host = await mon.boot()
    await mon.list_instances(host.address)
    await mon.ready(host)
    await mon.slice_addresses({host.address})
    await eventually(
        lambda: mon.events(names.EventReason.MONITORING_DISABLED), "a monitoringDisabled Event", 60
    )
    assert (await https_get(host.address, 9182, await mon.ca_bundle())).status == 200
    assert "wmco_hosts" in await mon.metrics()

    await install_crds(mon)
    await eventually(lambda: mon.get(ServiceMonitor), "the ServiceMonitor once the CRD exists", 60)
    await eventually(
        lambda: mon.events(names.EventReason.MONITORING_ENABLED), "a monitoringEnabled Event", 60
    )


async def _not(check: Any) -> bool:
    return not await check


async def test_the_operators_metrics_after_a_run(mon: Mon) -> None:
    await mon.start()
    good = await mon.boot()
    unreachable = allocate_address()  # nothing listens there
    await mon.list_instances(good.address, unreachable)
    await mon.ready(good)

    def value(text: str, name: str, **labels: str) -> float:
        return sum(v for got, v in samples(text, name) if labels.items() <= got.items())

    async def reported() -> str | None:
        text = await mon.metrics()
        done = (
            value(text, "wmco_hosts", phase="ready") == 1
            and value(text, "wmco_hosts", phase="failed") == 1
        )
        return text if done else None

    text = await eventually(reported, "wmco_hosts to count one ready and one failed host", 90)
    assert value(text, "wmco_hosts", phase="configuring") == 0
    for step in ("connect", "identify", "files", "services", "exporter-tls", "node-ready"):
        assert value(text, "wmco_configure_step_duration_seconds_count", step=step) >= 1, step
    assert value(text, "wmco_ssh_errors_total", kind="unreachable") >= 1
    # Creating the hybrid overlay's first network drops SSH once; the runner absorbs it.
    assert value(text, "wmco_ssh_errors_total", kind="connection-dropped") >= 1
    assert value(text, "wmco_csr_approvals_total", reason="client-bootstrap") >= 1
    assert value(text, "wmco_csr_refusals_total") == 0
    assert any(labels.get("name") == "instances" for labels, _ in samples(text, "workqueue_depth"))


def pids(host: WindowsHost) -> dict[str, int]:
    return {svc.name: svc.pid for svc in host.machine.scm.processes()}


async def test_a_new_ca_gives_every_host_a_new_certificate_restarting_only_windows_exporter(
    mon: Mon,
) -> None:
    await mon.start()
    host = await mon.boot()
    await mon.list_instances(host.address)
    await mon.ready(host)
    first = await mon.ca_bundle()
    assert (await https_get(host.address, 9182, first)).status == 200
    before = pids(host)

    # Someone puts a CA of their own into the Secret: the operator takes it, and every host gets
    # a certificate of it on its next pass.
    theirs = exporterca.generate_ca()
    await mon.kube.patch(
        Secret, names.WINDOWS_EXPORTER_CA_SECRET, {"stringData": theirs.secret_data()},
        namespace=mon.ns, patch_type=PatchType.MERGE,
    )  # fmt: skip

    async def reissued() -> bool:
        node = await mon.kube.get(Node, host.facts.hostname)
        record = exporterca.ServingRecord.from_annotation(
            (node.metadata.annotations or {}).get(names.EXPORTER_CERT_ANNOTATION)  # type: ignore[union-attr]
        )
        return record is not None and record.ca_sha256 == theirs.sha256

    await eventually(reissued, "the node's certificate record to name the new CA", 90)
    adopted = await eventually(
        lambda: mon.events(names.EventReason.EXPORTER_CA_REPLACED), "an Event about the new CA", 30
    )
    assert "adopted: it holds another CA" in (adopted[0].message or "")
    assert (await https_get(host.address, 9182, theirs.bundle_pem)).status == 200
    after = pids(host)
    assert after["windows_exporter"] != before["windows_exporter"]
    others = {name: pid for name, pid in before.items() if name != "windows_exporter"}
    assert {name: after[name] for name in others} == others, "only windows_exporter restarts"
