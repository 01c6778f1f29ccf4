"""Controller worker semantics without an API server: retries with backoff, requeue-after,
burst de-duplication, per-key serialisation across workers, predicates. Virtual time."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from wmco.runtime import controller, informer, metrics


def now() -> float:
    return asyncio.get_running_loop().time()


class Calls(list[float]):
    """Reconcile call times; ``reached`` is set once ``target`` calls happened."""

    def __init__(self, target: int) -> None:
        super().__init__()
        self.target = target
        self.reached = asyncio.Event()

    def record(self) -> int:
        self.append(asyncio.get_running_loop().time())
        if len(self) >= self.target:
            self.reached.set()
        return len(self)


async def run_until(ctrl: controller.Controller, reached: asyncio.Event, limit: float) -> None:
    """Run the controller until ``reached`` is set (deadline ``limit`` virtual seconds)."""
    task = asyncio.create_task(ctrl.run())
    try:
        async with asyncio.timeout(limit):
            await reached.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_failures_are_retried_with_exponential_backoff_then_forgotten(run_virtual) -> None:
    calls = Calls(target=5)
    m = metrics.Metrics()

    async def reconcile(key: str) -> controller.Result | None:
        if calls.record() <= 4:
            raise RuntimeError("host unreachable")
        return None

    async def scenario() -> controller.Controller:
        ctrl = controller.Controller("t", reconcile, workers=2, backoff_base=1.0, metrics=m)
        ctrl.enqueue("ns/a")
        await run_until(ctrl, calls.reached, limit=100)
        return ctrl

    ctrl = run_virtual(scenario())
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(calls)]
    assert gaps == [1.0, 2.0, 4.0, 8.0]
    assert ctrl.queue.num_requeues("ns/a") == 0  # success forgets the backoff
    assert (
        m.registry.get_sample_value(
            "controller_runtime_reconcile_errors_total", {"controller": "t"}
        )
        == 4
    )
    assert (
        m.registry.get_sample_value(
            "controller_runtime_reconcile_total", {"controller": "t", "result": "success"}
        )
        == 1
    )


def test_requeue_after_reconciles_again_after_the_delay(run_virtual) -> None:
    calls = Calls(target=3)

    async def reconcile(key: str) -> controller.Result:
        calls.record()
        return controller.Result(requeue_after=30.0)

    async def scenario() -> None:
        ctrl = controller.Controller("t", reconcile)
        ctrl.enqueue("a")
        await run_until(ctrl, calls.reached, limit=1000)

    run_virtual(scenario())
    assert [round(b - a, 2) for a, b in itertools.pairwise(calls)] == [30.0, 30.0]


def test_requeue_true_uses_the_backoff(run_virtual) -> None:
    calls = Calls(target=3)

    async def reconcile(key: str) -> controller.Result:
        return controller.Result(requeue=calls.record() < 3)

    async def scenario() -> None:
        ctrl = controller.Controller("t", reconcile, backoff_base=0.5)
        ctrl.enqueue("a")
        await run_until(ctrl, calls.reached, limit=100)

    run_virtual(scenario())
    assert [round(b - a, 2) for a, b in itertools.pairwise(calls)] == [0.5, 1.0]


def test_a_burst_for_one_key_collapses_and_keys_run_in_parallel_but_never_twice(
    run_virtual,
) -> None:
    active: set[str] = set()
    peak = 0
    calls: dict[str, int] = {}
    overlap: list[str] = []

    async def reconcile(key: str) -> None:
        nonlocal peak
        if key in active:
            overlap.append(key)
        active.add(key)
        peak = max(peak, len(active))
        calls[key] = calls.get(key, 0) + 1
        await asyncio.sleep(1.0)
        active.discard(key)

    async def scenario() -> None:
        ctrl = controller.Controller("t", reconcile, workers=4)
        task = asyncio.create_task(ctrl.run())
        for key in ["a", "b", "c", "d"]:
            ctrl.enqueue(key)
        await asyncio.sleep(0.5)  # all four are being reconciled now
        for _ in range(100):
            ctrl.enqueue("a")  # burst while "a" is processing
        await asyncio.sleep(10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(scenario())
    assert overlap == []
    assert peak == 4
    assert calls == {"a": 2, "b": 1, "c": 1, "d": 1}


def test_a_worker_survives_any_exception(run_virtual) -> None:
    seen: list[str] = []
    good = asyncio.Event()

    async def reconcile(key: str) -> None:
        seen.append(key)
        if key == "good":
            good.set()
        if key == "bad":
            raise KeyError("boom")

    async def scenario() -> None:
        ctrl = controller.Controller("t", reconcile, workers=1, backoff_base=1000)
        ctrl.enqueue("bad")
        ctrl.enqueue("good")
        await run_until(ctrl, good, limit=10)

    run_virtual(scenario())
    assert seen == ["bad", "good"]


def test_controller_needs_a_worker() -> None:
    async def reconcile(key: str) -> None:
        return None

    with pytest.raises(ValueError):
        controller.Controller("t", reconcile, workers=0)


class _Meta:
    def __init__(self, name: str, generation: int, namespace: str | None = "ns") -> None:
        self.name = name
        self.namespace = namespace
        self.generation = generation
        self.resourceVersion = str(generation)


class _Obj:
    def __init__(self, name: str, generation: int = 1) -> None:
        self.metadata = _Meta(name, generation)


def test_generation_changed_predicate() -> None:
    old, same, bumped = _Obj("a", 1), _Obj("a", 1), _Obj("a", 2)
    assert controller.generation_changed(informer.Event(informer.EventType.ADDED, same))
    assert controller.generation_changed(informer.Event(informer.EventType.DELETED, same, old))
    assert not controller.generation_changed(informer.Event(informer.EventType.MODIFIED, same, old))
    assert controller.generation_changed(informer.Event(informer.EventType.MODIFIED, bumped, old))


def test_own_key_is_namespace_slash_name() -> None:
    assert list(controller.own_key(_Obj("a"))) == ["ns/a"]
