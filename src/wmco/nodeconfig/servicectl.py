"""The thin shell around the service planner: run the plan's steps.

What the host's services are comes from one look (``commands.drift_probe``, parsed into
:class:`wmco.windows.planner.ObservedService` records). :func:`stages` makes planned steps the
stages of one script (:mod:`wmco.windows.batch`); :func:`apply` runs steps one exec each. Both
tolerate the answers that mean "already so" (1056 already running, 1062 not started, 1073
exists, 1060 / 1072 already gone); :func:`apply` waits after each stop until the service is
STOPPED: only then has Windows released its files.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from wmco.nodeconfig.runner import Runner, parsed
from wmco.windows import answers, batch, commands, planner

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


def stages(actions: Sequence[planner.ServiceAction]) -> tuple[batch.Stage, ...]:
    """Planned steps as stages of one script, each tolerating its "already so" answers.

    A stop is not among them: it is followed by a wait until the service is STOPPED
    (:func:`apply`), which a script cannot do without a loop.

    Raises:
        ValueError: A step is a stop.
    """
    found: list[batch.Stage] = []
    for action in actions:
        if action.kind is planner.ActionKind.STOP:
            raise ValueError(f"the stop of {action.service} cannot be a stage of a script")
        found.append(
            batch.Stage(
                f"{action.kind} of service {action.service}",
                (action.command(bare=True),),
                ok=_TOLERATED.get(action.kind, (0,)),
            )
        )
    return tuple(found)


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
