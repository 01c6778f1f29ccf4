"""Whole scenarios through the sandbox: the operator as its own process with its own ServiceAccount.

One sandbox serves the scale and listed-host scenarios (they leave it as they found it); the demo
story runs in a sandbox of its own, exactly as ``make demo`` does.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx2
import pytest
import pytest_asyncio
from lightkube.resources.core_v1 import Node, Secret, Service, ServiceAccount
from lightkube.resources.discovery_v1 import EndpointSlice

from exporter_helpers import https_get, samples
from wmco import names
from wmco_sandbox import demo
from wmco_sandbox.machineapi import Machine
from wmco_sandbox.sandbox import Sandbox, SandboxError

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


async def eventually(
    sandbox: Sandbox, check: Callable[[], Awaitable[bool]], what: str, timeout: float = 180
) -> None:
    await sandbox.wait_for(check, what, timeout)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sandbox]:
    async with Sandbox(tmp_path_factory.mktemp("sandbox")) as running:
        await running.apply_machineset(0)
        yield running


async def machines(sandbox: Sandbox) -> list[object]:
    return [m async for m in sandbox.kube.list(Machine, namespace=names.MACHINE_API_NAMESPACE)]


async def bootstrap_accounts(sandbox: Sandbox) -> list[ServiceAccount]:
    """The per-host bootstrap ServiceAccounts still there (each is deleted after its join)."""
    return [
        a
        async for a in sandbox.kube.list(
            ServiceAccount,
            namespace=names.BOOTSTRAP_NAMESPACE,
            labels={names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE},
        )
    ]


async def ready_count(sandbox: Sandbox) -> int:
    nodes = await sandbox.windows_nodes()
    return sum(
        1
        for n in nodes
        if any(
            c.type == "Ready" and c.status == "True"
            for c in (n.status.conditions if n.status else None) or []
        )
        and names.VERSION_ANNOTATION in ((n.metadata.annotations if n.metadata else None) or {})
    )


async def test_scale_up_and_down_leaves_nothing_behind(sandbox: Sandbox) -> None:
    await sandbox.apply_machineset(3)

    async def three_ready() -> bool:
        return await ready_count(sandbox) == 3

    await eventually(sandbox, three_ready, "3 configured Ready Windows nodes")
    for node in await sandbox.windows_nodes():
        assert node.metadata is not None and node.spec is not None
        labels, annotations = node.metadata.labels or {}, node.metadata.annotations or {}
        assert names.WORKER_ROLE_LABEL in labels and names.BYOH_LABEL not in labels
        assert annotations[names.MACHINE_ANNOTATION].startswith(f"{names.MACHINE_API_NAMESPACE}/")
        assert (
            annotations[names.PUB_KEY_HASH_ANNOTATION]
            and annotations[names.SSH_HOST_KEY_ANNOTATION]
        )
        assert any(
            t.key == "os" and t.value == "Windows" and t.effect == "NoSchedule"
            for t in node.spec.taints or []
        )
    assert len([h for h in sandbox.cloud.hosts.values() if h.origin.value == "machine"]) == 3

    await sandbox.apply_machineset(0)

    async def all_gone() -> bool:
        return (
            not await sandbox.windows_nodes()
            and not await machines(sandbox)
            and not [h for h in sandbox.cloud.hosts.values() if h.origin.value == "machine"]
        )

    await eventually(sandbox, all_gone, "no Node, Machine or host left after scaling to 0")

    async def no_bootstrap_accounts() -> bool:
        return await bootstrap_accounts(sandbox) == []

    await eventually(sandbox, no_bootstrap_accounts, "no bootstrap ServiceAccount left", 30)


async def test_listed_host_removed_from_configmap_is_deconfigured(sandbox: Sandbox) -> None:
    (listed,) = await sandbox.add_listed_hosts(1)

    async def configured() -> bool:
        return await ready_count(sandbox) == 1

    await eventually(sandbox, configured, "the listed host to become a configured node")
    node = await sandbox.kube.get(Node, listed.host.facts.hostname)
    assert (node.metadata.labels or {}).get(names.BYOH_LABEL) == "true"  # type: ignore[union-attr]
    assert listed.host.machine.scm.running("kubelet")

    await sandbox.set_listed_entries({listed.host.address: None})

    async def deconfigured() -> bool:
        nodes = {n.metadata.name for n in await sandbox.windows_nodes() if n.metadata}
        return (
            listed.host.facts.hostname not in nodes
            and listed.host.machine.scm.get("kubelet") is None
        )

    await eventually(sandbox, deconfigured, "the removed listed host to be deconfigured")
    assert listed.host.machine.disk.get("C:\\k\\kubelet.exe") is None


async def test_operator_restarted_mid_scale_finishes_the_job(sandbox: Sandbox) -> None:
    assert sandbox.operator is not None
    await sandbox.apply_machineset(2)

    async def configuring() -> bool:
        return any(
            h.host.command_log for h in sandbox.cloud.hosts.values() if h.origin.value == "machine"
        )

    await eventually(sandbox, configuring, "the operator to start configuring a host", 120)
    sandbox.operator.kill()
    sandbox.operator.start()

    async def two_ready() -> bool:
        return await ready_count(sandbox) == 2

    await eventually(sandbox, two_ready, "2 configured Ready nodes after the restart")
    nodes = await sandbox.windows_nodes()
    assert len(nodes) == 2
    await sandbox.apply_machineset(0)

    async def none_left() -> bool:
        return not await sandbox.windows_nodes() and not await machines(sandbox)

    await eventually(sandbox, none_left, "scale back to 0")


@pytest.mark.asyncio(loop_scope="function")
async def test_demo_story_holds(tmp_path: Path) -> None:
    out = io.StringIO()
    started = time.monotonic()
    await demo.run_demo(tmp_path / "demo", "2022", out=out)
    text = out.getvalue()
    assert "every step held" in text, text
    assert "Summary" in text
    print(text)
    print(f"demo story: {time.monotonic() - started:.1f}s")


async def test_the_operator_with_its_own_rbac_keeps_exporter_tls_and_reports_its_metrics(
    sandbox: Sandbox,
) -> None:
    """Issue 10: with deploy/'s least-privilege RBAC the operator fills the exporter CA Secret it
    may update (not create), the host serves windows_exporter over TLS with a certificate of that
    CA, and the operator's /metrics counts the host as ready."""
    assert sandbox.operator is not None
    (listed,) = await sandbox.add_listed_hosts(1)

    async def configured() -> bool:
        return await ready_count(sandbox) == 1

    await eventually(sandbox, configured, "the listed host to become a configured node")
    secret = await sandbox.kube.get(
        Secret, names.WINDOWS_EXPORTER_CA_SECRET, namespace=names.OPERATOR_NAMESPACE
    )
    ca = base64.b64decode((secret.data or {})["ca.crt"])
    assert (await https_get(listed.host.address, 9182, ca)).status == 200
    service = await sandbox.kube.get(
        Service, names.WINDOWS_EXPORTER, namespace=names.OPERATOR_NAMESPACE
    )
    assert service.spec is not None and not service.spec.selector
    # The sandbox's hosts live on 127.0.x.y, which an EndpointSlice may not list (the API server
    # refuses loopback addresses): the operator keeps the slice without them (the scrape through
    # the slice is tests/integration/test_monitoring.py, in a network namespace).
    endpoint_slice = await sandbox.kube.get(
        EndpointSlice, names.WINDOWS_EXPORTER, namespace=names.OPERATOR_NAMESPACE
    )
    assert endpoint_slice is not None and not endpoint_slice.endpoints
    address = sandbox.operator.env["WMCO_PROBE_BIND_ADDRESS"]

    seen: list[str] = []

    async def counted() -> bool:
        async with httpx2.AsyncClient() as client:
            text = (await client.get(f"http://{address}/metrics")).text
        seen[:] = [line for line in text.splitlines() if line.startswith("wmco_")]
        ready = [v for labels, v in samples(text, "wmco_hosts") if labels == {"phase": "ready"}]
        steps = samples(text, "wmco_configure_step_duration_seconds_count")
        return ready == [1.0] and any(labels["step"] == "exporter-tls" for labels, _ in steps)

    try:
        await eventually(sandbox, counted, "the operator's /metrics to count one ready host", 60)
    except SandboxError as exc:
        raise AssertionError(f"{exc}; wmco_* lines seen: {seen}") from None
    await sandbox.set_listed_entries({listed.host.address: None})

    async def gone() -> bool:
        return await ready_count(sandbox) == 0 and not await sandbox.windows_nodes()

    await eventually(sandbox, gone, "the listed host to be deconfigured")
