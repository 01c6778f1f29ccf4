"""A slot of the host pool: let go during a wait, taken back after, never leaked."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from wmco.nodeconfig import slots


async def test_a_released_slot_lets_another_host_work_and_is_taken_back() -> None:
    pool = asyncio.Semaphore(1)
    async with slots.Slot(pool) as first:
        assert first.held and pool.locked()
        async with first.released():
            assert not first.held
            async with slots.Slot(pool) as second:  # the other host gets the place meanwhile
                assert second.held
        assert first.held and pool.locked()
    assert not pool.locked()


async def test_a_wait_that_fails_leaves_without_the_place() -> None:
    pool = asyncio.Semaphore(1)
    slot = slots.Slot(pool)
    with pytest.raises(TimeoutError):
        async with slot, slot.released():
            raise TimeoutError
    assert not slot.held and not pool.locked()


async def test_the_unbounded_slot_does_nothing() -> None:
    async with slots.UNBOUNDED as slot, slot.released():
        assert not slot.held


async def queued(budget: slots.UploadBudget, count: int) -> None:
    """Let the event loop run until ``count`` uploads wait for their share (5 s at most)."""
    async with asyncio.timeout(5):
        for _ in itertools.count():
            if budget.waiting >= count:
                return
            await asyncio.sleep(0)


async def test_an_upload_lets_its_place_go_and_takes_a_share_of_the_budget() -> None:
    pool = asyncio.Semaphore(1)
    budget = slots.UploadBudget(100)
    async with slots.Slot(pool, budget) as slot:
        async with slot.uploading(60):
            assert not slot.held and not pool.locked()  # a light step of another host may run
            assert budget.in_use == 60
        assert slot.held and budget.in_use == 0


async def test_without_a_budget_an_upload_keeps_its_place() -> None:
    pool = asyncio.Semaphore(1)
    async with slots.Slot(pool) as slot, slot.uploading(60):
        assert slot.held


async def test_uploads_beyond_the_budget_wait_their_turn_in_arrival_order() -> None:
    budget = slots.UploadBudget(100)
    order: list[str] = []
    first_in = asyncio.Event()
    let_first_go = asyncio.Event()

    async def upload(name: str, nbytes: int, started: asyncio.Event | None = None) -> None:
        async with budget.taken(nbytes):
            order.append(name)
            if started is not None:
                started.set()
                await let_first_go.wait()

    first = asyncio.create_task(upload("large-1", 80, first_in))
    await first_in.wait()
    second = asyncio.create_task(upload("large-2", 80))
    third = asyncio.create_task(upload("small", 10))  # fits now, but queues behind large-2
    await queued(budget, 2)
    assert order == ["large-1"] and budget.in_use == 80
    let_first_go.set()
    await asyncio.gather(first, second, third)
    assert order == ["large-1", "large-2", "small"]
    assert budget.in_use == 0


async def test_a_request_larger_than_the_budget_runs_alone() -> None:
    budget = slots.UploadBudget(100)
    async with budget.taken(10**9):
        assert budget.in_use == 100


async def test_a_cancelled_wait_gives_nothing_away_and_lets_the_next_one_in() -> None:
    budget = slots.UploadBudget(100)
    holder_in = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with budget.taken(100):
            holder_in.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await holder_in.wait()
    cancelled = asyncio.create_task(budget.taken(50).__aenter__())
    small_done = asyncio.Event()

    async def small() -> None:
        async with budget.taken(50):
            small_done.set()

    later = asyncio.create_task(small())
    await queued(budget, 2)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, later), 5)
    assert small_done.is_set() and budget.in_use == 0 and budget.waiting == 0


async def test_a_wait_cancelled_after_a_release_passed_it_by_stays_a_cancellation() -> None:
    budget = slots.UploadBudget(100)
    holder = budget.taken(100)
    await holder.__aenter__()
    waiter = asyncio.create_task(budget.taken(50).__aenter__())
    await queued(budget, 1)
    waiter.cancel()  # done at once; its task has not run its handler yet
    await holder.__aexit__(None, None, None)  # the release drops the cancelled entry first
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.in_use == 0 and budget.waiting == 0
