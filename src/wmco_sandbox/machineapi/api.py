"""The simulated Machine API as one object: CRDs, controllers and cloud, started and stopped together.

:class:`MachineAPI` is what the sandbox (and the tests) use::

    async with MachineAPI(client, provider) as machine_api:
        ...  # create MachineSets; Machines get hosts from ``provider``

On entry it installs the CRDs (idempotently), creates the namespace if needed and starts:

- three watches (Machines and MachineSets of the namespace, Nodes of the cluster) that only wake
  the controllers (a Machine event also enqueues that Machine for the machine controller);
- the MachineSet controller, nodelink and the machine controller, each a level-triggered pass loop
  that also runs every ``resync`` seconds;
- one worker task per Machine with work to do (booting, draining, destroying).

On exit every task is cancelled and awaited, so nothing keeps running. Hosts already booted are left
to the provider, which owns them (the sandbox tears its hosts down itself); Machines and their
finalizers stay in the API, as a stopped machine-api-controllers deployment would leave them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Self

from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Node

from wmco_sandbox.machineapi import cloud, crds, loop, machine, machineset, nodelink, resources


class MachineAPI:
    """The simulated OpenShift Machine API for one namespace (an async context manager).

    Args:
        client: An admin lightkube client; it stays the caller's to close.
        provider: Boots and destroys the simulated Windows hosts.
        namespace: The Machine API namespace (created if missing).
        resync: Seconds between passes when no watch event arrives.
    """

    def __init__(
        self,
        client: AsyncClient,
        provider: cloud.HostProvider,
        namespace: str = resources.DEFAULT_NAMESPACE,
        *,
        resync: float = 5.0,
    ) -> None:
        self.client = client
        self.provider = provider
        self.namespace = namespace
        self._resync = resync
        self._machines = machine.MachineController(client, namespace, provider)
        self._machinesets = machineset.MachineSetController(client, namespace)
        self._nodelink = nodelink.NodeLinkController(client, namespace)
        self._workers = loop.KeyedWorkers("machine", self._machines.reconcile)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def instances(self) -> Mapping[str, cloud.BootedHost]:
        """The hosts the simulated cloud runs, by Machine name."""
        return self._machines.instances

    async def __aenter__(self) -> Self:
        await crds.install_crds(self.client)
        await self._ensure_namespace()
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self) -> None:
        """Start the watches and controllers (the CRDs and namespace must exist)."""
        if self._tasks:
            raise RuntimeError("the Machine API is already running")
        wake_sets, wake_machines, wake_links = loop.Wakeup(), loop.Wakeup(), loop.Wakeup()
        # A Machine event enqueues that Machine only (a fresh watch starts with an ADDED event per
        # existing Machine, so a reconnection re-enqueues all); the pass over every Machine runs
        # on the resync timer only.
        ns = self.namespace
        coroutines = {
            "watch-machines": loop.watch_forever(
                self.client,
                resources.Machine,
                namespace=ns,
                wake=(wake_sets, wake_links),
                on_object=self._workers.enqueue,
            ),
            "watch-machinesets": loop.watch_forever(
                self.client, resources.MachineSet, namespace=ns, wake=(wake_sets,)
            ),
            "watch-nodes": loop.watch_forever(
                self.client, Node, namespace=None, wake=(wake_sets, wake_links)
            ),
            "machinesets": loop.run_passes(
                "machineset controller",
                self._machinesets.reconcile_namespace,
                wake_sets,
                self._resync,
            ),
            "nodelink": loop.run_passes(
                "nodelink controller", self._nodelink.link_all, wake_links, self._resync
            ),
            "machines": loop.run_passes(
                "machine controller", self._enqueue_machines, wake_machines, self._resync
            ),
        }
        self._tasks = [
            asyncio.create_task(coro, name=f"machineapi:{ns}:{what}")
            for what, coro in coroutines.items()
        ]

    async def close(self) -> None:
        """Stop every task and wait until they have all finished."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._workers.close()

    async def _enqueue_machines(self) -> None:
        for name in await self._machines.machine_names():
            self._workers.enqueue(name)

    async def _ensure_namespace(self) -> None:
        try:
            await self.client.create(Namespace(metadata=ObjectMeta(name=self.namespace)))
        except ApiError as err:
            if err.status.code != 409:
                raise
