"""WorkQueue semantics: de-duplication, per-key serialisation, delays, backoff, shutdown.

All tests run on virtual time (see conftest): delays are asserted exactly and nothing sleeps.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wmco.runtime import metrics, queue


def now() -> float:
    return asyncio.get_running_loop().time()


def test_duplicate_adds_before_get_are_processed_once(run_virtual) -> None:
    async def scenario() -> list[str]:
        q = queue.WorkQueue()
        for key in ["a", "b", "a", "a", "b", "c"]:
            q.add(key)
        assert len(q) == 3
        got = [await q.get() for _ in range(3)]
        assert len(q) == 0
        return got

    assert run_virtual(scenario()) == ["a", "b", "c"]


def test_key_added_while_processing_is_handed_out_again_only_after_done(run_virtual) -> None:
    async def scenario() -> None:
        q = queue.WorkQueue()
        q.add("a")
        assert await q.get() == "a"
        assert q.is_processing("a")
        q.add("a")
        q.add("a")
        assert len(q) == 0  # not handed to a second worker while processing
        second = asyncio.create_task(q.get())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(60):
                await asyncio.shield(second)
        q.done("a")
        assert await second == "a"
        q.done("a")
        assert len(q) == 0 and not q.is_processing("a")

    run_virtual(scenario())


def test_other_keys_are_not_blocked_by_a_processing_key(run_virtual) -> None:
    async def scenario() -> None:
        q = queue.WorkQueue()
        q.add("a")
        assert await q.get() == "a"
        q.add("a")
        q.add("b")
        assert await q.get() == "b"

    run_virtual(scenario())


def test_add_after_delays_exactly(run_virtual) -> None:
    async def scenario() -> None:
        q = queue.WorkQueue()
        start = now()
        q.add_after("a", 5.0)
        assert q.is_waiting("a") and len(q) == 0
        assert await q.get() == "a"
        assert now() - start == pytest.approx(5.0)

    run_virtual(scenario())


def test_add_after_keeps_the_earliest_delay_and_fires_once(run_virtual) -> None:
    async def scenario() -> None:
        q = queue.WorkQueue()
        start = now()
        q.add_after("a", 10.0)
        q.add_after("a", 2.0)
        q.add_after("a", 7.0)
        assert await q.get() == "a"
        assert now() - start == pytest.approx(2.0)
        q.done("a")
        nothing = asyncio.create_task(q.get())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(100):
                await asyncio.shield(nothing)
        nothing.cancel()

    run_virtual(scenario())


def test_add_after_non_positive_delay_adds_now(run_virtual) -> None:
    async def scenario() -> None:
        q = queue.WorkQueue()
        q.add_after("a", 0)
        assert len(q) == 1

    run_virtual(scenario())


def test_backoff_is_exponential_per_key_capped_and_reset_by_forget() -> None:
    backoff = queue.Backoff(base=1.0, maximum=8.0)
    assert [backoff.when("a") for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    assert backoff.when("b") == 1  # independent per key
    assert backoff.failures("a") == 6
    backoff.forget("a")
    assert backoff.failures("a") == 0
    assert backoff.when("a") == 1


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        queue.Backoff(base=0)
    with pytest.raises(ValueError):
        queue.Backoff(base=2, maximum=1)


def test_backoff_survives_many_failures() -> None:
    backoff = queue.Backoff(base=0.005, maximum=1000)
    delays = [backoff.when("a") for _ in range(200)]
    assert delays[-1] == 1000


def test_rate_limited_adds_wait_their_backoff(run_virtual) -> None:
    async def scenario() -> list[float]:
        q = queue.WorkQueue(backoff=queue.Backoff(base=0.5, maximum=4.0))
        waited = []
        for _ in range(5):
            start = now()
            delay = q.add_rate_limited("a")
            assert await q.get() == "a"
            q.done("a")
            assert now() - start == pytest.approx(delay)
            waited.append(delay)
        assert q.num_requeues("a") == 5
        q.forget("a")
        assert q.num_requeues("a") == 0
        return waited

    assert run_virtual(scenario()) == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_shutdown_wakes_blocked_getters_and_ignores_later_adds(run_virtual) -> None:
    async def scenario() -> None:
        q = queue.WorkQueue()
        getters = [asyncio.create_task(q.get()) for _ in range(3)]
        await asyncio.sleep(0)
        q.add_after("late", 5)
        q.shutdown()
        for getter in getters:
            with pytest.raises(queue.ShutDown):
                await getter
        q.add("a")
        assert len(q) == 0
        assert not q.is_waiting("late")
        with pytest.raises(queue.ShutDown):
            await q.get()

    run_virtual(scenario())


def test_a_cancelled_woken_getter_passes_the_key_on(run_virtual) -> None:
    async def scenario() -> None:
        q = queue.WorkQueue()
        first = asyncio.create_task(q.get())
        second = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.add("a")  # wakes `first`...
        first.cancel()  # ...which is cancelled before it runs
        async with asyncio.timeout(1):
            assert await second == "a"
        assert first.cancelled()

    run_virtual(scenario())


def test_queue_publishes_depth_adds_and_retries(run_virtual) -> None:
    m = metrics.Metrics()

    async def scenario() -> None:
        q = queue.WorkQueue("things", metrics=m)
        q.add("a")
        q.add("b")
        q.add("b")
        q.add_rate_limited("c")

    run_virtual(scenario())
    sample = m.registry.get_sample_value
    assert sample("workqueue_depth", {"name": "things"}) == 2
    assert sample("workqueue_adds_total", {"name": "things"}) == 2
    assert sample("workqueue_retries_total", {"name": "things"}) == 1


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    adds=st.lists(
        st.tuples(st.sampled_from("abcd"), st.floats(min_value=0, max_value=3)),
        min_size=1,
        max_size=30,
    ),
    work=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=10),
    workers=st.integers(min_value=1, max_value=4),
)
def test_no_key_runs_concurrently_and_every_add_is_followed_by_a_run(
    run_virtual, adds, work, workers
) -> None:
    """Random adds while workers process: a key is never processed twice at once, and each
    key is processed at least once after its last add (no event is lost)."""

    async def scenario() -> None:
        q = queue.WorkQueue()
        running: set[str] = set()
        started: dict[str, list[float]] = {}
        last_add: dict[str, float] = {}
        durations = iter(work * 100)

        async def worker() -> None:
            while True:
                try:
                    key = await q.get()
                except queue.ShutDown:
                    return
                assert key not in running, f"{key} processed concurrently"
                running.add(key)
                started.setdefault(key, []).append(now())
                await asyncio.sleep(next(durations))
                running.discard(key)
                q.done(key)

        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        for key, gap in adds:
            await asyncio.sleep(gap)
            last_add[key] = now()
            q.add(key)
        await asyncio.sleep(1000)  # virtual: let everything drain
        q.shutdown()
        await asyncio.gather(*tasks)
        for key, at in last_add.items():
            assert any(start >= at for start in started[key]), f"add of {key} at {at} lost"

    run_virtual(scenario())  # the fixture is a pure function: safe to reuse across examples
