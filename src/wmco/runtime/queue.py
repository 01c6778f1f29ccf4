"""A work queue of object keys with client-go's semantics, for asyncio.

* **De-duplication.** A key added several times before a worker takes it is processed once
  (the "dirty" set).
* **Per-key serialisation.** A key handed to a worker is "processing" until :meth:`WorkQueue.done`;
  adding it meanwhile marks it dirty, and ``done`` puts it back, so it is processed again after,
  never twice at once. Reconcilers therefore never race with themselves on one object.
* **Delays.** :meth:`WorkQueue.add_after` holds a key back; several delays for one key keep the
  earliest.
* **Rate-limited retries.** :meth:`WorkQueue.add_rate_limited` delays by a per-key exponential
  backoff (``base * 2**failures`` capped at ``max``, client-go's
  ``ItemExponentialFailureRateLimiter``); :meth:`WorkQueue.forget` resets it after a success.

Everything runs on one event loop and every mutation is synchronous (no ``await`` between the
read and the write of the sets), so no lock is needed. Time is the loop's clock, which tests
replace with a virtual one.
"""

from __future__ import annotations

import asyncio
import collections

from wmco.runtime import metrics as metrics_mod


class ShutDown(Exception):
    """The queue was shut down; workers stop."""


class Backoff:
    """Per-key exponential backoff: ``base * 2**failures``, capped at ``maximum`` seconds."""

    def __init__(self, base: float = 0.005, maximum: float = 1000.0) -> None:
        if base <= 0 or maximum < base:
            raise ValueError(f"need 0 < base <= maximum, got base={base} maximum={maximum}")
        self.base = base
        self.maximum = maximum
        self._failures: dict[str, int] = {}

    def when(self, key: str) -> float:
        """Record one more failure of ``key`` and return how long to wait before retrying."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        if failures >= 64:  # 2**64 * base overflows any sane maximum anyway
            return self.maximum
        return min(self.base * (1 << failures), self.maximum)

    def forget(self, key: str) -> None:
        """Reset ``key``'s failure count."""
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        """How many failures of ``key`` are counted."""
        return self._failures.get(key, 0)


class WorkQueue:
    """A de-duplicating, per-key serialising, rate-limited queue of keys."""

    def __init__(
        self,
        name: str = "",
        *,
        backoff: Backoff | None = None,
        metrics: metrics_mod.Metrics | None = None,
    ) -> None:
        self.name = name
        self.backoff = backoff or Backoff()
        self._metrics = metrics
        self._queue: collections.deque[str] = collections.deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._waiting: dict[str, asyncio.TimerHandle] = {}
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._shutting_down = False

    def __len__(self) -> int:
        """Keys ready to be handed out (not delayed, not processing)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        return self._shutting_down

    def is_processing(self, key: str) -> bool:
        """Whether a worker holds ``key`` right now."""
        return key in self._processing

    def is_waiting(self, key: str) -> bool:
        """Whether ``key`` is held back by :meth:`add_after` or :meth:`add_rate_limited`."""
        return key in self._waiting

    def add(self, key: str) -> None:
        """Queue ``key`` unless it is already queued; if it is processing, queue it after."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if self._metrics is not None:
            self._metrics.queue_adds.labels(self.name).inc()
        if key in self._processing:
            return
        self._queue.append(key)
        self._changed()
        self._wake_one()

    def add_after(self, key: str, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds; an earlier pending delay for it wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending.when() <= when:
                return
            pending.cancel()
        self._waiting[key] = loop.call_at(when, self._fire, key)

    def add_rate_limited(self, key: str) -> float:
        """Queue ``key`` after its backoff delay; returns the delay."""
        delay = self.backoff.when(key)
        if self._metrics is not None:
            self._metrics.queue_retries.labels(self.name).inc()
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """Reset ``key``'s backoff (after a successful reconcile)."""
        self.backoff.forget(key)

    def num_requeues(self, key: str) -> int:
        """How many rate-limited re-adds ``key`` has had since the last :meth:`forget`."""
        return self.backoff.failures(key)

    async def get(self) -> str:
        """Take the next key, waiting for one; mark it processing.

        Raises:
            ShutDown: The queue was shut down.
        """
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                if getter in self._getters:
                    self._getters.remove(getter)
                # Woken but cancelled: pass the wake-up on so the key is not stranded.
                if getter.done() and not getter.cancelled() and self._queue:
                    self._wake_one()
                raise
        if self._shutting_down:
            raise ShutDown(self.name)
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        self._changed()
        return key

    def done(self, key: str) -> None:
        """Release ``key`` after processing; re-queue it if it was added meanwhile."""
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._changed()
            self._wake_one()

    def shutdown(self) -> None:
        """Stop handing out keys: waiting and future :meth:`get` calls raise :class:`ShutDown`."""
        self._shutting_down = True
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)

    def _fire(self, key: str) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def _wake_one(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    def _changed(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.labels(self.name).set(len(self._queue))
