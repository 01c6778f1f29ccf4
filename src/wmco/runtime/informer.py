"""Informer: list + watch one kind into an in-memory store, and tell handlers what changed.

The informer is the operator's only reader of "the world" between reconciles:

1. **List** the objects (all, or one namespace / label selection) and remember the list's
   resourceVersion.
2. **Watch** from that resourceVersion. Each event updates the :class:`Store` and is passed to
   the handlers. BOOKMARK events only advance the resourceVersion.
3. When the stream ends (server timeout) or breaks (connection reset, a cancelled stream), it
   **resumes from the last resourceVersion**: nothing is lost and nothing is replayed.
4. When the server answers **410 Gone** (the resourceVersion is older than what etcd/the watch
   cache keep), resuming is impossible. It **relists and diffs** the store against the fresh
   list, emitting synthetic ADDED/MODIFIED/DELETED events. This is what recovers the deletes that
   happened while it was not watching; a plain "restart the watch without a version" (what
   lightkube's own watch does) would miss them.
5. Every ``resync_period`` it re-delivers every stored object as a MODIFIED event with
   ``origin=RESYNC``, so level-triggered controllers periodically revisit everything.

**Indexes** (client-go's ``Indexer``): :meth:`Store.add_index` names a function from an object to
the values it is found under (a Node's addresses, a CSR's requester); :meth:`Store.by_index` then
answers "which objects have this value" without walking the store, so a reconcile of one host
costs the same at 500 hosts as at one. **Waits**: :meth:`Informer.wait_until` sleeps until the
object under one key satisfies a condition (woken by that key's events, not by a timer), so a
flow waiting for its Node to become Ready sends nothing to the API server.

The store is safe to use from any coroutine of the loop: it is only mutated synchronously by
the informer (no ``await`` inside a mutation), and readers get the objects as last seen.
Handlers are plain callables that must not block (they typically map the object to keys and add
them to a work queue); an exception in one is logged and does not stop the informer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from wmco import kube
from wmco.runtime import keys
from wmco.runtime import metrics as metrics_mod

log = logging.getLogger(__name__)

T = TypeVar("T")
ResourceT = TypeVar("ResourceT", bound=kube.Resource)


class EventType(enum.StrEnum):
    """What happened to an object, as seen by handlers."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


class Origin(enum.StrEnum):
    """Where an event came from."""

    WATCH = "WATCH"
    """The watch stream."""
    LIST = "LIST"
    """The diff of a (re)list against the store: initial list or recovery from 410 Gone."""
    RESYNC = "RESYNC"
    """The periodic resync; ``obj`` and ``old`` are the same stored object."""


@dataclasses.dataclass(frozen=True, slots=True)
class Event(Generic[T]):
    """A change of one object.

    Attributes:
        type: Added, modified or deleted.
        obj: The object now (for DELETED: its last known state).
        old: The object before the change, when the store had it.
        origin: Watch stream, relist diff, or periodic resync.
    """

    type: EventType
    obj: T
    old: T | None = None
    origin: Origin = Origin.WATCH


Handler = Callable[[Event[Any]], None]
"""Called for every event, in order; must not block."""


def _version(obj: Any) -> str | None:
    version: str | None = obj.metadata.resourceVersion
    return version


_Key = keys.ObjectKey

IndexFn = Callable[[Any], Iterable[str]]
"""The values an object is found under in one index (none: it is not in that index)."""


class Store(Generic[T]):
    """The informer's cache: the last seen state of every object, by key, and its indexes."""

    def __init__(self) -> None:
        self._items: dict[keys.ObjectKey, T] = {}
        self._index_fns: dict[str, IndexFn] = {}
        self._indexes: dict[str, dict[str, set[keys.ObjectKey]]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: str) -> T | None:
        """The object stored under ``key`` (``namespace/name`` or ``name``), if any."""
        return self._items.get(keys.ObjectKey(key))

    def get_by_name(self, name: str, namespace: str | None = None) -> T | None:
        """The object called ``name`` in ``namespace``, if any."""
        return self._items.get(keys.make_key(name, namespace))

    def keys(self) -> list[keys.ObjectKey]:
        """Every key, sorted."""
        return sorted(self._items)

    def objects(self) -> list[T]:
        """Every object, in key order."""
        return [self._items[key] for key in sorted(self._items)]

    def add_index(self, name: str, fn: IndexFn) -> None:
        """Index every object (now and from now on) under the values ``fn`` gives it.

        Adding an index of a name already present keeps the first one: informers are shared,
        and every user of an index means the same function by its name.
        """
        if name in self._index_fns:
            return
        self._index_fns[name] = fn
        self._indexes[name] = {}
        for key, obj in self._items.items():
            self._index(name, key, obj)

    def by_index(self, name: str, value: str) -> list[T]:
        """The objects ``value`` is indexed under in index ``name``, in key order.

        Raises:
            KeyError: No index of that name was added.
        """
        found = self._indexes[name].get(value, ())
        return [self._items[key] for key in sorted(found)]

    def index_values(self, name: str) -> list[str]:
        """Every value index ``name`` holds objects under, sorted."""
        return sorted(self._indexes[name])

    def upsert(self, obj: T) -> T | None:
        """Store ``obj``; return what it replaced."""
        key = keys.key_of(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name in self._index_fns:
            self._index(name, key, obj)
        return old

    def remove(self, obj: T) -> T | None:
        """Forget ``obj``'s key; return what was stored."""
        key = keys.key_of(obj)
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _index(self, name: str, key: _Key, obj: T) -> None:
        index = self._indexes[name]
        for value in self._index_fns[name](obj):
            index.setdefault(value, set()).add(key)

    def _unindex(self, key: _Key, obj: T) -> None:
        for name, fn in self._index_fns.items():
            index = self._indexes[name]
            for value in fn(obj):
                holders = index.get(value)
                if holders is not None:
                    holders.discard(key)
                    if not holders:
                        del index[value]

    def replace(self, items: list[T]) -> list[Event[T]]:
        """Make the store equal to ``items`` and return the differences as events.

        Objects whose resourceVersion did not change produce no event.
        """
        fresh = {keys.key_of(obj): obj for obj in items}
        events: list[Event[T]] = []
        for key in sorted(self._items.keys() - fresh.keys()):
            events.append(Event(EventType.DELETED, self._items[key], self._items[key], Origin.LIST))
        for key in sorted(fresh):
            obj, old = fresh[key], self._items.get(key)
            if old is None:
                events.append(Event(EventType.ADDED, obj, None, Origin.LIST))
            elif _version(old) != _version(obj):
                events.append(Event(EventType.MODIFIED, obj, old, Origin.LIST))
        self._items = fresh
        for name in self._index_fns:
            self._indexes[name] = {}
            for key, obj in fresh.items():
                self._index(name, key, obj)
        return events


def slim(obj: Any) -> Any:
    """Drop what no controller reads before an object is cached: ``metadata.managedFields``.

    Server-side apply's field ownership takes several kilobytes per object (one entry per field
    manager: the kubelet, the controller-manager, the operator...), for every Node, CSR and
    Secret the operator caches; controller-runtime's caches strip it the same way
    (``cache.TransformStripManagedFields``). No controller reads them, and a cached object
    written back by an update (``kube.replace``) carries none: the API server then keeps its
    own, as it does for any update that omits them.
    """
    metadata = getattr(obj, "metadata", None)
    if metadata is not None and getattr(metadata, "managedFields", None) is not None:
        metadata.managedFields = None
    return obj


class Informer(Generic[ResourceT]):
    """List + watch one kind (optionally one namespace / label selection) into a :class:`Store`."""

    def __init__(
        self,
        client: kube.Client,
        resource: type[ResourceT],
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        resync_period: float | None = None,
        watch_timeout: int = 300,
        retry_max: float = 30.0,
        metrics: metrics_mod.Metrics | None = None,
    ) -> None:
        """Create an informer; nothing happens until :meth:`run`.

        Args:
            client: API client.
            resource: Resource class to watch.
            namespace: One namespace, or ``None`` for all (ignored for cluster-scoped kinds).
            labels: Equality label selector.
            fields: Equality field selector.
            resync_period: Seconds between resyncs; ``None`` disables them.
            watch_timeout: Server-side duration of each watch stream, in seconds.
            retry_max: Cap of the backoff between failed list/watch attempts, in seconds.
            metrics: Where to count relists.
        """
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.labels = dict(labels) if labels else None
        self.fields = dict(fields) if fields else None
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        self.retry_max = retry_max
        self.store: Store[ResourceT] = Store()
        self.name = f"{kube.kind_of(resource)[1]}" + (f"/{namespace}" if namespace else "")
        self.resource_version: str | None = None
        self.relists = 0
        self.watch_starts = 0
        self._metrics = metrics
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._stream: asyncio.Task[None] | None = None
        self._interrupted = False
        self._waiters: dict[keys.ObjectKey, set[asyncio.Event]] = {}

    def add_index(self, name: str, fn: IndexFn) -> None:
        """Index the store (see :meth:`Store.add_index`); may be called before or after sync."""
        self.store.add_index(name, fn)

    def add_handler(self, handler: Handler) -> None:
        """Call ``handler`` for every event from now on.

        Objects already stored are replayed to it as ADDED, so late handlers see the same world.
        """
        self._handlers.append(handler)
        for obj in self.store.objects():
            self._call(handler, Event(EventType.ADDED, obj, None, Origin.LIST))

    @property
    def has_synced(self) -> bool:
        """Whether the first list has been stored and delivered to the handlers."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until :attr:`has_synced`; ``False`` if ``timeout`` expires first."""
        try:
            async with asyncio.timeout(timeout):
                await self._synced.wait()
        except TimeoutError:
            return False
        return True

    async def wait_until(
        self, key: str, condition: Callable[[ResourceT | None], bool], deadline: float
    ) -> tuple[ResourceT | None, bool]:
        """Wait until the object stored under ``key`` satisfies ``condition``, or ``deadline``.

        The condition is checked once the informer has synced, then again at every event of
        that key (and after every relist): nothing is polled and nothing is sent.

        Args:
            key: ``namespace/name`` or ``name``.
            condition: Called with the stored object, or ``None`` while there is none.
            deadline: A :func:`time.monotonic` moment.

        Returns:
            The object as last seen (``None``: not there) and whether ``condition`` held.
        """
        wanted = keys.ObjectKey(key)
        changed = asyncio.Event()
        self._waiters.setdefault(wanted, set()).add(changed)
        try:
            while True:
                changed.clear()
                obj = self.store.get(key)
                if self.has_synced and condition(obj):
                    return obj, True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return obj, False
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await changed.wait()
        finally:
            waiters = self._waiters.get(wanted)
            if waiters is not None:
                waiters.discard(changed)
                if not waiters:
                    del self._waiters[wanted]

    def _wake(self, key: keys.ObjectKey | None = None) -> None:
        """Wake the waits on ``key`` (``None``: every wait)."""
        if key is None:
            for waiters in self._waiters.values():
                for waiter in waiters:
                    waiter.set()
            return
        for waiter in self._waiters.get(key, ()):
            waiter.set()

    def interrupt_watch(self) -> bool:
        """Drop the current watch stream, as a network failure would.

        The informer resumes from its last resourceVersion.

        Returns:
            Whether a stream was open.
        """
        if self._stream is None or self._stream.done():
            return False
        self._interrupted = True
        self._stream.cancel()
        return True

    async def run(self) -> None:
        """List, watch and resync until cancelled. Errors are logged and retried forever."""
        async with asyncio.TaskGroup() as group:
            if self.resync_period:
                group.create_task(self._resync_loop(self.resync_period))
            await self._list_and_watch()

    async def _list_and_watch(self) -> None:
        need_list = self.resource_version is None
        failures = 0
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                    failures = 0
                await self._watch_once()
                failures = 0
            except kube.Gone as exc:
                log.info(
                    "%s: resourceVersion %s gone (%s); relisting",
                    self.name,
                    self.resource_version,
                    exc.message,
                )
                need_list = True
            except kube.KubeError as exc:
                failures += 1
                delay = min(0.1 * (1 << min(failures, 16)), self.retry_max)
                log.warning(
                    "%s: %s failed (%s); retrying in %.1fs",
                    self.name,
                    "list" if need_list else "watch",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _relist(self) -> None:
        result = await kube.list_objects(
            self.client,
            self.resource,
            namespace=self.namespace,
            labels=self.labels,
            fields=self.fields,
        )
        events = self.store.replace([slim(item) for item in result.items])
        self.resource_version = result.resource_version
        self.relists += 1
        if self._metrics is not None:
            self._metrics.informer_relists.labels(self.name).inc()
        log.debug(
            "%s: listed %d objects at %s, %d changes",
            self.name,
            len(result.items),
            result.resource_version,
            len(events),
        )
        for event in events:
            self._dispatch(event)
        self._synced.set()
        self._wake()

    async def _watch_once(self) -> None:
        self._interrupted = False
        self._stream = asyncio.create_task(self._consume(), name=f"watch {self.name}")
        try:
            await self._stream
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._interrupted and (current is None or current.cancelling() == 0):
                log.info(
                    "%s: watch interrupted; resuming from %s", self.name, self.resource_version
                )
                return
            raise
        finally:
            self._stream = None

    async def _consume(self) -> None:
        assert self.resource_version is not None
        self.watch_starts += 1
        stream = kube.watch(
            self.client,
            self.resource,
            resource_version=self.resource_version,
            namespace=self.namespace,
            labels=self.labels,
            fields=self.fields,
            timeout_seconds=self.watch_timeout,
        )
        async with contextlib.aclosing(stream):
            async for change in stream:
                if change.type is not kube.WatchEventType.BOOKMARK:
                    self._apply(change)
                self.resource_version = change.resource_version

    def _apply(self, change: kube.WatchEvent[ResourceT]) -> None:
        obj = slim(change.object)
        if change.type is kube.WatchEventType.DELETED:
            old = self.store.remove(obj)
            self._dispatch(Event(EventType.DELETED, obj, old))
            return
        old = self.store.upsert(obj)
        kind = EventType.ADDED if old is None else EventType.MODIFIED
        self._dispatch(Event(kind, obj, old))

    async def _resync_loop(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            if not self.has_synced:
                continue
            for obj in self.store.objects():
                self._dispatch(Event(EventType.MODIFIED, obj, obj, Origin.RESYNC))

    def _dispatch(self, event: Event[ResourceT]) -> None:
        if event.origin is not Origin.RESYNC and self._waiters:
            self._wake(keys.key_of(event.obj))
        for handler in self._handlers:
            self._call(handler, event)

    def _call(self, handler: Handler, event: Event[Any]) -> None:
        try:
            handler(event)
        except Exception:
            log.exception(
                "%s: handler %r failed on %s of %s",
                self.name,
                handler,
                event.type,
                keys.key_of(event.obj),
            )
