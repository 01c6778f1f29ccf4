"""A place among the hosts worked on at once, let go while the host only waits.

``settings.concurrency`` bounds the hosts the operator works on at the same time: commands sent,
files copied. A host that is not answering yet (booting, dead), rebooting, installing a Windows
feature (a minute of Windows' own work behind one exec), or whose kubelet is on its way to Ready
costs the operator nothing but a timer, so it must not keep a place another host
could use: ten dead hosts would otherwise hold ten places for the whole SSH boot deadline and
starve the live ones. The flow wraps every such wait in :meth:`Slot.released`; the place is
taken back (waiting for it if need be) before the flow sends anything again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType


class Slot:
    """One place of a bounded pool (``None``: unbounded, for tests and tools).

    Use as ``async with Slot(pool) as slot:``; inside, ``async with slot.released():`` around a
    wait that needs no place.
    """

    def __init__(self, pool: asyncio.Semaphore | None = None) -> None:
        self._pool = pool
        self._held = False

    @property
    def held(self) -> bool:
        """Whether the place is taken right now."""
        return self._held

    async def _take(self) -> None:
        if self._pool is not None and not self._held:
            await self._pool.acquire()
            self._held = True

    def _give(self) -> None:
        if self._pool is not None and self._held:
            self._held = False
            self._pool.release()

    async def __aenter__(self) -> Slot:
        await self._take()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._give()

    @contextlib.asynccontextmanager
    async def released(self) -> AsyncIterator[None]:
        """Let the place go for the duration of a wait, and take it back after.

        A wait that raises (a timeout, a cancelled operator) leaves without the place: the flow
        is over, and a cancellation must not wait for a free place first.
        """
        was_held = self._held
        self._give()
        yield
        if was_held:
            await self._take()


UNBOUNDED = Slot()
"""A slot of no pool: holding and releasing it does nothing."""
