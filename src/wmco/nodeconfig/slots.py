"""A place among the hosts worked on at once, let go while the host only waits.

``settings.concurrency`` bounds the hosts the operator works on at the same time: commands sent,
files copied. A host that is not answering yet (booting, dead), rebooting, installing a Windows
feature (a minute of Windows' own work behind one exec), or whose kubelet is on its way to Ready
costs the operator nothing but a timer, so it must not keep a place another host
could use: ten dead hosts would otherwise hold ten places for the whole SSH boot deadline and
starve the live ones. The flow wraps every such wait in :meth:`Slot.released`; the place is
taken back (waiting for it if need be) before the flow sends anything again.

Uploads have a bound of their own, in bytes (:class:`UploadBudget`, ``settings.upload_memory_mib``):
what an operator holds for one host is small except while a file is on its way out, when each
upload holds its SFTP writes in flight. A host uploads with its place let go and a share of the
budget taken (:meth:`Slot.uploading`), so the count bound can be generous for the light steps
(the looks, the scripts) without the uploads of that many hosts filling the operator's memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType


class UploadBudget:
    """Bytes the uploads of every host may hold in flight at once, granted first come first served.

    An upload asks for what it will hold: its window of writes in flight, or less for a file
    smaller than that. A request larger than the whole budget is granted the whole budget, so
    it runs alone rather than never. Grants go in arrival order: a small upload does not pass a
    large one that waits, which would otherwise wait for ever behind a stream of small ones.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"an upload budget needs at least one byte, got {capacity}")
        self.capacity = capacity
        self._free = capacity
        self._queue: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    @classmethod
    def of_mib(cls, mib: int) -> UploadBudget:
        """A budget of ``mib`` MiB (``settings.upload_memory_mib``)."""
        return cls(mib * 1024 * 1024)

    @property
    def in_use(self) -> int:
        """Bytes granted right now."""
        return self.capacity - self._free

    @property
    def waiting(self) -> int:
        """Uploads waiting for their share."""
        return sum(1 for _, future in self._queue if not future.done())

    def share(self, nbytes: int) -> int:
        """What a request for ``nbytes`` is granted: at least 1, at most the whole budget."""
        return min(max(nbytes, 1), self.capacity)

    @contextlib.asynccontextmanager
    async def taken(self, nbytes: int) -> AsyncIterator[None]:
        """Hold ``share(nbytes)`` bytes of the budget for the block, waiting for them first."""
        amount = self.share(nbytes)
        await self._acquire(amount)
        try:
            yield
        finally:
            self._release(amount)

    async def _acquire(self, amount: int) -> None:
        if not self._queue and self._free >= amount:
            self._free -= amount
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (amount, future)
        self._queue.append(entry)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self._release(amount)  # granted as the wait was cancelled: give it back
            else:
                with contextlib.suppress(ValueError):  # a grant may have dropped it already
                    self._queue.remove(entry)
                self._grant()  # whoever queued behind it may fit now
            raise

    def _release(self, amount: int) -> None:
        self._free += amount
        self._grant()

    def _grant(self) -> None:
        while self._queue:
            amount, future = self._queue[0]
            if future.done():
                self._queue.popleft()
                continue
            if self._free < amount:
                return
            self._queue.popleft()
            self._free -= amount
            future.set_result(None)


class Slot:
    """One place of a bounded pool (``None``: unbounded, for tests and tools).

    Use as ``async with Slot(pool) as slot:``; inside, ``async with slot.released():`` around a
    wait that needs no place.
    """

    def __init__(
        self, pool: asyncio.Semaphore | None = None, uploads: UploadBudget | None = None
    ) -> None:
        self._pool = pool
        self._uploads = uploads
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

    @contextlib.asynccontextmanager
    async def uploading(self, nbytes: int) -> AsyncIterator[None]:
        """Upload under the byte budget instead of the place: let the place go, take a share.

        ``nbytes`` is what the upload holds in flight (its window, or the whole file if that is
        smaller). Without a budget the place stays held, as for any other step.
        """
        if self._uploads is None:
            yield
            return
        async with self.released(), self._uploads.taken(nbytes):
            yield


UNBOUNDED = Slot()
"""A slot of no pool: holding and releasing it does nothing."""
