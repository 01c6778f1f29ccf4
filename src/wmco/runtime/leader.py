"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

Only the leader reconciles; other replicas stand by with warm caches. The algorithm is
client-go's ``leaderelection`` package, so a Go and a Python replica would interoperate:

* **Acquire.** Every ``retry_period`` (jittered up to 2.2x), read the Lease. It is free when it
  does not exist, has no holder, or when its record has not changed for ``leaseDurationSeconds``
  *as measured on our own clock since we last saw it change* (no comparison of wall clocks
  between machines). Taking it increments ``leaseTransitions`` and sets ``acquireTime``.
* **Renew.** While leading, write ``renewTime`` every ``retry_period``. Writes are conditional
  on the resourceVersion read (409 means someone else wrote: not renewed this round). If no
  renewal succeeds within ``renew_deadline``, leadership is **lost**: :meth:`LeaderElector.run`
  returns and the owner must stop its controllers (client-go exits the process).
* **Release.** When cancelled while leading (shutdown), clear the holder so a standby takes over
  at once instead of after ``lease_duration``.

``lease_duration > renew_deadline > 1.2 * retry_period`` is required, as in client-go: a leader
gives up (renew deadline) before others may consider the Lease expired (lease duration).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import math
import random
from collections.abc import Callable
from typing import Any

from wmco import kube
from wmco.runtime import metrics as metrics_mod

log = logging.getLogger(__name__)

JITTER = 1.2


class LeadershipLost(Exception):
    """The Lease could not be renewed within the renew deadline."""


@dataclasses.dataclass(frozen=True, slots=True)
class LeaderElectionConfig:
    """Where the Lease lives, who we are, and the timing (seconds).

    Attributes:
        namespace: Namespace of the Lease.
        name: Name of the Lease.
        identity: This replica's identity (pod name + a random suffix, typically).
        lease_duration: How long others wait after the last observed change before taking over.
        renew_deadline: How long the leader keeps trying to renew before giving up.
        retry_period: Time between attempts.
        release_on_cancel: Clear the holder on shutdown so a standby takes over immediately.
    """

    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True

    def __post_init__(self) -> None:
        if not self.identity:
            raise ValueError("leader election needs a non-empty identity")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if self.renew_deadline <= JITTER * self.retry_period:
            raise ValueError(f"renew_deadline must be greater than {JITTER} * retry_period")
        if self.retry_period <= 0:
            raise ValueError("retry_period must be positive")


Callback = Callable[[], None]


@dataclasses.dataclass(frozen=True, slots=True)
class _Record:
    holder: str
    duration: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int


def _record_of(spec: kube.LeaseSpec | None) -> _Record:
    spec = spec or kube.LeaseSpec()
    return _Record(
        holder=spec.holderIdentity or "",
        duration=spec.leaseDurationSeconds or 0,
        acquire_time=_micro(spec.acquireTime),
        renew_time=_micro(spec.renewTime),
        transitions=spec.leaseTransitions or 0,
    )


def _micro(value: datetime.datetime | str | None) -> str | None:
    moment = kube.parse_time(value)
    return None if moment is None else kube.format_micro_time(moment)


class LeaderElector:
    """Campaigns for a Lease and keeps it while it can."""

    def __init__(
        self,
        client: kube.Client,
        config: LeaderElectionConfig,
        *,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
        on_new_leader: Callable[[str], None] | None = None,
        metrics: metrics_mod.Metrics | None = None,
    ) -> None:
        """Create an elector; nothing happens until :meth:`run`.

        Args:
            client: API client.
            config: Lease location, identity and timing.
            on_started_leading: Called when the Lease is acquired.
            on_stopped_leading: Called when leadership ends (lost or released).
            on_new_leader: Called with the holder's identity whenever a new holder is observed.
            metrics: Where to publish the leader gauge.
        """
        self.client = client
        self.config = config
        self.leading = asyncio.Event()
        self.leader: str | None = None
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._on_new_leader = on_new_leader
        self._metrics = metrics
        self._observed: _Record | None = None
        self._observed_time = 0.0
        self._last_contact: float | None = None
        self._started: float | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this replica holds the Lease right now."""
        return self.leading.is_set()

    @property
    def healthy(self) -> bool:
        """Leading, or standing by with the API server answering within a lease duration."""
        if self.is_leader:
            return True
        loop = asyncio.get_running_loop()
        reference = self._last_contact if self._last_contact is not None else self._started
        return reference is not None and loop.time() - reference <= self.config.lease_duration

    async def run(self) -> None:
        """Acquire the Lease, then renew it until it is lost.

        Returns when leadership is lost. When cancelled while leading, releases the Lease first
        if ``release_on_cancel``.
        """
        self._started = asyncio.get_running_loop().time()
        await self._acquire()
        self._set_leading(True)
        try:
            await self._renew()
        except asyncio.CancelledError:
            if self.config.release_on_cancel:
                await asyncio.shield(self._release())
            raise
        finally:
            self._set_leading(False)

    async def _acquire(self) -> None:
        log.info(
            "leader election: %s campaigning for %s/%s",
            self.config.identity,
            self.config.namespace,
            self.config.name,
        )
        while not await self._try_acquire_or_renew():  # noqa: ASYNC110 - polling the API is the point
            await asyncio.sleep(self.config.retry_period * (1 + random.random() * JITTER))
        log.info(
            "leader election: %s acquired %s/%s",
            self.config.identity,
            self.config.namespace,
            self.config.name,
        )

    async def _renew(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.retry_period)
            deadline = loop.time() + self.config.renew_deadline
            renewed = False
            try:
                async with asyncio.timeout_at(deadline):
                    while not (renewed := await self._try_acquire_or_renew()):  # noqa: ASYNC110
                        await asyncio.sleep(self.config.retry_period)
            except TimeoutError:
                pass
            if not renewed:
                log.warning(
                    "leader election: %s failed to renew %s/%s within %.1fs",
                    self.config.identity,
                    self.config.namespace,
                    self.config.name,
                    self.config.renew_deadline,
                )
                return

    async def _try_acquire_or_renew(self) -> bool:
        loop = asyncio.get_running_loop()
        now = loop.time()
        stamp = kube.format_micro_time(datetime.datetime.now(datetime.UTC))
        duration = math.ceil(self.config.lease_duration)
        identity = self.config.identity
        try:
            lease = await kube.get(
                self.client,
                kube.Lease,
                self.config.name,
                namespace=self.config.namespace,
            )
            self._last_contact = loop.time()
            if lease is None:
                created = await kube.create(self.client, self._new_lease(stamp, duration))
                self._observe(_record_of(created.spec), loop.time())
                return True
            current = _record_of(lease.spec)
            self._observe(current, now)
            if (
                current.holder
                and current.holder != identity
                and self._observed_time + (current.duration or duration) > now
            ):
                return False
            if current.holder == identity:
                acquire_time, transitions = current.acquire_time or stamp, current.transitions
            else:
                acquire_time, transitions = stamp, current.transitions + 1
            body: dict[str, Any] = {
                "metadata": {
                    "resourceVersion": lease.metadata.resourceVersion if lease.metadata else None
                },
                "spec": {
                    "holderIdentity": identity,
                    "leaseDurationSeconds": duration,
                    "acquireTime": acquire_time,
                    "renewTime": stamp,
                    "leaseTransitions": transitions,
                },
            }
            updated = await kube.patch(
                self.client,
                kube.Lease,
                self.config.name,
                body,
                namespace=self.config.namespace,
            )
        except kube.Conflict:
            return False
        except kube.KubeError as exc:
            log.warning(
                "leader election: %s cannot read/write %s/%s: %s",
                identity,
                self.config.namespace,
                self.config.name,
                exc,
            )
            return False
        if updated is None:
            return False
        self._observe(_record_of(updated.spec), loop.time())
        return True

    def _new_lease(self, stamp: str, duration: int) -> kube.Lease:
        spec: Any = kube.LeaseSpec(
            holderIdentity=self.config.identity,
            leaseDurationSeconds=duration,
            leaseTransitions=0,
        )
        # MicroTime must carry six fractional digits; see kube.format_micro_time.
        spec.acquireTime = stamp
        spec.renewTime = stamp
        return kube.Lease(
            metadata=kube.ObjectMeta(name=self.config.name, namespace=self.config.namespace),
            spec=spec,
        )

    def _observe(self, record: _Record, now: float) -> None:
        if record == self._observed:
            return
        self._observed = record
        self._observed_time = now
        if record.holder != self.leader:
            self.leader = record.holder or None
            if record.holder and self._on_new_leader is not None:
                self._on_new_leader(record.holder)

    async def _release(self) -> None:
        if not self.is_leader:
            return
        stamp = kube.format_micro_time(datetime.datetime.now(datetime.UTC))
        body = {
            "spec": {
                "holderIdentity": None,
                "leaseDurationSeconds": 1,
                "acquireTime": stamp,
                "renewTime": stamp,
            }
        }
        try:
            async with asyncio.timeout(self.config.retry_period * 2):
                await kube.patch(
                    self.client,
                    kube.Lease,
                    self.config.name,
                    body,
                    namespace=self.config.namespace,
                )
        except (kube.KubeError, TimeoutError) as exc:
            log.warning(
                "leader election: %s could not release %s/%s: %s",
                self.config.identity,
                self.config.namespace,
                self.config.name,
                exc,
            )
            return
        log.info(
            "leader election: %s released %s/%s",
            self.config.identity,
            self.config.namespace,
            self.config.name,
        )

    def _set_leading(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        if leading:
            self.leading.set()
        else:
            self.leading.clear()
        if self._metrics is not None:
            self._metrics.leader.labels(self.config.name).set(1 if leading else 0)
        callback = self._on_started if leading else self._on_stopped
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("leader election: callback failed")
