"""Controller: a reconcile function, the watches that feed it keys, and its workers.

The contract is controller-runtime's. ``reconcile(key)`` reads the current state of the object
behind ``key`` (and whatever else it needs) and moves the world one step towards the desired
state. It is level-triggered: it is told *which* object to look at, never *what happened*, so a
missed or coalesced event costs nothing. It returns a :class:`Result`:

* ``Result()``: done; the key's backoff is reset.
* ``Result(requeue_after=s)``: look again in ``s`` seconds (polling something outside the API).
* ``Result(requeue=True)``: look again after the key's backoff delay.
* raising: logged, counted, retried after the key's exponential backoff. A worker never dies.

Watches map events of any kind to keys of the reconciled kind: :meth:`Controller.watch` with
the default map function enqueues the object's own key (controller-runtime's ``For``), and
with a ``map_fn`` lets e.g. a Node change enqueue its Machine. Predicates drop events first.

The work queue guarantees one key is never reconciled by two workers at once, and that bursts
of events for one key collapse into one reconcile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from wmco.runtime import informer as informer_mod
from wmco.runtime import keys
from wmco.runtime import metrics as metrics_mod
from wmco.runtime import queue as queue_mod

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """What a reconcile asks for next.

    Attributes:
        requeue_after: Reconcile the key again after this many seconds.
        requeue: Reconcile the key again after its backoff delay.
    """

    requeue_after: float | None = None
    requeue: bool = False


Reconciler = Callable[[str], Awaitable[Result | None]]
"""``async def reconcile(key: str) -> Result | None``; ``None`` means ``Result()``."""

MapFn = Callable[[Any], Iterable[str]]
"""Maps a watched object to the keys to reconcile."""

EventMapFn = Callable[[informer_mod.Event[Any]], Iterable[str]]
"""Maps a whole event (the object before and after) to the keys to reconcile."""

Predicate = Callable[[informer_mod.Event[Any]], bool]
"""Keeps (``True``) or drops (``False``) an event before mapping."""


def own_key(obj: Any) -> Iterable[str]:
    """The default map function: the object's own ``namespace/name`` key."""
    return (keys.key_of(obj),)


def generation_changed(event: informer_mod.Event[Any]) -> bool:
    """Predicate: drop updates that do not change ``metadata.generation`` (status-only)."""
    if event.type is not informer_mod.EventType.MODIFIED or event.old is None:
        return True
    generation: int | None = event.obj.metadata.generation
    return bool(generation != event.old.metadata.generation)


class Controller:
    """Reconciles keys fed by watches, with ``workers`` concurrent workers."""

    def __init__(
        self,
        name: str,
        reconcile: Reconciler,
        *,
        workers: int = 10,
        backoff_base: float = 0.005,
        backoff_max: float = 1000.0,
        metrics: metrics_mod.Metrics | None = None,
    ) -> None:
        """Create a controller; nothing happens until :meth:`run`.

        Args:
            name: Name in logs and metrics.
            reconcile: The reconcile function.
            workers: How many keys may be reconciled concurrently (distinct keys only).
            backoff_base: First retry delay after a failure, in seconds.
            backoff_max: Cap of the retry delay, in seconds.
            metrics: Where to count reconciles and queue activity.
        """
        if workers < 1:
            raise ValueError(f"a controller needs at least one worker, got {workers}")
        self.name = name
        self.workers = workers
        self._reconcile = reconcile
        self._metrics = metrics
        self._backoff = queue_mod.Backoff(backoff_base, backoff_max)
        self.queue = queue_mod.WorkQueue(name, backoff=self._backoff, metrics=metrics)
        self._informers: list[informer_mod.Informer[Any]] = []

    def watch(
        self,
        source: informer_mod.Informer[Any],
        map_fn: MapFn = own_key,
        *predicates: Predicate,
    ) -> None:
        """Enqueue ``map_fn(obj)`` for every event of ``source`` that passes ``predicates``.

        Args:
            source: The informer of the watched kind (shared with other controllers).
            map_fn: Object to keys; by default the object's own key.
            *predicates: Filters applied before mapping.
        """
        self.watch_events(source, lambda event: map_fn(event.obj), *predicates)

    def watch_events(
        self,
        source: informer_mod.Informer[Any],
        map_fn: EventMapFn,
        *predicates: Predicate,
    ) -> None:
        """Like :meth:`watch`, with a map function that sees the event, old object included.

        For one object that stands for many keys (a ConfigMap listing hosts): an edit then
        enqueues only the keys it changed.
        """

        def handle(event: informer_mod.Event[Any]) -> None:
            if all(predicate(event) for predicate in predicates):
                for key in map_fn(event):
                    self.enqueue(key)

        self._informers.append(source)
        source.add_handler(handle)

    def enqueue(self, key: str) -> None:
        """Ask for ``key`` to be reconciled (de-duplicated with pending requests)."""
        self.queue.add(key)

    @property
    def has_synced(self) -> bool:
        """Whether every watched informer has synced."""
        return all(source.has_synced for source in self._informers)

    async def run(self) -> None:
        """Wait for the watched informers to sync, then reconcile until cancelled."""
        for source in self._informers:
            await source.wait_synced()
        log.info("controller %s: starting %d workers", self.name, self.workers)
        try:
            async with asyncio.TaskGroup() as group:
                for number in range(self.workers):
                    group.create_task(self._worker(), name=f"{self.name} worker {number}")
        finally:
            self.queue.shutdown()

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except queue_mod.ShutDown:
                return
            try:
                await self._process(key)
            finally:
                self.queue.done(key)

    async def _process(self, key: str) -> None:
        started = time.monotonic()
        outcome = "success"
        try:
            result = await self._reconcile(key) or Result()
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception:
            outcome = "error"
            delay = self.queue.add_rate_limited(key)
            log.exception(
                "controller %s: reconcile of %s failed; retry %d in %.3fs",
                self.name,
                key,
                self.queue.num_requeues(key),
                delay,
            )
            if self._metrics is not None:
                self._metrics.reconcile_errors.labels(self.name).inc()
        else:
            if result.requeue_after is not None and result.requeue_after > 0:
                outcome = "requeue_after"
                self.queue.forget(key)
                self.queue.add_after(key, result.requeue_after)
            elif result.requeue:
                outcome = "requeue"
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
        finally:
            if self._metrics is not None:
                self._metrics.reconcile_total.labels(self.name, outcome).inc()
                self._metrics.reconcile_duration.labels(self.name).observe(
                    time.monotonic() - started
                )
