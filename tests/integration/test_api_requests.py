"""API requests per host (issue 12 §5): waiting for a Node is a watch, not a GET per second.

Counted by the API server itself: ``apiserver_request_total`` from its ``/metrics``. That counter
has no user label, so these tests run on a control plane of their own (a module fixture): nothing
else in the session sends it requests, and what it counts is what the code under test sent, plus
whatever the control plane's own controllers do (they use informers: they list and watch, they
do not GET Nodes).

The Node is created and later made Ready by the test as admin (a PATCH of ``/status``, the
request a kubelet sends), after the wait has demonstrably been waiting for several seconds: a
poller would have sent one GET per second by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node

from wmco import names
from wmco.nodeconfig import node as node_mod
from wmco.nodeconfig.instance import ConfigurationError, Instance, Origin, Step
from wmco.runtime import informer as informer_mod
from wmco_sandbox.controlplane import ControlPlane

pytestmark = [pytest.mark.integration]

WAITING = 5.0
"""Seconds the wait must still be waiting before the Node becomes Ready."""

_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(state_dir=tmp_path_factory.mktemp("api-requests-plane")) as private:
        yield private


@pytest.fixture
async def client(plane: ControlPlane) -> AsyncIterator[AsyncClient]:
    opened = AsyncClient(config=KubeConfig.from_file(plane.kubeconfig), field_manager="wmco-tests")
    try:
        yield opened
    finally:
        await opened.close()


async def node_requests(plane: ControlPlane) -> Counter[str]:
    """``apiserver_request_total`` of resource ``nodes`` (no subresource), by verb."""
    text = await asyncio.to_thread(plane.kubectl, "get", "--raw", "/metrics")
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        found = _LINE.match(line)
        if found is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found["labels"]))
        if labels.get("resource") == "nodes" and labels.get("subresource") == "":
            counts[labels["verb"]] += int(float(found["value"]))
    return counts


async def settled(plane: ControlPlane, timeout: float = 30.0) -> Counter[str]:
    """The node request counts once two reads half a second apart agree.

    The control plane's controllers answer a new Node within a second (the TTL controller's
    annotation, the lifecycle controller's taints: a few GETs and PATCHes); a window measured
    after that holds what the code under test sent.
    """
    deadline = time.monotonic() + timeout
    last = await node_requests(plane)
    while True:
        await asyncio.sleep(0.5)
        now = await node_requests(plane)
        if now == last:
            return now
        assert time.monotonic() < deadline, f"node requests never settled: {dict(now - last)}"
        last = now


@pytest.fixture
async def windows_node(client: AsyncClient) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Makes Windows Nodes (no status: not Ready); deletes them afterwards."""
    made: list[str] = []

    async def make() -> str:
        name = f"win-{uuid.uuid4().hex[:8]}"
        await client.create(
            Node(metadata=ObjectMeta(name=name, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS}))
        )
        made.append(name)
        return name

    yield make
    for name in made:
        with contextlib.suppress(ApiError):
            await client.delete(Node, name)


async def make_ready(client: AsyncClient, name: str) -> None:
    """What a kubelet posts once it is Ready: the Ready condition, through ``/status``."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    condition = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "kubelet is posting ready status",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    await client.patch(Node.Status, name, {"status": {"conditions": [condition]}})


def instance() -> Instance:
    return Instance(address="10.9.8.7", username="Administrator", origin=Origin.BYOH)


class Said:
    """The progress messages of a wait."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, step: Step, detail: str) -> None:
        self.lines.append(f"{step}: {detail}")


async def wait_then_ready(
    plane: ControlPlane, client: AsyncClient, name: str, said: Said
) -> tuple[Node, Counter[str]]:
    """Wait for Ready; after WAITING seconds of waiting, make the Node Ready.

    Returns:
        The Node the wait returned, and the node requests the API server counted while the
        wait waited (before the Node changed: the control plane's controllers react to a
        change of a Node, not to a wait).
    """
    before = await settled(plane)
    waiting = asyncio.create_task(
        node_mod.wait_for_ready(
            client, instance(), name, timeout=60, progress=said, waiting="waiting for Ready"
        )
    )
    done, _ = await asyncio.wait({waiting}, timeout=WAITING)
    assert not done, f"the wait ended before its Node was Ready: {waiting.result()}"
    during = await node_requests(plane) - before
    await make_ready(client, name)
    return await asyncio.wait_for(waiting, 20), during


async def test_waiting_for_ready_alone_watches_the_one_node(
    plane: ControlPlane, client: AsyncClient, windows_node: Callable[[], Awaitable[str]]
) -> None:
    name = await windows_node()
    said = Said()
    node, during = await wait_then_ready(plane, client, name, said)
    assert node_mod.node_is_ready(node)
    assert said.lines == [f"node-ready: node {name} registered; waiting for Ready"]
    # A GET per second would be >= 5 here; a list + watch of the one Node is one LIST.
    assert during["GET"] == 0, f"the wait polled the Node: {dict(during)}"
    assert during["LIST"] <= 1, f"the wait listed more than its own Node: {dict(during)}"


async def test_waiting_on_the_operator_informer_sends_nothing(
    plane: ControlPlane, client: AsyncClient, windows_node: Callable[[], Awaitable[str]]
) -> None:
    nodes = node_mod.index_nodes(
        informer_mod.Informer(
            client, Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS}, watch_timeout=60
        )
    )
    running = asyncio.create_task(nodes.run())
    try:
        assert await nodes.wait_synced(20)
        name = await windows_node()
        await client.patch(
            Node,
            name,
            {"metadata": {"annotations": {names.INSTANCE_ADDRESS_ANNOTATION: instance().address}}},
        )
        with node_mod.using_nodes(nodes):
            found, _ = await nodes.wait_until(
                name,
                lambda n: bool(node_mod.annotations_of(n)),
                time.monotonic() + 20,
            )
            assert found is not None, "the informer did not see the annotated Node"
            before = await node_requests(plane)
            assert (await node_mod.find_node(client, instance())) is not None
            node, during = await wait_then_ready(plane, client, name, Said())
            looked_up = await node_requests(plane) - before
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert node_mod.node_is_ready(node)
    assert during["GET"] == 0 and during["LIST"] == 0, f"sent while waiting: {dict(during)}"
    assert looked_up["LIST"] == 0, f"find_node listed the Nodes: {dict(looked_up)}"


async def test_a_wait_keeps_its_deadline_and_says_what_is_missing(
    client: AsyncClient, windows_node: Callable[[], Awaitable[str]]
) -> None:
    name = await windows_node()
    with pytest.raises(ConfigurationError, match=f"node {name} registered but not Ready after 1s"):
        await node_mod.wait_for_ready(
            client, instance(), name, timeout=1, progress=Said(), waiting="waiting"
        )
    missing = f"win-missing-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ConfigurationError, match=f"node {missing} not registered after 1s"):
        await node_mod.wait_for_ready(
            client, instance(), missing, timeout=1, progress=Said(), waiting="waiting"
        )
    with pytest.raises(
        ConfigurationError, match=f"node {name} has no {names.INSTANCE_ADDRESS_ANNOTATION}"
    ):
        await node_mod.wait_for_annotation(
            client,
            instance(),
            name,
            names.INSTANCE_ADDRESS_ANNOTATION,
            timeout=1,
            progress=Said(),
            step=Step.NODE_SUBNET,
        )


async def test_waiting_for_an_annotation_is_woken_by_the_change(
    client: AsyncClient, windows_node: Callable[[], Awaitable[str]]
) -> None:
    name = await windows_node()
    waiting = asyncio.create_task(
        node_mod.wait_for_annotation(
            client,
            instance(),
            name,
            names.HYBRID_OVERLAY_SUBNET_ANNOTATION,
            timeout=30,
            progress=Said(),
            step=Step.NODE_SUBNET,
        )
    )
    done, _ = await asyncio.wait({waiting}, timeout=1.0)
    assert not done
    await client.patch(
        Node,
        name,
        {"metadata": {"annotations": {names.HYBRID_OVERLAY_SUBNET_ANNOTATION: "10.132.1.0/24"}}},
    )
    assert await asyncio.wait_for(waiting, 10) == "10.132.1.0/24"
