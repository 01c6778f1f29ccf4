"""Simulated hosts in their own processes, so the operator's process can be measured alone.

A benchmark that runs the operator and hundreds of simulated hosts in one Python process measures
one saturated event loop, not the operator. :class:`ProcessFleet` starts worker processes
(``python -m wmco_sandbox.fleetproc``), each holding a share of the hosts, and talks to them with
JSON lines over their standard input and output. It is a Machine API host provider
(:class:`wmco_sandbox.machineapi.cloud.HostProvider`: ``boot``, ``destroy``) and boots listed
hosts too (``boot_listed``); ``traffic`` gathers what every host's sshd served (exec requests,
SFTP sessions, bytes), the figures a benchmark reports per host.

The parent allocates every host's loopback address, so hosts of different workers never collide.
Requests carry an ``id`` and are answered as soon as they are done, in any order, so a slow boot
never holds another host's request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import sys
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from wmco_sandbox.machineapi import cloud as machine_cloud
from wmco_sandbox.winhost import kubelet as sim_kubelet
from wmco_sandbox.winhost.core import profile as host_profile
from wmco_sandbox.winhost.host import WindowsHost, allocate_address

__all__ = ["FleetError", "ProcessFleet", "WorkerOptions"]


class FleetError(RuntimeError):
    """A worker process failed or answered with an error."""


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How every host of the fleet is built.

    Attributes:
        ssh_port: The hosts' sshd port.
        profile: The host profile's name (``fast``, ``realistic``).
        lease_renew: Seconds between the simulated kubelets' Lease renewals.
        status_interval: Seconds between the kubelets' node status updates.
        reboot_seconds: How long a reboot keeps sshd closed (``None``: the profile's).
        sink_threshold: Files above this size keep only their size and hash.
    """

    ssh_port: int
    profile: str = "fast"
    lease_renew: float = 10.0
    status_interval: float = 10.0
    reboot_seconds: float | None = None
    sink_threshold: int = 64 * 1024

    def argv(self) -> list[str]:
        """The worker's command line."""
        args = [
            sys.executable,
            "-m",
            "wmco_sandbox.fleetproc",
            f"--ssh-port={self.ssh_port}",
            f"--profile={self.profile}",
            f"--lease-renew={self.lease_renew}",
            f"--status-interval={self.status_interval}",
            f"--sink-threshold={self.sink_threshold}",
        ]
        if self.reboot_seconds is not None:
            args.append(f"--reboot-seconds={self.reboot_seconds}")
        return args


class _Worker:
    """One worker process and its pending requests."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.hosts: set[str] = set()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            answer = json.loads(line)
            future = self._pending.pop(int(answer["id"]), None)
            if future is not None and not future.done():
                future.set_result(answer)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(FleetError(f"worker {self.proc.pid} exited"))

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": request_id, "op": op, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        answer = await future
        if "error" in answer:
            raise FleetError(f"worker {self.proc.pid}: {op}: {answer['error']}")
        return answer

    async def close(self) -> None:
        with contextlib.suppress(FleetError, ConnectionError):
            await asyncio.wait_for(self.call("stop"), 60)
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class ProcessFleet:
    """Simulated Windows hosts spread over ``workers`` processes.

    Args:
        workers: How many worker processes.
        options: How the hosts are built.
        network: The second octet of the hosts' loopback addresses (``127.<network>.x.y``), so
            a fleet keeps clear of hosts other processes of the machine run (``0``: the
            in-process allocator's addresses).
    """

    def __init__(self, workers: int, options: WorkerOptions, *, network: int = 0) -> None:
        if workers < 1:
            raise ValueError("a fleet needs at least one worker process")
        if not 0 <= network <= 255:
            raise ValueError("network is the second octet of a loopback address: 0..255")
        self.options = options
        self._network = network
        self._addresses = itertools.count(0)
        self._count = workers
        self._workers: list[_Worker] = []
        self._placement: dict[str, _Worker] = {}
        self._next = itertools.count()

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (for CPU and memory figures)."""
        return [worker.proc.pid for worker in self._workers]

    async def __aenter__(self) -> Self:
        for _ in range(self._count):
            proc = await asyncio.create_subprocess_exec(
                *self.options.argv(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                limit=16 * 1024 * 1024,
            )
            self._workers.append(_Worker(proc))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.gather(*(worker.close() for worker in self._workers))
        self._workers.clear()

    def _address(self) -> str:
        if self._network == 0:
            return allocate_address()
        n = next(self._addresses)
        return f"127.{self._network}.{n // 250}.{2 + n % 250}"

    def _place(self, name: str) -> _Worker:
        worker = min(self._workers, key=lambda w: (len(w.hosts), next(self._next)))
        worker.hosts.add(name)
        self._placement[name] = worker
        return worker

    async def boot_listed(self, name: str, *, user_data: str, year: str = "2022") -> str:
        """Boot a host the user brings; return its address."""
        worker = self._place(name)
        answer = await worker.call(
            "boot", name=name, address=self._address(), user_data=user_data, year=year
        )
        return str(answer["address"])

    async def boot(
        self, name: str, *, user_data: str, windows_build: str
    ) -> machine_cloud.BootedHost:
        """Boot the host of Machine ``name`` (the Machine API calls this)."""
        worker = self._place(name)
        answer = await worker.call(
            "boot",
            name=name,
            address=self._address(),
            user_data=user_data,
            year=machine_cloud.WINDOWS_YEARS.get(windows_build, "2022"),
            hostname=name.lower(),
        )
        return machine_cloud.BootedHost(address=str(answer["address"]), instance_id=name)

    async def destroy(self, name: str) -> None:
        """Destroy the host of Machine ``name``; nothing happens if it is already gone."""
        worker = self._placement.pop(name, None)
        if worker is not None:
            worker.hosts.discard(name)
            await worker.call("destroy", name=name)

    async def traffic(self) -> dict[str, dict[str, int]]:
        """What each host's sshd served, by host name."""
        answers = await asyncio.gather(*(worker.call("traffic") for worker in self._workers))
        result: dict[str, dict[str, int]] = {}
        for answer in answers:
            result.update(answer["traffic"])
        return result


# ------------------------------------------------------------------------------- the worker


class _FleetServer:
    """The worker side: the hosts of this process and the requests that act on them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.profile = host_profile.named(args.profile)
        self.hosts: dict[str, WindowsHost] = {}
        self.kubelets = sim_kubelet.factory_with(
            lease_renew_interval=args.lease_renew,
            status_interval=args.status_interval,
            bootstrap_delay=self.profile.kubelet_bootstrap,
            registration_delay=self.profile.kubelet_registration,
        )
        self.out = sys.stdout.buffer

    def answer(self, request_id: object, **fields: Any) -> None:
        self.out.write(json.dumps({"id": request_id, **fields}).encode() + b"\n")
        self.out.flush()

    async def handle(self, request: dict[str, Any]) -> bool:
        """Carry out one request; ``False`` after ``stop``."""
        op = request.get("op")
        try:
            if op == "boot":
                host = WindowsHost(
                    address=request["address"],
                    hostname=request.get("hostname"),
                    port=self.args.ssh_port,
                    image=request.get("year", "2022"),
                    kubelet_factory=self.kubelets,
                    sink_threshold=self.args.sink_threshold,
                    profile=self.profile,
                )
                if self.args.reboot_seconds is not None:
                    host.faults.reboot_unreachable = self.args.reboot_seconds
                self.hosts[request["name"]] = host
                await host.boot(request["user_data"])
                self.answer(request["id"], address=host.address, hostname=host.facts.hostname)
            elif op == "destroy":
                gone = self.hosts.pop(request["name"], None)
                if gone is not None:
                    await gone.stop()
                self.answer(request["id"])
            elif op == "traffic":
                self.answer(
                    request["id"],
                    traffic={
                        name: dataclasses.asdict(host.traffic) for name, host in self.hosts.items()
                    },
                )
            elif op == "stop":
                await asyncio.gather(*(h.stop() for h in self.hosts.values()))
                self.hosts.clear()
                self.answer(request["id"])
                return False
            else:
                self.answer(request.get("id"), error=f"unknown op {op!r}")
        except Exception as exc:  # an answer, never a dead worker
            self.answer(request.get("id"), error=f"{type(exc).__name__}: {exc}")
        return True


async def _serve(args: argparse.Namespace) -> None:
    server = _FleetServer(args)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[bool]] = set()
    stopping = False
    async for line in reader:
        request = json.loads(line)
        if request.get("op") == "stop":
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.handle(request)
            stopping = True
            break
        task = asyncio.create_task(server.handle(request))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if not stopping:  # the parent went away: leave nothing listening
        await asyncio.gather(*(h.stop() for h in server.hosts.values()), return_exceptions=True)


def _parse(argv: Iterable[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m wmco_sandbox.fleetproc")
    parser.add_argument("--ssh-port", type=int, required=True)
    parser.add_argument("--profile", default="fast", choices=sorted(host_profile.PROFILES))
    parser.add_argument("--lease-renew", type=float, default=10.0)
    parser.add_argument("--status-interval", type=float, default=10.0)
    parser.add_argument("--reboot-seconds", type=float, default=None)
    parser.add_argument("--sink-threshold", type=int, default=64 * 1024)
    return parser.parse_args(list(argv))


def main(argv: Iterable[str] | None = None) -> None:
    """Run one worker until the parent says ``stop`` or closes its standard input."""
    asyncio.run(_serve(_parse(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
