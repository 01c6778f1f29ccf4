"""Virtual time for runtime unit tests.

``run_virtual(coro)`` runs a coroutine on an event loop whose clock jumps straight to the next
timer whenever nothing is ready, so backoffs of minutes take microseconds and every timing
assertion is exact (the idea of ``looptime``, in thirty lines). Only the selector's timeout is
virtual; real I/O readiness is still polled first.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0


class _VirtualSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        ready: list[Any] = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:
            return super().select(None)  # nothing scheduled at all: only I/O can wake us
        self._clock.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _Clock()
        super().__init__(_VirtualSelector(self._virtual))

    def time(self) -> float:
        return self._virtual.now


def run_virtual_coro(coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)


@pytest.fixture
def run_virtual() -> Callable[[Coroutine[Any, Any, T]], T]:
    return run_virtual_coro
