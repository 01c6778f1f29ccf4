"""A slot of the host pool: let go during a wait, taken back after, never leaked."""

from __future__ import annotations

import asyncio

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
