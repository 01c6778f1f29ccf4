"""Rolling upgrades and the reboots the operator needs, watched from the cluster's side.

Three strict simulated hosts become nodes; a Deployment of three pods runs on them, guarded by a
PodDisruptionBudget. Then a new payload (one changed binary) reaches the operator, or a node asks
for a reboot. A watch records every update of every Windows Node and every pod of the
Deployment, so the tests judge the whole roll-out, not only where it ends: the number of
unschedulable Windows nodes never exceeded ``maxUnavailable``, the PDB's minimum of Ready pods
held, a blocking PDB makes the node wait (``DrainBlocked``) rather than be bypassed, and a failed
upgrade stops the roll-out at that node.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Event, Node, Pod
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType
from test_operator import World, open_world

import wmco
from kube_helpers import eventually
from wmco import names
from wmco.payload import manifest as payload_manifest
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.winhost.host import WindowsHost

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

APP = {"app": "web"}
REPLICAS = 3
IMAGE = "mcr.microsoft.com/windows/nanoserver:ltsc2022"
NEW_EXPORTER = b"MZ windows_exporter, the next release"


@dataclasses.dataclass
class Timeline:
    """Every Node and pod update seen by two watches, and what they add up to."""

    nodes: set[str]
    unschedulable: dict[str, bool] = dataclasses.field(default_factory=dict)
    labelled: dict[str, bool] = dataclasses.field(default_factory=dict)
    max_unschedulable: int = 0
    ever_cordoned: set[str] = dataclasses.field(default_factory=set)
    ever_labelled: list[str] = dataclasses.field(default_factory=list)
    node_updates: int = 0
    available: dict[str, bool] = dataclasses.field(default_factory=dict)
    min_available: int | None = None
    evicted: set[str] = dataclasses.field(default_factory=set)
    history: list[str] = dataclasses.field(default_factory=list)
    boots: Callable[[], int] = lambda: 0
    boots_at_eviction: dict[str, int] = dataclasses.field(default_factory=dict)

    def node(self, node: Node) -> None:
        name = node.metadata.name if node.metadata else None
        if name not in self.nodes:
            return
        self.node_updates += 1
        cordoned = bool(node.spec and node.spec.unschedulable)
        self.unschedulable[name] = cordoned
        if cordoned:
            self.ever_cordoned.add(name)
        labels = (node.metadata.labels if node.metadata else None) or {}
        labelled = labels.get(names.UPGRADING_LABEL) == names.TRUE
        if labelled and name not in self.ever_labelled:
            self.ever_labelled.append(name)
        self.labelled[name] = labelled
        self.max_unschedulable = max(self.max_unschedulable, sum(self.unschedulable.values()))

    def pod(self, kind: str, pod: Pod) -> None:
        name = (pod.metadata.name if pod.metadata else None) or ""
        deleting = pod.metadata is not None and pod.metadata.deletionTimestamp is not None
        if deleting and name not in self.evicted:
            self.evicted.add(name)
            self.boots_at_eviction[name] = self.boots()
        ready = any(
            c.type == "Ready" and c.status == "True"
            for c in ((pod.status.conditions if pod.status else None) or [])
        )
        self.available[name] = kind != "DELETED" and ready and not deleting
        count = sum(self.available.values())
        self.history.append(
            f"{kind} {name} on {pod.spec.nodeName if pod.spec else None}: ready={ready} "
            f"deleting={deleting} -> {count} available"
        )
        self.min_available = count if self.min_available is None else min(self.min_available, count)


@contextlib.asynccontextmanager
async def watching(
    kube: AsyncClient, namespace: str, nodes: set[str], host: WindowsHost | None = None
) -> AsyncIterator[Timeline]:
    """Record every Windows Node and Deployment pod update from now on (no gap after a list).

    With ``host``, each eviction is stamped with that host's boot count when it was seen.
    """
    timeline = Timeline(nodes)
    if host is not None:
        timeline.boots = lambda: host.boot_count
    node_list = kube.list(Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS})
    async for node in node_list:
        timeline.node(node)
    pod_list = kube.list(Pod, namespace=namespace, labels=APP)
    async for pod in pod_list:
        timeline.pod("ADDED", pod)
    timeline.min_available = sum(timeline.available.values())  # from here on, every moment

    async def watch_nodes() -> None:
        async for _, node in kube.watch(
            Node,
            labels={names.OS_LABEL: names.OS_LABEL_WINDOWS},
            resource_version=node_list.resourceVersion,
        ):
            timeline.node(node)

    async def watch_pods() -> None:
        async for kind, pod in kube.watch(
            Pod, namespace=namespace, labels=APP, resource_version=pod_list.resourceVersion
        ):
            timeline.pod(kind, pod)

    tasks = [asyncio.create_task(watch_nodes()), asyncio.create_task(watch_pods())]
    try:
        yield timeline
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclasses.dataclass
class Fleet:
    world: World
    hosts: list[WindowsHost]
    namespace: str

    @property
    def kube(self) -> AsyncClient:
        return self.world.kube

    @property
    def node_names(self) -> set[str]:
        return {h.facts.hostname for h in self.hosts}

    async def node(self, name: str) -> Node:
        got: Node = await self.kube.get(Node, name)
        return got

    async def node_events(self, reason: str) -> list[Event]:
        return [
            e
            async for e in self.kube.list(Event, namespace="default")
            if e.reason == reason and e.involvedObject.name in self.node_names
        ]

    async def set_pdb(self, min_available: int) -> None:
        body = {"spec": {"minAvailable": min_available}}
        await self.kube.patch(
            PodDisruptionBudget, "web", body, namespace=self.namespace, patch_type=PatchType.MERGE
        )

    async def new_payload(self, tmp_path: Path) -> str:
        """Restart the operator with a payload whose only change is windows_exporter.exe."""
        new_dir = tmp_path / "payload-2"
        shutil.copytree(self.world.payload.directory, new_dir)
        (new_dir / "windows_exporter.exe").write_bytes(NEW_EXPORTER)
        await self.world.stop_operator()
        self.world.payload = payload_manifest.write_manifest(
            new_dir, payload_manifest.TEST_PAYLOAD_FILES, version="test-2"
        )
        await self.world.start_operator()
        return names.node_version(wmco.__version__, "test-2")

    async def pods(self) -> list[Pod]:
        return [p async for p in self.kube.list(Pod, namespace=self.namespace, labels=APP)]

    async def pods_ready(self) -> bool:
        pods = [p for p in await self.pods() if p.metadata and not p.metadata.deletionTimestamp]
        return len(pods) == REPLICAS and all(
            p.spec
            and p.spec.nodeName in self.node_names
            and any(
                c.type == "Ready" and c.status == "True"
                for c in ((p.status.conditions if p.status else None) or [])
            )
            for p in pods
        )


def deployment(namespace: str) -> Deployment:
    return Deployment.from_dict(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": REPLICAS,
                "selector": {"matchLabels": APP},
                "template": {
                    "metadata": {"labels": APP},
                    "spec": {
                        "nodeSelector": {names.OS_LABEL: names.OS_LABEL_WINDOWS},
                        "tolerations": [
                            {
                                "key": names.WINDOWS_TAINT_KEY,
                                "value": names.WINDOWS_TAINT_VALUE,
                                "effect": names.WINDOWS_TAINT_EFFECT,
                            }
                        ],
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {"name": "web", "image": IMAGE, "command": ["cmd", "/c", "echo up"]}
                        ],
                    },
                },
            },
        }
    )


def pdb(namespace: str, min_available: int) -> PodDisruptionBudget:
    return PodDisruptionBudget.from_dict(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": APP}},
        }
    )


@contextlib.asynccontextmanager
async def fleet_of(
    control_plane: ControlPlane,
    kube: AsyncClient,
    tmp_path: Path,
    namespace: str,
    *,
    min_available: int = REPLICAS - 1,
    **overrides: Any,
) -> AsyncIterator[Fleet]:
    """Three configured hosts running the Deployment, guarded by the PDB ``web``."""
    async with open_world(control_plane, kube, tmp_path, **overrides) as world:
        hosts = [await world.boot_host() for _ in range(3)]
        await world.list_instances({h.address: "username=Administrator" for h in hosts})
        for host in hosts:
            await world.wait_ready(host)
        fleet = Fleet(world, hosts, namespace)
        await kube.create(deployment(namespace))
        await kube.create(pdb(namespace, min_available))
        await eventually(fleet.pods_ready, f"{REPLICAS} pods Ready on the Windows nodes", 120)

        async def budget_counts() -> bool:
            got = await kube.get(PodDisruptionBudget, "web", namespace=namespace)
            return bool(got.status and got.status.currentHealthy == REPLICAS)

        await eventually(budget_counts, "the PDB to count every pod healthy", 60)
        yield fleet


async def at_version(fleet: Fleet, version: str) -> bool:
    for name in fleet.node_names:
        node = await fleet.node(name)
        annotations = (node.metadata.annotations if node.metadata else None) or {}
        labels = (node.metadata.labels if node.metadata else None) or {}
        if (
            annotations.get(names.VERSION_ANNOTATION) != version
            or (node.spec and node.spec.unschedulable)
            or names.UPGRADING_LABEL in labels
        ):
            return False
    return True


async def test_rolling_upgrade_keeps_max_unavailable_and_the_pdb(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path, namespace: str
) -> None:
    async with fleet_of(control_plane, kube, tmp_path, namespace) as fleet:
        assert fleet.world.settings.max_unavailable == 1
        async with watching(kube, namespace, fleet.node_names) as timeline:
            version = await fleet.new_payload(tmp_path)
            await eventually(
                lambda: at_version(fleet, version),
                "every node at the new version, uncordoned, without the upgrading label",
                300,
            )
            await eventually(fleet.pods_ready, "the Deployment Ready again", 60)
        assert timeline.ever_cordoned == fleet.node_names, "every node was cordoned in its turn"
        assert timeline.max_unschedulable == 1, (
            f"{timeline.max_unschedulable} Windows nodes were unschedulable at once"
        )
        assert timeline.evicted, "the drains evicted pods"
        assert timeline.min_available is not None and timeline.min_available >= REPLICAS - 1, (
            f"the PDB's minimum held: at least {REPLICAS - 1} Ready pods at every moment, "
            f"saw {timeline.min_available}: " + "\n".join(timeline.history)
        )
        for host in fleet.hosts:
            assert host.machine.disk.read_file("C:\\k\\windows_exporter.exe") == NEW_EXPORTER
        started = [e for e in await fleet.node_events(names.EventReason.NODE_UPGRADE)]
        for name in fleet.node_names:
            messages = [e.message or "" for e in started if e.involvedObject.name == name]
            assert any("started" in m for m in messages), messages
            assert any(f"upgraded to {version}" in m for m in messages), messages


async def test_blocking_pdb_makes_the_node_wait_not_bypassed(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path, namespace: str
) -> None:
    async with fleet_of(
        control_plane, kube, tmp_path, namespace, min_available=REPLICAS, drain_timeout=120
    ) as fleet:
        version = await fleet.new_payload(tmp_path)

        async def blocked() -> list[Event]:
            return await fleet.node_events(names.EventReason.DRAIN_BLOCKED)

        events = await eventually(blocked, "a DrainBlocked Event", 120)
        event = events[0]
        node_name = event.involvedObject.name or ""
        on_node = [
            p for p in await fleet.pods() if p.spec and p.spec.nodeName == node_name and p.metadata
        ]
        assert on_node, "the blocked node still runs its pod"
        pod = on_node[0]
        assert pod.metadata is not None
        message = event.message or ""
        assert f"{namespace}/{pod.metadata.name}" in message, message
        assert "disruption budget web" in message, message
        # Not bypassed: the pod keeps running there, the node stays cordoned at its old version.
        assert pod.metadata.deletionTimestamp is None
        node = await fleet.node(node_name)
        assert node.spec is not None and node.spec.unschedulable
        assert (node.metadata.labels or {}).get(names.UPGRADING_LABEL) == names.TRUE  # type: ignore[union-attr]
        assert (node.metadata.annotations or {})[names.VERSION_ANNOTATION] != version  # type: ignore[union-attr]
        assert await fleet.pods_ready(), "every pod is still Ready"
        # The budget allows one disruption again: the waiting drain goes on and the roll-out ends.
        await fleet.set_pdb(REPLICAS - 1)
        await eventually(lambda: at_version(fleet, version), "the roll-out to finish", 300)


async def test_failed_upgrade_stops_the_rollout_at_that_node(
    control_plane: ControlPlane,
    kube: AsyncClient,
    tmp_path: Path,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wmco.controllers.rollout")
    async with fleet_of(control_plane, kube, tmp_path, namespace) as fleet:
        # Whichever node goes first cannot start its new windows_exporter.
        for host in fleet.hosts:
            host.faults.failing_services = {"windows_exporter"}
        async with watching(kube, namespace, fleet.node_names) as timeline:
            version = await fleet.new_payload(tmp_path)
            failures = await eventually(
                lambda: fleet.node_events(names.EventReason.NODE_UPGRADE_FAILED),
                "a NodeUpgradeFailed Event",
                180,
            )
            failed = failures[0].involvedObject.name or ""
            others = fleet.node_names - {failed}

            def halted_seen() -> bool:
                return all(
                    f"node {name} waits: the roll-out stopped at node {failed}" in caplog.text
                    for name in others
                )

            async def seen() -> bool:
                return halted_seen()

            # The operator looked at the other nodes after the failure and held them.
            await eventually(seen, "the operator to hold the other nodes", 60)
            # ...and a retry of the failed node (backoff) fails again, the others still held.
            await eventually(
                lambda: _count_at_least(fleet, names.EventReason.NODE_UPGRADE_FAILED, 2),
                "the failed node to be retried",
                60,
            )
        assert timeline.ever_labelled == [failed], timeline.ever_labelled
        assert timeline.ever_cordoned == {failed}
        node = await fleet.node(failed)
        assert node.spec is not None and node.spec.unschedulable, "the failed node stays cordoned"
        assert (node.metadata.labels or {}).get(names.UPGRADING_LABEL) == names.TRUE  # type: ignore[union-attr]
        for name in others:
            other = await fleet.node(name)
            assert not (other.spec and other.spec.unschedulable)
            assert (other.metadata.annotations or {})[names.VERSION_ANNOTATION] != version  # type: ignore[union-attr]
        # Fixed: the service starts again; the retry succeeds and the roll-out goes on.
        for host in fleet.hosts:
            host.faults.failing_services = set()
        await eventually(lambda: at_version(fleet, version), "the roll-out to finish", 300)


async def _count_at_least(fleet: Fleet, reason: str, count: int) -> bool:
    return sum(e.count or 1 for e in await fleet.node_events(reason)) >= count


async def test_reboot_required_cordons_drains_reboots_and_uncordons(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path, namespace: str
) -> None:
    async with fleet_of(control_plane, kube, tmp_path, namespace) as fleet:
        pods = await fleet.pods()
        host = next(
            h
            for h in fleet.hosts
            if any(p.spec and p.spec.nodeName == h.facts.hostname for p in pods)
        )
        name = host.facts.hostname
        on_node = {
            p.metadata.name for p in pods if p.spec and p.spec.nodeName == name and p.metadata
        }
        boots = host.boot_count
        async with watching(kube, namespace, fleet.node_names, host) as timeline:
            await kube.patch(
                Node,
                name,
                {"metadata": {"annotations": {names.REBOOT_REQUIRED_ANNOTATION: "true"}}},
                patch_type=PatchType.MERGE,
            )

            async def done() -> bool:
                node = await fleet.node(name)
                annotations = (node.metadata.annotations if node.metadata else None) or {}
                return (
                    names.REBOOT_REQUIRED_ANNOTATION not in annotations
                    and not (node.spec and node.spec.unschedulable)
                    and host.boot_count > boots
                )

            await eventually(done, "the reboot to finish and the node to be uncordoned", 180)
            await eventually(fleet.pods_ready, "the Deployment Ready again", 60)
        assert host.boot_count == boots + 1, "the host rebooted once"
        assert timeline.ever_cordoned == {name}
        assert timeline.max_unschedulable == 1
        assert on_node <= timeline.evicted, "its pods were evicted"
        assert {timeline.boots_at_eviction[p] for p in on_node} == {boots}, "before the reboot"
        assert timeline.min_available is not None and timeline.min_available >= REPLICAS - 1
        node = await fleet.node(name)
        assert names.UPGRADING_LABEL not in (
            (node.metadata.labels if node.metadata else None) or {}
        )
        reboots = [
            e.message or ""
            for e in await fleet.node_events(names.EventReason.NODE_REBOOT)
            if e.involvedObject.name == name
        ]
        assert any("rebooting" in m for m in reboots) and any("Ready again" in m for m in reboots)


async def test_feature_reboot_of_a_serving_node_drains_it_first(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path, namespace: str
) -> None:
    async with fleet_of(control_plane, kube, tmp_path, namespace) as fleet:
        pods = await fleet.pods()
        host = next(
            h
            for h in fleet.hosts
            if any(p.spec and p.spec.nodeName == h.facts.hostname for p in pods)
        )
        name = host.facts.hostname
        on_node = {
            p.metadata.name for p in pods if p.spec and p.spec.nodeName == name and p.metadata
        }
        boots = host.boot_count
        ca_hash = ((await fleet.node(name)).metadata.annotations or {})[  # type: ignore[union-attr]
            names.KUBELET_CA_HASH_ANNOTATION
        ]
        # The Containers feature is found disabled on the next pass (a stale client CA sends the
        # node through the configure flow): enabling it needs a restart of a serving node.
        host.machine.features["containers"] = "Disabled"
        async with watching(kube, namespace, fleet.node_names, host) as timeline:
            await kube.patch(
                Node,
                name,
                {"metadata": {"annotations": {names.KUBELET_CA_HASH_ANNOTATION: "stale"}}},
                patch_type=PatchType.MERGE,
            )

            async def done() -> bool:
                node = await fleet.node(name)
                annotations = (node.metadata.annotations if node.metadata else None) or {}
                return (
                    annotations.get(names.KUBELET_CA_HASH_ANNOTATION) == ca_hash
                    and not (node.spec and node.spec.unschedulable)
                    and host.boot_count > boots
                )

            await eventually(done, "the feature reboot to finish and the node uncordoned", 180)
            await eventually(fleet.pods_ready, "the Deployment Ready again", 60)
        assert host.machine.features["containers"] == "Enabled"
        assert timeline.ever_cordoned == {name}
        assert on_node <= timeline.evicted, "its pods were evicted"
        assert {timeline.boots_at_eviction[p] for p in on_node} == {boots}, "before the restart"
        assert timeline.min_available is not None and timeline.min_available >= REPLICAS - 1
