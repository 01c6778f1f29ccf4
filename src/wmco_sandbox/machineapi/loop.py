"""The little controller runtime of the simulated Machine API: wake-ups, watches, keyed workers.

Every controller here is level-triggered: a *pass* lists what it manages and moves each object one
step towards its desired state, reading the API server (never a cache, so there is nothing to go
stale and no "expectations" bookkeeping as in MAO). Watches only say *when* to look again: any
event on a watched kind wakes the interested controllers, which also run on a resync timer in case
a watch was down. Work that can take long (booting a host, draining) runs in one task per object
(:class:`KeyedWorkers`), so a slow host never holds up the others, and one object is never worked
on twice at the same time.

The operator has its own, fuller runtime (``wmco.runtime``); the sandbox must not lean on the code
it is meant to test, hence this small separate one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from lightkube import AsyncClient

log = logging.getLogger(__name__)


class Wakeup:
    """A level-triggered flag: many :meth:`set` calls before a :meth:`wait` make one wake-up."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        """Ask for one more pass."""
        self._event.set()

    async def wait(self, timeout: float) -> None:
        """Return when set (clearing it) or after ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancellation
                await self._event.wait()
        self._event.clear()


async def watch_forever(
    client: AsyncClient,
    resource: Any,
    *,
    namespace: str | None,
    wake: Iterable[Wakeup],
    on_object: Callable[[str], None] | None = None,
    retry_after: float = 1.0,
) -> None:
    """Wake every ``wake`` on each event of ``resource``; reconnect forever.

    A reconnection wakes them too: events may have been missed while the watch was down.

    Args:
        client: The API client.
        resource: A lightkube resource class.
        namespace: The namespace to watch, or None for a cluster-scoped kind.
        wake: What to wake.
        on_object: Also called with the name of the object of each event (to enqueue just it).
        retry_after: Seconds between reconnection attempts after an error.
    """
    targets = list(wake)
    kwargs: dict[str, Any] = {"namespace": namespace} if namespace is not None else {}
    while True:
        try:
            async for _event, obj in client.watch(resource, **kwargs):
                for target in targets:
                    target.set()
                if on_object is not None and obj.metadata is not None and obj.metadata.name:
                    on_object(obj.metadata.name)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # any transport or API error: log, back off, watch again
            log.debug("watch of %s failed: %s", resource.__name__, err)
        for target in targets:
            target.set()
        await asyncio.sleep(retry_after)


async def run_passes(
    what: str, one_pass: Callable[[], Awaitable[None]], wakeup: Wakeup, resync: float
) -> None:
    """Run ``one_pass`` at start, on every wake-up and at least every ``resync`` seconds.

    A failing pass is logged and retried on the next wake-up; it never stops the loop.
    """
    while True:
        try:
            await one_pass()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: pass failed; retrying", what)
        await wakeup.wait(resync)


class KeyedWorkers:
    """At most one task per key runs ``work(key)``; a key enqueued while busy runs once more.

    ``work`` returns None when done, or a delay after which it wants to look again (waiting for a
    drain, say); an :meth:`enqueue` cuts that wait short. A ``work`` that raises is logged and its
    key is held back with exponential backoff (0.5 s up to 30 s), so a persistently failing object
    neither spins nor blocks the others.
    """

    def __init__(self, what: str, work: Callable[[str], Awaitable[float | None]]) -> None:
        self._what = what
        self._work = work
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._kicks: dict[str, Wakeup] = {}
        self._again: set[str] = set()
        self._failures: dict[str, int] = {}
        self._not_before: dict[str, float] = {}

    def enqueue(self, key: str) -> None:
        """Run ``work(key)`` soon (unless it is backing off after an error)."""
        if key in self._tasks:
            self._again.add(key)
            self._kicks[key].set()
            return
        if time.monotonic() < self._not_before.get(key, 0.0):
            return
        self._kicks[key] = Wakeup()
        self._tasks[key] = asyncio.create_task(self._run(key), name=f"{self._what}:{key}")

    def busy(self) -> set[str]:
        """The keys being worked on now."""
        return set(self._tasks)

    async def _run(self, key: str) -> None:
        try:
            while True:
                self._again.discard(key)
                try:
                    requeue = await self._work(key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failures = self._failures.get(key, 0) + 1
                    self._failures[key] = failures
                    delay = min(30.0, 0.5 * 2 ** (failures - 1))
                    self._not_before[key] = time.monotonic() + delay
                    log.exception("%s %s failed (retry in %.1fs)", self._what, key, delay)
                    return
                self._failures.pop(key, None)
                self._not_before.pop(key, None)
                if key in self._again:
                    continue
                if requeue is None:
                    return
                await self._kicks[key].wait(requeue)
        finally:
            self._tasks.pop(key, None)
            self._kicks.pop(key, None)

    async def close(self) -> None:
        """Cancel every running task and wait for them to finish."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
