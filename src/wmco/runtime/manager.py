"""Manager: owns the informers, the controllers, leader election and the HTTP endpoints.

Lifecycle of :meth:`Manager.run`, as in controller-runtime:

1. serve ``/healthz``, ``/readyz`` and ``/metrics`` on one aiohttp server;
2. start every informer (shared: one per kind + namespace + selector, whichever controllers
   watch it) so caches are warm even on a standby replica;
3. with leader election, campaign for the Lease and start the controllers only once leading;
   without it, start them at once (each controller waits for its informers to sync);
4. if the Lease is lost, stop the controllers and raise :class:`wmco.runtime.leader.LeadershipLost`
   so the process exits and restarts as a standby (what controller-runtime does: a replica that
   lost the Lease cannot know what it missed).

Probes: ``/healthz`` answers 200 while the event loop serves requests. ``/readyz`` answers 200
when every informer has synced and, with leader election, the replica either leads or stands by
with the API server answering; otherwise 503 with the reasons.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web

from wmco import kube
from wmco.runtime import controller as controller_mod
from wmco.runtime import informer as informer_mod
from wmco.runtime import leader as leader_mod
from wmco.runtime import metrics as metrics_mod

log = logging.getLogger(__name__)

ResourceT = TypeVar("ResourceT", bound=kube.Resource)

_InformerKey = tuple[type[Any], str | None, frozenset[tuple[str, str]], frozenset[tuple[str, str]]]


def parse_bind_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` accepted) into host and port."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bind address must be host:port, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class Manager:
    """Runs informers, controllers, leader election and the probe/metrics server."""

    def __init__(
        self,
        client: kube.Client,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_binds: Sequence[tuple[str, int]] = (),
        leader_election: leader_mod.LeaderElectionConfig | None = None,
        resync_period: float | None = None,
        watch_timeout: int = 300,
        workers: int = 10,
    ) -> None:
        """Create a manager; nothing runs until :meth:`run`.

        Args:
            client: API client shared by every informer and the elector.
            host: Address of the HTTP server.
            port: Port of the HTTP server (0: any free port; see :attr:`port`).
            extra_binds: More ``(host, port)`` addresses serving the same endpoints (e.g. the
                separate probe and metrics addresses of the settings).
            leader_election: Lease settings; ``None`` runs controllers without election.
            resync_period: Informer resync period in seconds (``None``: no resync).
            watch_timeout: Server-side duration of each watch stream, in seconds.
            workers: Default number of workers per controller.
        """
        self.client = client
        self.host = host
        self._requested_port = port
        self._extra_binds = tuple(extra_binds)
        self.metrics = metrics_mod.Metrics()
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        self.workers = workers
        self.elector = (
            None
            if leader_election is None
            else leader_mod.LeaderElector(client, leader_election, metrics=self.metrics)
        )
        self.informers: dict[_InformerKey, informer_mod.Informer[Any]] = {}
        self.controllers: list[controller_mod.Controller] = []
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self.serving = asyncio.Event()

    def informer(
        self,
        resource: type[ResourceT],
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> informer_mod.Informer[ResourceT]:
        """The shared informer of ``resource`` in ``namespace`` (``None``: all) with selectors."""
        key: _InformerKey = (
            resource,
            namespace,
            frozenset((labels or {}).items()),
            frozenset((fields or {}).items()),
        )
        existing = self.informers.get(key)
        if existing is not None:
            return existing
        created = informer_mod.Informer(
            self.client,
            resource,
            namespace=namespace,
            labels=labels,
            fields=fields,
            resync_period=self.resync_period,
            watch_timeout=self.watch_timeout,
            metrics=self.metrics,
        )
        self.informers[key] = created
        return created

    def controller(
        self,
        name: str,
        reconcile: controller_mod.Reconciler,
        *,
        workers: int | None = None,
        backoff_base: float = 0.005,
        backoff_max: float = 1000.0,
    ) -> controller_mod.Controller:
        """Create and register a controller; add its watches with ``Controller.watch``."""
        created = controller_mod.Controller(
            name,
            reconcile,
            workers=workers or self.workers,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            metrics=self.metrics,
        )
        self.controllers.append(created)
        return created

    @property
    def port(self) -> int:
        """The HTTP server's bound port (after :attr:`serving` is set)."""
        if self._port is None:
            raise RuntimeError("the manager's HTTP server is not running")
        return self._port

    def readiness(self) -> list[str]:
        """Reasons for not being ready; empty when ready."""
        reasons = [
            f"informer {informer.name} has not synced"
            for informer in self.informers.values()
            if not informer.has_synced
        ]
        if self.elector is not None and not self.elector.healthy:
            reasons.append("leader election: not leading and the API server does not answer")
        return reasons

    async def run(self) -> None:
        """Serve, watch and reconcile until cancelled.

        Raises:
            LeadershipLost: The Lease was lost; exit so a fresh replica stands by.
        """
        try:
            await self._start_server()
            async with asyncio.TaskGroup() as group:
                informers = [
                    group.create_task(informer.run(), name=f"informer {informer.name}")
                    for informer in self.informers.values()
                ]
                lost = await self._run_controllers()
                for task in informers:  # the Lease is lost: wind down, then raise outside
                    task.cancel()
        finally:
            await self._stop_server()
        if lost and self.elector is not None:
            raise leader_mod.LeadershipLost(
                f"{self.elector.config.identity} lost Lease "
                f"{self.elector.config.namespace}/{self.elector.config.name}"
            )

    async def _run_controllers(self) -> bool:
        """Run the controllers (when leading); ``True`` when the Lease was lost."""
        if self.elector is None:
            async with asyncio.TaskGroup() as group:
                for controller in self.controllers:
                    group.create_task(controller.run(), name=f"controller {controller.name}")
            return False
        async with asyncio.TaskGroup() as group:
            election = group.create_task(self.elector.run(), name="leader election")
            leading = group.create_task(self.elector.leading.wait())
            await asyncio.wait({election, leading}, return_when=asyncio.FIRST_COMPLETED)
            leading.cancel()
            running = [
                group.create_task(controller.run(), name=f"controller {controller.name}")
                for controller in self.controllers
            ]
            await election
            log.error("leader election: lease lost; stopping %d controllers", len(running))
            for task in running:
                task.cancel()
        return True

    async def _start_server(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.host, self._requested_port)
        await site.start()
        self._port = int(runner.addresses[0][1])
        for host, port in self._extra_binds:
            await web.TCPSite(runner, host, port).start()
        self.serving.set()
        log.info("serving /healthz /readyz /metrics on %s:%d", self.host, self._port)

    async def _stop_server(self) -> None:
        self.serving.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._port = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        reasons = self.readiness()
        if reasons:
            return web.Response(status=503, text="".join(f"{r}\n" for r in reasons))
        return web.Response(text="ok\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})
