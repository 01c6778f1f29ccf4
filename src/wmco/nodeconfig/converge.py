"""Look at a host in one exec, then bring its files and services to the desired state in one more.

The configure flow's two halves of every pass over a host (issue 12 §3):

* :func:`look`: ONE read-only command (:func:`wmco.windows.commands.drift_probe`, the drift
  probe's own) answers the host name, the OS build, the Containers feature, the kubelet's client
  certificate (only its validity is kept), every managed service's definition and state, and
  the digest of every file the operator may write;
* :func:`converge_services`: from that answer, what differs; the services whose files or
  definitions change are stopped first (one ``sc.exe stop`` and a wait each: nothing on a fresh
  host); then the files that differ go as ``.tar.gz`` archives over the host's one SFTP session
  (:func:`wmco.windows.transfer.stage`) and ONE script (:mod:`wmco.windows.batch`) makes the
  directories, unpacks, checks every digest, and creates / changes / starts the services.

The order on the host is still the rule of contract §5: compute what differs, stop exactly the
services whose held files or definitions change, write, then create / change / start.
"""

from __future__ import annotations

import dataclasses

from lightkube.resources.core_v1 import Node

from wmco.nodeconfig import hostfiles, node, servicectl
from wmco.nodeconfig.instance import Inputs, Progress, Step
from wmco.nodeconfig.runner import Runner, parsed
from wmco.windows import batch, commands, layout, planner, probeanswers, services, transfer


def candidate_paths(inputs: Inputs) -> tuple[str, ...]:
    """Every file a pass may write on this host: the payload's, then the generated ones."""
    return (*(item.destination for item in inputs.payload.files), *hostfiles.GENERATED_PATHS)


async def look(runner: Runner, inputs: Inputs, existing: Node | None) -> probeanswers.ProbeReport:
    """ONE read-only exec answering what this pass decides from (see the module docstring).

    The kubelet's client certificate is asked only of a host whose Node is Ready
    (``configure.needs_bootstrap_token``).

    Raises:
        ConfigurationError: The host's answer is not of the expected shape or was cut off.
    """
    ready = existing is not None and node.node_is_ready(existing)
    command = commands.drift_probe(
        services.ALL_MANAGED_SERVICES,
        candidate_paths(inputs),
        hns=False,
        identity=True,
        certificate=layout.KUBELET_CLIENT_CERT if ready else None,
    )
    result = await runner.check(command, "look at the host")
    return parsed(runner, probeanswers.parse_probe, result)


@dataclasses.dataclass(slots=True)
class Tally:
    """Counts for the flow's :class:`~wmco.nodeconfig.instance.Outcome`."""

    written: int = 0
    unchanged: int = 0
    stopped: list[str] = dataclasses.field(default_factory=list)
    started: set[str] = dataclasses.field(default_factory=set)
    actions: int = 0

    def add(self, plan: planner.ServicePlan, changed: int, total: int) -> None:
        """Count one converged pass."""
        self.written += changed
        self.unchanged += total - changed
        self.actions += len(plan)
        self.stopped += [name for name in plan.stopped if name not in self.stopped]
        self.started |= {action.service for action in plan.start}

    @property
    def restarted(self) -> tuple[str, ...]:
        """Services that were running, were stopped and were started again."""
        return tuple(name for name in self.stopped if name in self.started)


async def converge_services(
    runner: Runner,
    desired: tuple[services.ServiceSpec, ...],
    files: tuple[transfer.Content, ...],
    report: probeanswers.ProbeReport,
    *,
    progress: Progress,
    remove: tuple[str, ...] = (),
    deferred: tuple[str, ...] = (),
    observe: tuple[str, ...] = services.ALL_MANAGED_SERVICES,
    directories: tuple[str, ...] = (),
    step: Step | None = None,
) -> tuple[planner.ServicePlan, int]:
    """Compare with ``report``, stop what must stop, write what differs, create / change / start.

    Args:
        runner: The host.
        desired: The declared services this pass may create, change or start.
        files: The files this pass owns.
        report: The host's answer to :func:`look` (or to a look of the network steps).
        progress: Progress callback.
        remove: Managed services that must not exist.
        deferred: Declared services whose turn comes later (stopped if needed, never started).
        observe: The services of ``report`` this pass decides about.
        directories: Directories the script makes before unpacking (when it runs at all).
        step: Report every stage as this step (default: changes, stop-services, files,
            services).

    Returns:
        The plan that ran and how many files were written.

    Raises:
        ConfigurationError: A stop, an upload or a stage of the script failed.
    """
    runner.step = step or Step.CHANGES
    changed = transfer.differing_in(files, report.hashes)
    observed = {name: report.services.get(name, planner.ObservedService(name)) for name in observe}
    plan = planner.plan_services(
        desired,
        observed,
        changed_files=[item.destination for item in changed],
        remove=remove,
        deferred=deferred,
    )
    await progress(
        runner.step,
        f"{len(changed)} of {len(files)} files differ; stopping "
        f"{', '.join(plan.stopped) or 'nothing'}",
    )
    runner.step = step or Step.STOP_SERVICES
    await servicectl.apply(runner, plan.stop)
    runner.step = step or Step.FILES
    try:
        staged = await transfer.stage(runner, changed)
    except (ValueError, OSError) as exc:
        raise runner.fail(f"cannot stage the files: {exc}") from None
    runner.step = step or Step.SERVICES
    stages = (*staged, *servicectl.stages((*plan.apply, *plan.start)))
    if stages:
        made = (
            (batch.Stage("creation of directories", (commands.make_directories(directories),)),)
            if directories
            else ()
        )
        await runner.run_stages((*made, *stages), "writing files and services")
    return plan, len(changed)
