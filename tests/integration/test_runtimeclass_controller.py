"""Managed RuntimeClasses against the real API server, and the real scheduler obeying them.

The runtimeclass controller runs in its own manager on the admin client; the Windows Nodes are
made by the test as admin (the scheduler, RuntimeClass admission and the node lifecycle
controller are the real ones; a task keeps the fake nodes' Ready heartbeat fresh). Covered: one
RuntimeClass per build of the operator's nodes (a node it did not configure counts for nothing),
re-created when deleted, restored with an Event when edited, deleted when its last node goes;
a user's own RuntimeClass of a managed name left exactly as it is, with an Event; Hyper-V ones
following the ``hyperv`` label; and the scheduler keeping a ``windows-2019`` pod off a 2022 node
and a pod without RuntimeClass or toleration off every Windows node.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from lightkube import ApiError, AsyncClient
from lightkube.models.core_v1 import (
    Container,
    NodeCondition,
    NodeSpec,
    NodeStatus,
    PodSpec,
    Taint,
)
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.node_v1 import Scheduling
from lightkube.resources.core_v1 import Event, Node, Pod
from lightkube.resources.core_v1 import NodeStatus as NodeStatusResource
from lightkube.resources.node_v1 import RuntimeClass
from lightkube.types import PatchType

from kube_helpers import eventually
from wmco import kube as kube_mod
from wmco import names
from wmco.controllers import runtimeclass
from wmco.runtime import manager as manager_mod
from wmco.settings import HyperVMode, Settings

pytestmark = pytest.mark.integration

BUILDS = {"2019": "10.0.17763", "2022": "10.0.20348", "2025": "10.0.26100"}


async def clear_managed_names(kube: AsyncClient) -> None:
    for name in runtimeclass.NAMES:
        with contextlib.suppress(ApiError):
            await kube.delete(RuntimeClass, name)


@contextlib.asynccontextmanager
async def running_controller(kube: AsyncClient, hyperv: HyperVMode) -> AsyncIterator[None]:
    manager = manager_mod.Manager(kube, port=0, resync_period=None)
    recorder = kube_mod.EventRecorder(kube, component="windows-machine-config-operator")
    runtimeclass.setup(manager, Settings(hyperv=hyperv), recorder)
    task = asyncio.create_task(manager.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Nodes:
    """Fake Windows Nodes made as admin; their Ready heartbeat is kept fresh while they live."""

    def __init__(self, kube: AsyncClient) -> None:
        self.kube = kube
        self.names: list[str] = []
        self.ready: set[str] = set()

    async def add(
        self,
        year: str,
        *,
        managed: bool = True,
        hyperv: bool = False,
        ready: bool = False,
        unschedulable: bool = False,
    ) -> str:
        name = f"win-rtc-{year}-{secrets.token_hex(3)}"
        labels = {
            names.OS_LABEL: names.OS_LABEL_WINDOWS,
            names.ARCH_LABEL: "amd64",
            names.HOSTNAME_LABEL: name,
            names.WINDOWS_BUILD_LABEL: BUILDS[year],
        }
        if hyperv:
            labels[names.HYPERV_LABEL] = "true"
        annotations = {names.VERSION_ANNOTATION: "test+payload.test"} if managed else {}
        await self.kube.create(
            Node(
                metadata=ObjectMeta(name=name, labels=labels, annotations=annotations),
                spec=NodeSpec(
                    unschedulable=unschedulable or None,
                    taints=[Taint(key="os", value="Windows", effect="NoSchedule")],
                ),
            )
        )
        self.names.append(name)
        if ready:
            await self.heartbeat(name)
            self.ready.add(name)
        return name

    async def heartbeat(self, name: str) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = NodeStatus(
            conditions=[
                NodeCondition(
                    type="Ready",
                    status="True",
                    reason="KubeletReady",
                    message="kubelet is posting ready status",
                    lastHeartbeatTime=now,  # type: ignore[arg-type]
                    lastTransitionTime=now,  # type: ignore[arg-type]
                )
            ],
            capacity={"cpu": "4", "memory": "8Gi", "pods": "110"},
            allocatable={"cpu": "4", "memory": "8Gi", "pods": "110"},
        )
        await self.kube.patch(
            NodeStatusResource, name, {"status": status.to_dict()}, patch_type=PatchType.MERGE
        )

    async def keep_alive(self) -> None:
        while True:
            await asyncio.sleep(3)
            for name in list(self.ready):
                with contextlib.suppress(ApiError):
                    await self.heartbeat(name)

    async def delete(self, name: str) -> None:
        self.ready.discard(name)
        await self.kube.delete(Node, name)


@pytest.fixture
async def nodes(kube: AsyncClient) -> AsyncIterator[Nodes]:
    await clear_managed_names(kube)
    made = Nodes(kube)
    beating = asyncio.create_task(made.keep_alive())
    try:
        yield made
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
        for name in made.names:
            with contextlib.suppress(ApiError):
                await kube.delete(Node, name)
        await clear_managed_names(kube)


async def runtime_class(kube: AsyncClient, name: str) -> RuntimeClass | None:
    try:
        return await kube.get(RuntimeClass, name)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise


def present(kube: AsyncClient, name: str) -> Callable[[], Awaitable[RuntimeClass | None]]:
    return lambda: runtime_class(kube, name)


def absent(kube: AsyncClient, name: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await runtime_class(kube, name) is None

    return check


async def event_about(kube: AsyncClient, name: str, reason: str) -> Event | None:
    async for event in kube.list(Event, namespace="default"):
        involved = event.involvedObject
        if involved.kind == "RuntimeClass" and involved.name == name and event.reason == reason:
            return event
    return None


def selector(rc: RuntimeClass) -> dict[str, str]:
    return dict((rc.scheduling.nodeSelector if rc.scheduling else None) or {})


def uid(rc: RuntimeClass) -> str:
    assert rc.metadata is not None and rc.metadata.uid
    return rc.metadata.uid


async def test_one_runtime_class_per_build_kept_recreated_restored_and_removed(
    kube: AsyncClient, nodes: Nodes
) -> None:
    async with running_controller(kube, HyperVMode.OFF):
        # The unmanaged 2019 node is added first: the informer delivers it before the 2022 one,
        # so windows-2022 appearing proves the controller saw it and wanted nothing for it.
        foreign_2019 = await nodes.add("2019", managed=False)
        node_2022 = await nodes.add("2022")
        created = await eventually(present(kube, "windows-2022"), "windows-2022 to be created")
        assert created.metadata is not None
        assert created.metadata.labels == {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE}
        assert created.handler == "runhcs-wcow-process"
        assert selector(created) == {
            "kubernetes.io/os": "windows",
            "node.kubernetes.io/windows-build": "10.0.20348",
        }
        assert created.scheduling is not None
        assert [
            (t.key, t.operator, t.value, t.effect) for t in created.scheduling.tolerations or []
        ] == [("os", "Equal", "Windows", "NoSchedule")]
        assert created.overhead is None
        assert await runtime_class(kube, "windows-2019") is None

        await kube.delete(RuntimeClass, "windows-2022")

        async def recreated() -> RuntimeClass | None:
            got = await runtime_class(kube, "windows-2022")
            return got if got is not None and uid(got) != uid(created) else None

        again = await eventually(recreated, "windows-2022 to be re-created after its deletion")
        assert again.handler == "runhcs-wcow-process"

        await kube.patch(
            RuntimeClass,
            "windows-2022",
            {
                "scheduling": {
                    "nodeSelector": {"node.kubernetes.io/windows-build": None},
                    "tolerations": None,
                }
            },
            patch_type=PatchType.MERGE,
        )

        async def restored() -> bool:
            got = await runtime_class(kube, "windows-2022")
            return bool(got and selector(got) == selector(created) and got.scheduling.tolerations)  # type: ignore[union-attr]

        await eventually(restored, "the edited windows-2022 to be restored")
        event = await eventually(
            lambda: event_about(kube, "windows-2022", names.EventReason.RUNTIME_CLASS_RESTORED),
            "a RuntimeClassRestored Event",
        )
        assert event.type == "Warning" and event.message is not None
        assert "(scheduling.nodeSelector, scheduling.tolerations); restored" in event.message
        restored_obj = await runtime_class(kube, "windows-2022")
        assert restored_obj is not None and uid(restored_obj) == uid(again)  # replaced in place

        await kube.patch(
            Node,
            foreign_2019,
            {"metadata": {"annotations": {names.VERSION_ANNOTATION: "test+payload.test"}}},
            patch_type=PatchType.MERGE,
        )
        await eventually(present(kube, "windows-2019"), "windows-2019 once its node is managed")

        await nodes.delete(node_2022)
        await eventually(absent(kube, "windows-2022"), "windows-2022 to go with its last node")
        assert await runtime_class(kube, "windows-2019") is not None


async def test_a_users_own_runtime_class_of_a_managed_name_is_left_alone_with_an_event(
    kube: AsyncClient, nodes: Nodes
) -> None:
    users = await kube.create(
        RuntimeClass(
            metadata=ObjectMeta(name="windows-2025", labels={"team": "windows"}),
            handler="runhcs-wcow-process",
            scheduling=Scheduling(nodeSelector={"team": "windows"}),
        )
    )
    async with running_controller(kube, HyperVMode.OFF):
        await nodes.add("2025")
        event = await eventually(
            lambda: event_about(kube, "windows-2025", names.EventReason.RUNTIME_CLASS_CONFLICT),
            "a RuntimeClassConflict Event on the user's windows-2025",
        )
        assert event.type == "Warning" and event.message is not None
        assert "not the operator's" in event.message
        assert event.involvedObject.uid == uid(users)
        untouched = await runtime_class(kube, "windows-2025")
        assert untouched is not None and untouched.metadata is not None
        assert untouched.metadata.resourceVersion == users.metadata.resourceVersion  # type: ignore[union-attr]
        assert untouched.metadata.labels == {"team": "windows"}
        assert selector(untouched) == {"team": "windows"}
        assert event.count == 1  # reported once, not at every look

        # Once the user's is gone, the operator keeps its own.
        await kube.delete(RuntimeClass, "windows-2025")

        async def ours() -> bool:
            got = await runtime_class(kube, "windows-2025")
            return bool(
                got
                and (got.metadata.labels or {}).get(names.MANAGED_BY_LABEL)  # type: ignore[union-attr]
                == names.MANAGED_BY_VALUE
            )

        await eventually(ours, "the operator's windows-2025 after the user's was deleted")


async def test_hyperv_runtime_classes_follow_the_hyperv_label(
    kube: AsyncClient, nodes: Nodes
) -> None:
    async with running_controller(kube, HyperVMode.ON):
        node = await nodes.add("2022", hyperv=True)
        same = await eventually(present(kube, "windows-2022-hyperv"), "windows-2022-hyperv")
        older = await eventually(
            present(kube, "windows-2019-hyperv-on-2022"), "windows-2019-hyperv-on-2022"
        )
        assert same.handler == "runhcs-wcow-hypervisor"
        assert older.handler == "runhcs-wcow-hypervisor-17763"
        for made in (same, older):
            assert selector(made) == {
                "kubernetes.io/os": "windows",
                "node.kubernetes.io/windows-build": "10.0.20348",
                names.HYPERV_LABEL: "true",
            }
            assert made.overhead is not None and made.overhead.podFixed == {"memory": "1Gi"}
        assert await runtime_class(kube, "windows-2022") is not None
        assert await runtime_class(kube, "windows-2022-hyperv-on-2025") is None

        await kube.patch(
            Node,
            node,
            {"metadata": {"labels": {names.HYPERV_LABEL: None}}},
            patch_type=PatchType.MERGE,
        )
        await eventually(absent(kube, "windows-2022-hyperv"), "windows-2022-hyperv to go")
        await eventually(absent(kube, "windows-2019-hyperv-on-2022"), "the 2019-on-2022 one too")
        assert await runtime_class(kube, "windows-2022") is not None


# --- The real scheduler -----------------------------------------------------------------------


def pod(name: str, namespace: str, runtime_class_name: str | None) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=PodSpec(
            runtimeClassName=runtime_class_name,
            containers=[Container(name="c", image="mcr.microsoft.com/windows/nanoserver:ltsc2022")],
        ),
    )


def unschedulable(kube: AsyncClient, name: str, namespace: str) -> Callable[[], Awaitable[Any]]:
    async def check() -> Any:
        got = await kube.get(Pod, name, namespace=namespace)
        for condition in (got.status.conditions if got.status else None) or []:
            if (condition.type, condition.status, condition.reason) == (
                "PodScheduled",
                "False",
                "Unschedulable",
            ):
                return condition
        return None

    return check


def bound(kube: AsyncClient, name: str, namespace: str) -> Callable[[], Awaitable[str | None]]:
    async def check() -> str | None:
        got = await kube.get(Pod, name, namespace=namespace)
        return got.spec.nodeName if got.spec else None

    return check


def no_node(pods: Iterator[Pod]) -> bool:
    return all(p.spec is not None and p.spec.nodeName is None for p in pods)


async def test_the_scheduler_keeps_pods_to_their_build_and_plain_pods_off_windows(
    kube: AsyncClient, nodes: Nodes, namespace: str
) -> None:
    async with running_controller(kube, HyperVMode.OFF):
        # The 2019 node is cordoned at first: windows-2019 exists (its node is managed), yet
        # the only schedulable Windows node is a 2022 one.
        node_2019 = await nodes.add("2019", ready=True, unschedulable=True)
        node_2022 = await nodes.add("2022", ready=True)
        await eventually(present(kube, "windows-2019"), "windows-2019")
        await eventually(present(kube, "windows-2022"), "windows-2022")

        old = await kube.create(pod("old", namespace, "windows-2019"))
        assert old.spec is not None and old.spec.nodeSelector == {
            "kubernetes.io/os": "windows",
            "node.kubernetes.io/windows-build": "10.0.17763",
        }  # RuntimeClass admission merged the scheduling into the pod
        assert any(t.key == "os" and t.value == "Windows" for t in old.spec.tolerations or [])
        await kube.create(pod("new", namespace, "windows-2022"))
        await kube.create(pod("plain", namespace, None))

        assert await eventually(bound(kube, "new", namespace), "the 2022 pod to bind") == node_2022
        refused = await eventually(
            unschedulable(kube, "old", namespace), "the scheduler to refuse the 2019 pod"
        )
        assert "node affinity/selector" in refused.message
        assert await bound(kube, "old", namespace)() is None
        plain = await eventually(
            unschedulable(kube, "plain", namespace), "the scheduler to refuse the plain pod"
        )
        assert "untolerated taint" in plain.message
        assert await bound(kube, "plain", namespace)() is None

        # Uncordoned, the 2019 node takes the 2019 pod: the refusal was the build, not the pod.
        await kube.patch(
            Node, node_2019, {"spec": {"unschedulable": None}}, patch_type=PatchType.MERGE
        )
        assert await eventually(bound(kube, "old", namespace), "the 2019 pod to bind") == node_2019

        # The scheduler looked at the plain pod again with both nodes schedulable: only the
        # os=Windows taint keeps it off them now.
        async def only_the_taint() -> bool:
            condition = await unschedulable(kube, "plain", namespace)()
            message = condition.message if condition is not None else ""
            return "untolerated taint" in message and "unschedulable" not in message

        await eventually(only_the_taint, "the plain pod refused for the taint alone")
        assert await bound(kube, "plain", namespace)() is None
