"""The simulated kubelet with containerd's CRI against the real control plane: pod networking.

Covers: the node is NotReady with the real ``NetworkReady=false ... cni plugin not initialized``
message until ``conf_dir`` holds a loadable CNI configuration whose HNS network exists, and
follows it both ways (removed -> NotReady, restored -> Ready); while the network is not ready a
non-hostNetwork pod gets the ``NetworkNotReady`` Warning event (created as the node) and stays
Pending, a hostNetwork pod runs with the host's address; once ready the pending pod runs with
an address of the node subnet; sandbox failures become ``FailedCreatePodSandBox`` events with
containerd's text and are retried; a RuntimeClass's handler reaches containerd.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Node, Pod
from lightkube.resources.node_v1 import RuntimeClass

import containerd_helpers
import kubelet_helpers
from kubelet_helpers import bootstrapped, condition, eventually, make_host
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.winhost import kubelet

pytestmark = pytest.mark.integration

NOT_READY = kubelet_helpers.NETWORK_NOT_READY
IMAGE = "mcr.microsoft.com/windows/servercore:ltsc2022"


async def create_pod(kube: AsyncClient, namespace: str, name: str, node: str, **spec: Any) -> None:
    await kubelet_helpers.default_service_account(kube, namespace)
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeName": node,
            "containers": [
                {"name": "main", "image": IMAGE, "command": ["cmd", "/c", f"echo {name} started"]}
            ],
            **spec,
        },
    }
    await kube.create(Pod.from_dict(body))  # type: ignore[arg-type]


async def pod_in(kube: AsyncClient, namespace: str, name: str, phase: str) -> Pod | None:
    pod = await kube.get(Pod, name, namespace=namespace)
    return pod if pod.status and pod.status.phase == phase else None


async def event_for(kube: AsyncClient, namespace: str, pod: str, reason: str) -> Event | None:
    async for event in kube.list(Event, namespace=namespace, fields={"involvedObject.name": pod}):
        if event.reason == reason:
            return event
    return None


async def ready(kube: AsyncClient, name: str, status: str) -> Node | None:
    node = await kube.get(Node, name)
    if node.status and node.status.conditions and condition(node, "Ready").status == status:
        return node
    return None


async def test_ready_and_pods_follow_the_cni_configuration(
    kube: AsyncClient,
    control_plane: ControlPlane,
    token: str,
    namespace: str,
    cleanup: list[kubelet.SimulatedKubelet],
) -> None:
    host = await make_host(control_plane, token, network=False)
    started = await bootstrapped(kube, host, cleanup)
    name = started.node_name

    node = await eventually(lambda: ready(kube, name, "False"), "Ready=False without CNI")
    ready_condition = condition(node, "Ready")
    assert (ready_condition.reason, ready_condition.message) == ("KubeletNotReady", NOT_READY)
    assert host.logged(
        '"Container runtime network not ready" networkReady="NetworkReady=false '
        "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not "
        'initialized"'
    )

    await create_pod(kube, namespace, "app", name)
    await create_pod(kube, namespace, "hostproc", name, hostNetwork=True)
    warning = await eventually(
        lambda: event_for(kube, namespace, "app", "NetworkNotReady"), "the NetworkNotReady event"
    )
    assert warning.type == "Warning"
    assert warning.message == f"network is not ready: {NOT_READY}"
    assert warning.source is not None and warning.source.component == "kubelet"
    assert warning.source.host == name

    async def reported_pending() -> Pod | None:
        pod = await pod_in(kube, namespace, "app", "Pending")
        return pod if pod and pod.status and pod.status.hostIP else None

    pending = await eventually(reported_pending, "the kubelet to report app Pending")
    assert pending.status is not None and pending.status.hostIP == host.facts.address
    assert not pending.status.podIP
    statuses = pending.status.containerStatuses or []
    assert [
        (s.name, s.state.waiting.reason if s.state and s.state.waiting else None) for s in statuses
    ] == [("main", "ContainerCreating")]
    hostproc = await eventually(
        lambda: pod_in(kube, namespace, "hostproc", "Running"), "the hostNetwork pod to run"
    )
    assert hostproc.status is not None and hostproc.status.podIP == host.facts.address

    containerd_helpers.configure_network(host.machine)
    await eventually(lambda: ready(kube, name, "True"), "Ready=True once cni.conf loads")
    app = await eventually(lambda: pod_in(kube, namespace, "app", "Running"), "app to run")
    assert app.status is not None and app.status.podIP == "10.132.0.2"

    host.machine.disk.remove(containerd_helpers.CNI_CONF)
    node = await eventually(lambda: ready(kube, name, "False"), "NotReady after removal")
    assert condition(node, "Ready").message == NOT_READY
    host.write_file(containerd_helpers.CNI_CONF, containerd_helpers.cni_conf())
    await eventually(lambda: ready(kube, name, "True"), "Ready again after restore")


@pytest.fixture
async def runtime_classes(kube: AsyncClient) -> AsyncIterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(ApiError):
            await kube.delete(RuntimeClass, name)


async def test_sandbox_failures_are_events_and_runtime_class_handlers_reach_containerd(
    kube: AsyncClient,
    control_plane: ControlPlane,
    token: str,
    namespace: str,
    cleanup: list[kubelet.SimulatedKubelet],
    runtime_classes: list[str],
) -> None:
    host = await make_host(control_plane, token)
    started = await bootstrapped(kube, host, cleanup)
    await eventually(lambda: ready(kube, started.node_name, "True"), "Ready=True")

    host.machine.disk.remove("C:\\k\\cni\\host-local.exe")
    await create_pod(kube, namespace, "web", started.node_name)
    failed = await eventually(
        lambda: event_for(kube, namespace, "web", "FailedCreatePodSandBox"),
        "the FailedCreatePodSandBox event",
    )
    assert failed.type == "Warning" and failed.message is not None
    assert failed.message.startswith(
        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network "
        'for sandbox "'
    )
    assert failed.message.endswith(
        f'plugin type="win-overlay" name="{containerd_helpers.OVERLAY}" failed (add): '
        'failed to find plugin "host-local" in path [C:\\k\\cni]'
    )
    assert await pod_in(kube, namespace, "web", "Pending")
    host.write_file("C:\\k\\cni\\host-local.exe", b"MZ")
    web = await eventually(lambda: pod_in(kube, namespace, "web", "Running"), "web after retry")
    assert web.status is not None and web.status.podIP == "10.132.0.2"

    suffix = started.node_name.rsplit("-", 1)[-1]
    for rc_name, handler in (
        (f"isolated-{suffix}", "runhcs-wcow-hypervisor-17763"),
        (f"process-{suffix}", "runhcs-wcow-process"),
    ):
        runtime_classes.append(rc_name)
        await kube.create(RuntimeClass(metadata=ObjectMeta(name=rc_name), handler=handler))
    await create_pod(
        kube, namespace, "isolated", started.node_name, runtimeClassName=f"isolated-{suffix}"
    )
    await create_pod(
        kube, namespace, "process", started.node_name, runtimeClassName=f"process-{suffix}"
    )
    refused = await eventually(
        lambda: event_for(kube, namespace, "isolated", "FailedCreatePodSandBox"),
        "the sandbox refusal for an unknown handler",
    )
    assert refused.message == (
        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox "
        'runtime: no runtime for "runhcs-wcow-hypervisor-17763" is configured'
    )
    await eventually(lambda: pod_in(kube, namespace, "process", "Running"), "the process pod")
