"""Hyper-V isolation end to end: the operator (``hyperv=install``) and two strict simulated hosts.

One host can run Hyper-V (its processor exposes virtualisation): the operator finds the role
``Available``, installs it, reboots, finds it ``Installed``, writes containerd's Hyper-V runtimes,
labels the node ``hyperv=true`` and keeps the Hyper-V RuntimeClasses for its build. The other is
a VM without nested virtualisation: ``Install-WindowsFeature`` fails its prerequisite check, the
node still becomes Ready as a process-isolation node, with a Warning Event saying why (Windows'
own words). Then the real scheduler puts a ``windows-2019-hyperv-on-2022`` pod on the Hyper-V
node (with the utility VM's overhead), where it runs; and a pod pinned to each node with a
RuntimeClass naming the per-build handler runs on the Hyper-V node and fails on the other with
containerd's ``no runtime for "<handler>" is configured`` as a pod Event.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Node, Pod
from lightkube.resources.node_v1 import RuntimeClass
from test_operator import World, open_world

import kubelet_helpers
from kube_helpers import eventually
from wmco import names
from wmco.settings import HyperVMode
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.winhost.host import WindowsHost

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONTAINERD_CONFIG = "C:\\k\\containerd\\containerd_conf.toml"
CRI = "io.containerd.grpc.v1.cri"
INSTALL = "$ProgressPreference = 'SilentlyContinue'; Install-WindowsFeature -Name 'Hyper-V'"
IMAGE = "mcr.microsoft.com/windows/servercore:ltsc2019"
HANDLER = "runhcs-wcow-hypervisor-17763"


@pytest.fixture
async def world(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path
) -> AsyncIterator[World]:
    async with open_world(control_plane, kube, tmp_path, hyperv=HyperVMode.INSTALL) as opened:
        yield opened


@pytest.fixture
async def probe_class(kube: AsyncClient) -> AsyncIterator[str]:
    """A RuntimeClass of the per-build Hyper-V handler with no scheduling (pods pin a node)."""
    name = f"hv-probe-{secrets.token_hex(3)}"
    await kube.create(RuntimeClass(metadata=ObjectMeta(name=name), handler=HANDLER))
    try:
        yield name
    finally:
        with contextlib.suppress(ApiError):
            await kube.delete(RuntimeClass, name)


def runtimes(host: WindowsHost) -> dict[str, dict[str, object]]:
    data = host.machine.disk.read_file(CONTAINERD_CONFIG)
    assert data is not None
    return dict(tomllib.loads(data.decode())["plugins"][CRI]["containerd"]["runtimes"])


async def node_event(kube: AsyncClient, node: str, reason: str) -> Event | None:
    async for event in kube.list(Event, namespace="default", fields={"involvedObject.name": node}):
        if event.involvedObject.kind == "Node" and event.reason == reason:
            return event
    return None


async def pod_event(kube: AsyncClient, namespace: str, pod: str, reason: str) -> Event | None:
    async for event in kube.list(Event, namespace=namespace, fields={"involvedObject.name": pod}):
        if event.reason == reason:
            return event
    return None


async def _get(kube: AsyncClient, name: str) -> RuntimeClass | None:
    try:
        got: RuntimeClass = await kube.get(RuntimeClass, name)
    except ApiError:
        return None
    return got


def present(kube: AsyncClient, name: str) -> Callable[[], Awaitable[RuntimeClass | None]]:
    return lambda: _get(kube, name)


async def running(kube: AsyncClient, namespace: str, name: str) -> Pod | None:
    pod = await kube.get(Pod, name, namespace=namespace)
    return pod if pod.status and pod.status.phase == "Running" else None


async def create_pod(
    kube: AsyncClient, namespace: str, name: str, runtime_class: str, node: str | None = None
) -> Pod:
    spec: dict[str, object] = {
        "runtimeClassName": runtime_class,
        "containers": [
            {"name": "main", "image": IMAGE, "command": ["cmd", "/c", f"echo {name} started"]}
        ],
    }
    if node is not None:
        spec["nodeName"] = node
    created: Pod = await kube.create(
        Pod.from_dict({"apiVersion": "v1", "kind": "Pod",  # type: ignore[arg-type]
                       "metadata": {"name": name, "namespace": namespace}, "spec": spec})
    )  # fmt: skip
    return created


async def test_hyperv_is_installed_where_it_can_run_and_reported_where_it_cannot(
    world: World, kube: AsyncClient, namespace: str, probe_class: str
) -> None:
    capable = await world.boot_host()
    nested_less = await world.boot_host(virtualization_extensions=False)
    for host in (capable, nested_less):
        host.faults.reboot_unreachable = 0.1
    await world.list_instances(
        {h.address: "username=Administrator" for h in (capable, nested_less)}
    )
    hyperv_node = await world.wait_ready(capable)
    process_node = await world.wait_ready(nested_less)
    assert hyperv_node.metadata is not None and process_node.metadata is not None
    hyperv_name, process_name = hyperv_node.metadata.name, process_node.metadata.name
    assert hyperv_name and process_name

    # The capable host: the role installed (one reboot for it), the runtimes, the label.
    assert capable.machine.features["hyper-v"] == "Enabled" and capable.machine.hyperv_running()
    assert INSTALL in [record.command for record in capable.command_log]
    assert (hyperv_node.metadata.labels or {}).get(names.HYPERV_LABEL) == "true"
    assert names.HYPERV_CHECKED_ANNOTATION not in (hyperv_node.metadata.annotations or {})
    hyperv_options = {
        "SandboxIsolation": 1,
        "SandboxPlatform": "windows/amd64",
        "ScaleCpuLimitsToSandbox": True,
    }
    assert runtimes(capable) == {
        "runhcs-wcow-process": {"runtime_type": "io.containerd.runhcs.v1"},
        "runhcs-wcow-hypervisor": {
            "runtime_type": "io.containerd.runhcs.v1",
            "options": hyperv_options,
        },
        HANDLER: {"runtime_type": "io.containerd.runhcs.v1", "options": hyperv_options},
    }

    # The VM without nested virtualisation: Windows refused, the node is a process node.
    assert nested_less.machine.features["hyper-v"] == "Disabled"
    assert INSTALL in [record.command for record in nested_less.command_log]
    assert names.HYPERV_LABEL not in (process_node.metadata.labels or {})
    assert (process_node.metadata.annotations or {})[names.HYPERV_CHECKED_ANNOTATION] == "install"
    assert runtimes(nested_less) == {
        "runhcs-wcow-process": {"runtime_type": "io.containerd.runhcs.v1"}
    }
    warning = await eventually(
        lambda: node_event(kube, process_name, names.EventReason.HYPERV_UNAVAILABLE),
        "a HyperVUnavailable Event on the process node",
        30,
    )
    assert warning.type == "Warning"
    assert warning.message == (
        "no Hyper-V isolation on this node: Hyper-V cannot be installed: A prerequisite check "
        "for the Hyper-V feature failed. 1. Hyper-V cannot be installed: The processor does not "
        "have required virtualization capabilities.; it stays a process-isolation node"
    )
    assert await node_event(kube, hyperv_name, names.EventReason.HYPERV_UNAVAILABLE) is None

    # The operator keeps the Hyper-V RuntimeClasses of the Hyper-V node's build.
    for name, handler in (
        ("windows-2022", "runhcs-wcow-process"),
        ("windows-2022-hyperv", "runhcs-wcow-hypervisor"),
        ("windows-2019-hyperv-on-2022", HANDLER),
    ):
        made = await eventually(present(kube, name), f"RuntimeClass {name}", 30)
        assert made.handler == handler

    # The real scheduler sends a 2019-on-2022 Hyper-V pod to the Hyper-V node, where it runs.
    await kubelet_helpers.default_service_account(kube, namespace)
    isolated = await create_pod(kube, namespace, "isolated", "windows-2019-hyperv-on-2022")
    assert isolated.spec is not None and isolated.spec.overhead == {"memory": "1Gi"}
    ran = await eventually(lambda: running(kube, namespace, "isolated"), "the Hyper-V pod", 60)
    assert ran.spec is not None and ran.spec.nodeName == hyperv_name

    # The same handler, pinned to each node: containerd defines it only where Hyper-V runs.
    await create_pod(kube, namespace, "on-process-node", probe_class, node=process_name)
    await create_pod(kube, namespace, "on-hyperv-node", probe_class, node=hyperv_name)
    refused = await eventually(
        lambda: pod_event(kube, namespace, "on-process-node", "FailedCreatePodSandBox"),
        "the sandbox refusal on the process node",
        60,
    )
    assert refused.type == "Warning"
    assert refused.message == (
        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox "
        f'runtime: no runtime for "{HANDLER}" is configured'
    )
    await eventually(
        lambda: running(kube, namespace, "on-hyperv-node"), "the pinned Hyper-V pod", 60
    )
    assert await running(kube, namespace, "on-process-node") is None


async def test_turning_hyperv_off_takes_the_runtimes_the_label_and_the_classes_away(
    world: World, kube: AsyncClient
) -> None:
    host = await world.boot_host()
    host.faults.reboot_unreachable = 0.1
    await world.list_instances({host.address: "username=Administrator"})
    node = await world.wait_ready(host)
    assert node.metadata is not None and node.metadata.name
    name = node.metadata.name
    assert (node.metadata.labels or {}).get(names.HYPERV_LABEL) == "true"
    await eventually(present(kube, "windows-2022-hyperv"), "windows-2022-hyperv", 30)

    await world.stop_operator()
    world.settings = dataclasses.replace(world.settings, hyperv=HyperVMode.OFF)
    await world.start_operator()

    async def process_only() -> bool:
        current = await kube.get(Node, name)
        labels = (current.metadata.labels if current.metadata else None) or {}
        return names.HYPERV_LABEL not in labels and list(runtimes(host)) == ["runhcs-wcow-process"]

    await eventually(process_only, "the node reconfigured without Hyper-V", 90)
    await eventually(
        lambda: _absent(kube, "windows-2022-hyperv"), "windows-2022-hyperv to be deleted", 30
    )
    assert await _get(kube, "windows-2022") is not None


async def _absent(kube: AsyncClient, name: str) -> bool:
    return await _get(kube, name) is None
