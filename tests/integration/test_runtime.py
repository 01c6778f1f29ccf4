"""The controller runtime and the Kubernetes adapter against the REAL API server.

Covers: the adapter's verbs and Event recorder; an informer's ordering, store consistency,
resumption after dropped streams and server-side timeouts, and relist-and-diff after a real
410 Gone; a Controller mapping Secrets to ConfigMap keys (dedup, predicates, backoff); Lease
leader election hand-over (release and expiry); the manager's HTTP endpoints and its reaction to
a lost Lease.

How the 410 is provoked (reliably, with no injection): the API server answers watches from its
watch cache, whose window for a kind starts when that cache is (re)built. etcd compaction does
not touch that window, and the ConfigMap cache holds everything since start-up. But the cache
of a custom resource is rebuilt when its CRD's spec changes, so: sync an informer on a test CRD,
stop it, change objects, edit the CRD's schema description, and a watch from the informer's old
resourceVersion gets ``410 Expired: too old resource version`` from the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from lightkube import codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import ConfigMap, Event, Secret

from wmco import kube as kapi
from wmco.runtime import controller, informer, leader, manager

pytestmark = pytest.mark.integration

DEADLINE = 15.0
LABELS = {"app.kubernetes.io/part-of": "runtime-test"}


def cm(name: str, namespace: str, **data: str) -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name, namespace=namespace, labels=LABELS), data=data)


class Recorder:
    """An informer handler that records events and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.events: list[informer.Event[Any]] = []
        self._changed = asyncio.Event()

    def __call__(self, event: informer.Event[Any]) -> None:
        self.events.append(event)
        self._changed.set()

    def summary(self, origin: informer.Origin | None = None) -> list[tuple[str, str]]:
        return [
            (e.type.value, e.obj.metadata.name)
            for e in self.events
            if origin is None or e.origin is origin
        ]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


async def eventually(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Poll a condition that has no event to wait on (state owned by the server)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - server-owned state, nothing to await
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(coro: Any) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, leader.LeadershipLost):
            await task


async def server_state(client: kapi.Client, resource: Any, namespace: str) -> dict[str, str]:
    listed = await kapi.list_objects(client, resource, namespace=namespace, labels=LABELS)
    return {o.metadata.name: o.metadata.resourceVersion for o in listed.items}


def store_state(source: informer.Informer[Any]) -> dict[str, str]:
    return {o.metadata.name: o.metadata.resourceVersion for o in source.store.objects()}


# ---------------------------------------------------------------------------------------------
# Adapter


async def test_adapter_verbs_return_none_on_404_and_raise_typed_errors(
    kube: kapi.Client, namespace: str
) -> None:
    assert await kapi.get(kube, ConfigMap, "missing", namespace=namespace) is None
    assert await kapi.delete(kube, ConfigMap, "missing", namespace=namespace) is False
    assert await kapi.patch(kube, ConfigMap, "missing", {"data": {}}, namespace=namespace) is None
    created = await kapi.create(kube, cm("a", namespace, x="1"))
    with pytest.raises(kapi.AlreadyExists):
        await kapi.create(kube, cm("a", namespace))
    patched = await kapi.patch(kube, ConfigMap, "a", {"data": {"x": "2"}}, namespace=namespace)
    assert patched is not None and patched.data == {"x": "2"}
    with pytest.raises(kapi.Conflict):
        await kapi.replace(kube, created)  # stale resourceVersion
    applied = await kapi.apply(kube, cm("b", namespace, y="1"))
    assert applied.data == {"y": "1"}
    with pytest.raises(kapi.NotFound):
        await kapi.create(kube, cm("c", "no-such-namespace"))
    assert await kapi.delete(kube, ConfigMap, "a", namespace=namespace) is True


async def test_event_recorder_folds_repeats_into_a_count(kube: kapi.Client, namespace: str) -> None:
    target = await kapi.create(kube, cm("subject", namespace))
    recorder = kapi.EventRecorder(kube, component="wmco-test", instance="i1")
    ref = kapi.ref_of(target)
    first = await recorder.emit_event(ref, "Warning", "HostUnreachable", "ssh to 10.0.0.1 failed")
    second = await recorder.emit_event(ref, "Warning", "HostUnreachable", "ssh to 10.0.0.1 failed")
    other = await recorder.emit_event(ref, "Normal", "Configured", "done")
    assert first is not None and second is not None and other is not None
    assert second.metadata.name == first.metadata.name and second.count == 2
    listed = await kapi.list_objects(kube, Event, namespace=namespace)
    by_reason = {e.reason: e for e in listed.items}
    assert set(by_reason) == {"HostUnreachable", "Configured"}
    warning = by_reason["HostUnreachable"]
    assert warning.count == 2 and warning.type == "Warning"
    assert warning.involvedObject.uid == target.metadata.uid
    assert warning.involvedObject.kind == "ConfigMap"
    assert warning.source is not None and warning.source.component == "wmco-test"


# ---------------------------------------------------------------------------------------------
# Informer


async def test_informer_sees_add_update_delete_in_order_and_its_store_matches_the_server(
    kube: kapi.Client, namespace: str
) -> None:
    await kapi.create(kube, cm("pre", namespace, v="0"))
    source = informer.Informer(kube, ConfigMap, namespace=namespace, labels=LABELS)
    seen = Recorder()
    source.add_handler(seen)
    async with running(source.run()):
        assert await source.wait_synced(DEADLINE)
        assert seen.summary() == [("ADDED", "pre")]
        await kapi.create(kube, cm("a", namespace, v="1"))
        await kapi.patch(kube, ConfigMap, "a", {"data": {"v": "2"}}, namespace=namespace)
        await kapi.delete(kube, ConfigMap, "a", namespace=namespace)
        await kapi.create(kube, cm("b", namespace, v="1"))
        await kapi.create(
            kube, ConfigMap(metadata=ObjectMeta(name="unlabelled", namespace=namespace))
        )
        await seen.wait_for(lambda: ("ADDED", "b") in seen.summary())
        assert seen.summary() == [
            ("ADDED", "pre"),
            ("ADDED", "a"),
            ("MODIFIED", "a"),
            ("DELETED", "a"),
            ("ADDED", "b"),
        ]
        modified = seen.events[2]
        assert modified.old is not None and modified.old.data == {"v": "1"}
        assert modified.obj.data == {"v": "2"}
        assert all(e.origin is informer.Origin.WATCH for e in seen.events[1:])
        assert store_state(source) == await server_state(kube, ConfigMap, namespace)
        assert source.relists == 1


async def test_the_cache_holds_no_managed_fields_the_server_keeps(
    kube: kapi.Client, namespace: str
) -> None:
    await kapi.create(kube, cm("listed", namespace, v="0"))
    source = informer.Informer(kube, ConfigMap, namespace=namespace, labels=LABELS)
    async with running(source.run()):
        assert await source.wait_synced(DEADLINE)
        await kapi.create(kube, cm("watched", namespace, v="0"))
        await eventually(lambda: source.store.get_by_name("watched", namespace) is not None)
        for name in ("listed", "watched"):  # one from the list, one from the watch
            cached = source.store.get_by_name(name, namespace)
            assert cached is not None and cached.metadata is not None
            assert cached.metadata.managedFields is None
            served = await kapi.get(kube, ConfigMap, name, namespace=namespace)
            assert served.metadata is not None and served.metadata.managedFields
        # An update of a cached object (no managedFields in it) leaves the server's in place.
        cached = source.store.get_by_name("listed", namespace)
        assert cached is not None
        cached.data = {"v": "1"}
        await kapi.replace(kube, cached)
        served = await kapi.get(kube, ConfigMap, "listed", namespace=namespace)
        assert served.metadata is not None and served.metadata.managedFields
        assert served.data == {"v": "1"}


async def test_a_dropped_watch_stream_resumes_without_losing_or_repeating_events(
    kube: kapi.Client, namespace: str
) -> None:
    source = informer.Informer(kube, ConfigMap, namespace=namespace, labels=LABELS)
    seen = Recorder()
    source.add_handler(seen)
    async with running(source.run()):
        assert await source.wait_synced(DEADLINE)
        names = [f"cm-{i}" for i in range(12)]
        drops = 0
        for i, name in enumerate(names):
            if i % 4 == 0:
                # Once the current stream is really open, drop it; write at once after.
                await eventually(lambda want=drops + 1: source.watch_starts == want)
                assert source.interrupt_watch()
                drops += 1
            await kapi.create(kube, cm(name, namespace))
        await seen.wait_for(lambda: len(seen.events) == len(names))
        assert seen.summary() == [("ADDED", name) for name in names]  # in order, once each
        assert source.watch_starts == drops + 1 == 4  # it really reconnected
        assert source.relists == 1  # ...from its resourceVersion, without relisting
        assert store_state(source) == await server_state(kube, ConfigMap, namespace)


async def test_server_side_stream_timeouts_resume_from_the_last_version(
    kube: kapi.Client, namespace: str
) -> None:
    source = informer.Informer(kube, ConfigMap, namespace=namespace, labels=LABELS, watch_timeout=1)
    seen = Recorder()
    source.add_handler(seen)
    async with running(source.run()):
        assert await source.wait_synced(DEADLINE)
        written = 0
        async with asyncio.timeout(DEADLINE):
            while source.watch_starts < 3:  # at least two streams closed by the server
                await kapi.create(kube, cm(f"cm-{written}", namespace))
                written += 1
                await asyncio.sleep(0.1)  # spread the writes over several streams
        await seen.wait_for(lambda: len(seen.events) == written)
        assert seen.summary() == [("ADDED", f"cm-{i}") for i in range(written)]
        assert source.relists == 1


async def test_resync_redelivers_every_stored_object_periodically(
    kube: kapi.Client, namespace: str
) -> None:
    for name in ("a", "b"):
        await kapi.create(kube, cm(name, namespace))
    source = informer.Informer(
        kube, ConfigMap, namespace=namespace, labels=LABELS, resync_period=0.3
    )
    seen = Recorder()
    source.add_handler(seen)
    async with running(source.run()):
        await seen.wait_for(lambda: len(seen.summary(informer.Origin.RESYNC)) >= 4)
    resyncs = [e for e in seen.events if e.origin is informer.Origin.RESYNC]
    assert [(e.type.value, e.obj.metadata.name) for e in resyncs[:4]] == [
        ("MODIFIED", "a"),
        ("MODIFIED", "b"),
        ("MODIFIED", "a"),
        ("MODIFIED", "b"),
    ]
    assert all(e.old is e.obj for e in resyncs)
    assert source.relists == 1  # a resync replays the cache; it does not hit the server


def widget_crd(group: str, description: str) -> CustomResourceDefinition:
    return codecs.from_dict(  # type: ignore[return-value]
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"widgets.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "description": description,
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
    )


async def test_410_gone_relists_and_the_diff_emits_the_deletes_missed_while_away(
    kube: kapi.Client, namespace: str
) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.wmco.io"
    crd_name = f"widgets.{group}"
    await kapi.create(kube, widget_crd(group, "first"))
    try:
        widget = kapi.namespaced_custom_resource(group, "v1", "Widget", "widgets")

        def new(name: str) -> Any:
            return widget(metadata=ObjectMeta(name=name, namespace=namespace, labels=LABELS))

        await eventually_async(lambda: kapi.list_objects(kube, widget, namespace=namespace))
        for name in ("keep", "gone", "changed"):
            await kapi.create(kube, new(name))
        source = informer.Informer(kube, widget, namespace=namespace, labels=LABELS)
        seen = Recorder()
        source.add_handler(seen)
        async with running(source.run()):
            assert await source.wait_synced(DEADLINE)
        stale = source.resource_version
        assert stale is not None and len(seen.events) == 3

        # While the informer is away: a delete, an update, an add...
        await kapi.delete(kube, widget, "gone", namespace=namespace)
        await kapi.patch(kube, widget, "changed", {"spec": {"v": 2}}, namespace=namespace)
        await kapi.create(kube, new("added"))
        # ...and the watch cache for widgets is rebuilt, so `stale` is now too old.
        crd = await kapi.get(kube, CustomResourceDefinition, crd_name)
        assert crd is not None
        await kapi.patch(
            kube,
            CustomResourceDefinition,
            crd_name,
            [
                {
                    "op": "replace",
                    "path": "/spec/versions/0/schema/openAPIV3Schema/description",
                    "value": "second",
                }
            ],
            patch_type=kapi.PatchType.JSON,
        )
        await expect_gone(kube, widget, namespace, stale)

        async with running(source.run()):  # resumes from `stale`: 410, relist, diff
            await seen.wait_for(lambda: source.relists == 2 and len(seen.events) == 6)
            assert seen.summary(informer.Origin.LIST)[3:] == [
                ("DELETED", "gone"),  # deletions first, then the rest in key order
                ("ADDED", "added"),
                ("MODIFIED", "changed"),
            ]
            assert store_state(source) == await server_state(kube, widget, namespace)
            assert source.resource_version != stale
    finally:
        await kapi.delete(kube, CustomResourceDefinition, crd_name)


async def eventually_async(call: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """Retry an API call until it succeeds (a new CRD takes a moment to be served)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await call()
            except kapi.KubeError:
                await asyncio.sleep(0.05)


async def expect_gone(client: kapi.Client, resource: Any, namespace: str, version: str) -> None:
    """Wait until the real server answers a watch from ``version`` with 410 Gone."""
    async with asyncio.timeout(DEADLINE):
        while True:
            try:
                stream = kapi.watch(
                    client,
                    resource,
                    resource_version=version,
                    namespace=namespace,
                    timeout_seconds=1,
                )
                async with contextlib.aclosing(stream):  # close the stream at once
                    async for _ in stream:
                        break  # old cache still serving: try again
            except kapi.Gone:
                return
            except kapi.ApiError as exc:
                assert exc.code == 429  # "storage is (re)initializing"
            await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Controller


async def test_controller_maps_secrets_to_configmaps_dedups_bursts_and_retries_with_backoff(
    kube: kapi.Client, namespace: str
) -> None:
    calls: dict[str, list[float]] = {}
    gate = asyncio.Event()
    progressed = asyncio.Event()
    bad = f"{namespace}/cm-bad"
    good = f"{namespace}/cm-good"

    async def reconcile(key: str) -> controller.Result | None:
        calls.setdefault(key, []).append(time.monotonic())
        progressed.set()
        if key == good and len(calls[key]) == 1:
            await gate.wait()  # hold the first reconcile while a burst arrives
        if key == bad and len(calls[key]) <= 2:
            raise RuntimeError("simulated failure")
        return None

    async def wait_calls(key: str, count: int) -> None:
        async with asyncio.timeout(DEADLINE):
            while len(calls.get(key, [])) < count:
                progressed.clear()
                await progressed.wait()

    def secret_to_configmap(secret: Any) -> list[str]:
        return [f"{secret.metadata.namespace}/{secret.metadata.labels['target']}"]

    def has_target(event: informer.Event[Any]) -> bool:
        return "target" in (event.obj.metadata.labels or {})

    configmaps = informer.Informer(kube, ConfigMap, namespace=namespace, labels=LABELS)
    secrets = informer.Informer(kube, Secret, namespace=namespace)
    ctrl = controller.Controller("cm", reconcile, workers=4, backoff_base=0.2)
    ctrl.watch(configmaps)
    ctrl.watch(secrets, secret_to_configmap, has_target)

    await kapi.create(kube, cm("cm-good", namespace))
    async with running(configmaps.run()), running(secrets.run()), running(ctrl.run()):
        await wait_calls(good, 1)  # initial list -> one reconcile, now held at the gate
        assert ctrl.queue.is_processing(good)
        last = None
        for i in range(10):  # burst of Secret changes mapped to cm-good
            secret = Secret(
                metadata=ObjectMeta(name="s", namespace=namespace, labels={"target": "cm-good"}),
                stringData={"i": str(i)},
            )
            last = await (kapi.create if i == 0 else kapi.apply)(kube, secret)
        await kapi.create(kube, Secret(metadata=ObjectMeta(name="unrelated", namespace=namespace)))
        assert last is not None
        await eventually(
            lambda: (
                store_state_of(secrets, "s") == last.metadata.resourceVersion
                and secrets.store.get_by_name("unrelated", namespace) is not None
            )
        )
        gate.set()
        await wait_calls(good, 2)
        await eventually(lambda: not ctrl.queue.is_processing(good))
        assert len(calls[good]) == 2  # ten events while busy -> exactly one more reconcile
        assert len(ctrl.queue) == 0 and not ctrl.queue.is_waiting(good)

        await kapi.create(kube, cm("cm-bad", namespace))
        await wait_calls(bad, 3)
        first, second, third = calls[bad]
        assert second - first >= 0.2 and third - second >= 0.4  # exponential backoff
        await eventually(lambda: ctrl.queue.num_requeues(bad) == 0)  # success forgets
        assert set(calls) == {good, bad}  # the unrelated Secret was filtered out


def store_state_of(source: informer.Informer[Any], name: str) -> str | None:
    obj = source.store.get_by_name(name, source.namespace)
    return None if obj is None else obj.metadata.resourceVersion


# ---------------------------------------------------------------------------------------------
# Leader election


def election(namespace: str, identity: str, release: bool = True) -> leader.LeaderElectionConfig:
    return leader.LeaderElectionConfig(
        namespace=namespace,
        name="wmco-lock",
        identity=identity,
        lease_duration=2.0,
        renew_deadline=1.5,
        retry_period=0.2,
        release_on_cancel=release,
    )


async def first_leader(*electors: leader.LeaderElector) -> leader.LeaderElector:
    waits = {asyncio.create_task(e.leading.wait()): e for e in electors}
    done, pending = await asyncio.wait(waits, timeout=DEADLINE, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    assert done, "nobody acquired the lease"
    return waits[done.pop()]


@pytest.mark.parametrize("release", [True, False], ids=["released", "expired"])
async def test_two_electors_exactly_one_leads_and_the_other_takes_over(
    kube: kapi.Client, namespace: str, release: bool
) -> None:
    one = leader.LeaderElector(kube, election(namespace, "one", release))
    two = leader.LeaderElector(kube, election(namespace, "two", release))
    tasks = {one: asyncio.create_task(one.run()), two: asyncio.create_task(two.run())}
    try:
        winner = await first_leader(one, two)
        loser = two if winner is one else one
        with pytest.raises(TimeoutError):  # past a lease duration: the loser still waits
            await asyncio.wait_for(loser.leading.wait(), timeout=3.0)
        assert winner.is_leader and loser.leader == winner.config.identity
        assert loser.healthy and winner.healthy
        lease = await kapi.get(kube, Lease, "wmco-lock", namespace=namespace)
        assert lease is not None and lease.spec is not None
        assert lease.spec.holderIdentity == winner.config.identity
        assert lease.spec.leaseTransitions == 0

        stopped = time.monotonic()
        tasks[winner].cancel()  # shutdown: releases the lease only if configured to
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[winner]
        assert not winner.is_leader
        async with asyncio.timeout(DEADLINE):
            await loser.leading.wait()
        took = time.monotonic() - stopped
        if release:
            assert took < 1.0  # at once (retry period + jitter), not after the lease expired
        else:
            assert took >= 1.0  # only once the lease (2 s) expired as observed by the loser
        lease = await kapi.get(kube, Lease, "wmco-lock", namespace=namespace)
        assert lease is not None and lease.spec is not None
        assert lease.spec.holderIdentity == loser.config.identity
        assert lease.spec.leaseTransitions == 1
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


# ---------------------------------------------------------------------------------------------
# Manager


async def test_manager_serves_probes_and_metrics_and_reconciles(
    kube: kapi.Client, namespace: str
) -> None:
    reconciled = asyncio.Event()

    async def reconcile(key: str) -> None:
        reconciled.set()

    with socket.socket() as probe:  # a free port for the second address
        probe.bind(("127.0.0.1", 0))
        extra_port = probe.getsockname()[1]
    mgr = manager.Manager(
        kube,
        host="127.0.0.1",
        port=0,
        extra_binds=[("127.0.0.1", extra_port)],
        leader_election=election(namespace, "m1"),
    )
    ctrl = mgr.controller("configmaps", reconcile, workers=2)
    ctrl.watch(mgr.informer(ConfigMap, namespace=namespace, labels=LABELS))
    assert mgr.informer(ConfigMap, namespace=namespace, labels=LABELS) is ctrl._informers[0]
    await kapi.create(kube, cm("x", namespace))
    async with running(mgr.run()), aiohttp.ClientSession() as http:
        async with asyncio.timeout(DEADLINE):
            await mgr.serving.wait()
        base = f"http://127.0.0.1:{mgr.port}"
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with asyncio.timeout(DEADLINE):
            await reconciled.wait()
        assert mgr.elector is not None and mgr.elector.is_leader
        async with http.get(f"{base}/readyz") as response:
            assert response.status == 200, await response.text()
        async with http.get(f"http://127.0.0.1:{extra_port}/readyz") as response:
            assert response.status == 200
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
            text = await response.text()
        assert (
            'controller_runtime_reconcile_total{controller="configmaps",result="success"}' in text
        )
        assert 'leader_election_master_status{name="wmco-lock"} 1.0' in text
        assert "workqueue_depth" in text and "informer_relists_total" in text


async def test_manager_stops_controllers_and_raises_when_the_lease_is_stolen(
    kube: kapi.Client, namespace: str
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def reconcile(key: str) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a long reconcile, interrupted by the loss
        except asyncio.CancelledError:
            cancelled.set()
            raise

    mgr = manager.Manager(kube, leader_election=election(namespace, "victim"))
    mgr.controller("c", reconcile).watch(
        mgr.informer(ConfigMap, namespace=namespace, labels=LABELS)
    )
    await kapi.create(kube, cm("x", namespace))
    task = asyncio.create_task(mgr.run())
    try:
        async with asyncio.timeout(DEADLINE):
            await started.wait()
        # Another party takes the Lease behind the leader's back.
        await kapi.patch(
            kube, Lease, "wmco-lock", {"spec": {"holderIdentity": "thief"}}, namespace=namespace
        )
        with pytest.raises(leader.LeadershipLost):
            async with asyncio.timeout(DEADLINE):
                await task
        assert cancelled.is_set()
        assert mgr.elector is not None and not mgr.elector.is_leader
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, leader.LeadershipLost):
            await task
