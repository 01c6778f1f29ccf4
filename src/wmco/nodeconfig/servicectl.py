"""The thin shell around the service planner: ask the host about services, run the plan's steps.

:func:`observe_services` turns ``sc.exe qc`` / ``sc.exe query`` into
:class:`wmco.windows.planner.ObservedService` records; :func:`apply` runs planned steps,
tolerating the answers that mean "already so" (1056 already running, 1062 not started, 1073
exists, 1060 / 1072 already gone), and waits after each stop until the service is STOPPED: only
then has Windows released its files.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence

from wmco.nodeconfig.runner import Runner, parsed
from wmco.windows import answers, commands, planner, services

_TOLERATED: dict[planner.ActionKind, tuple[int, ...]] = {
    planner.ActionKind.START: (0, answers.ScExitCode.SERVICE_ALREADY_RUNNING),
    planner.ActionKind.STOP: (0, answers.ScExitCode.SERVICE_NOT_ACTIVE),
    planner.ActionKind.DELETE: (
        0,
        answers.ScExitCode.SERVICE_DOES_NOT_EXIST,
        answers.ScExitCode.SERVICE_MARKED_FOR_DELETE,
    ),
    planner.ActionKind.CREATE: (0, answers.ScExitCode.SERVICE_EXISTS),
}

STOP_TIMEOUT = 120.0
"""Seconds a service may take to reach STOPPED after ``sc.exe stop``."""


async def observe_service(runner: Runner, name: str) -> planner.ObservedService:
    """Ask the host about one service."""
    qc = await runner.check(
        commands.service_exists(name),
        f"query of service {name}",
        ok=(0, answers.ScExitCode.SERVICE_DOES_NOT_EXIST),
    )
    if qc.exit_status == answers.ScExitCode.SERVICE_DOES_NOT_EXIST:
        return planner.ObservedService(name=name)
    query = await runner.check(commands.service_state(name), f"state of service {name}")
    return planner.ObservedService(
        name=name,
        config=parsed(runner, answers.parse_sc_qc, qc),
        state=parsed(runner, answers.parse_sc_query, query).state,
    )


async def observe_services(
    runner: Runner, names: Iterable[str] = services.ALL_MANAGED_SERVICES
) -> dict[str, planner.ObservedService]:
    """Ask the host about every service the operator may manage."""
    return {name: await observe_service(runner, name) for name in names}


async def wait_stopped(runner: Runner, name: str, timeout: float = STOP_TIMEOUT) -> None:
    """Poll until the service is STOPPED (or gone).

    Raises:
        ConfigurationError: Still not stopped after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        query = await runner.check(
            commands.service_state(name),
            f"state of service {name}",
            ok=(0, answers.ScExitCode.SERVICE_DOES_NOT_EXIST),
        )
        if query.exit_status != 0:
            return
        if parsed(runner, answers.parse_sc_query, query).state is answers.ServiceState.STOPPED:
            return
        if time.monotonic() > deadline:
            raise runner.fail(f"service {name} did not stop in {timeout:.0f}s")
        await asyncio.sleep(0.5)


async def apply(runner: Runner, actions: Sequence[planner.ServiceAction]) -> None:
    """Run planned steps in order; a stop waits until the service is STOPPED.

    Raises:
        ConfigurationError: A step failed with an answer other than "already so".
    """
    for action in actions:
        await runner.check(
            action.command(),
            f"{action.kind} of service {action.service}",
            ok=_TOLERATED.get(action.kind, (0,)),
        )
        if action.kind is planner.ActionKind.STOP:
            await wait_stopped(runner, action.service)
