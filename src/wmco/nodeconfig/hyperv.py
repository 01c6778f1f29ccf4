"""The ``hyperv`` step: does this host run Hyper-V isolated pods, and if not, why not.

With the ``hyperv`` setting ``off`` the step does nothing (no command is sent). Otherwise it asks
Server Manager for the ``Hyper-V`` role (``(Get-WindowsFeature -Name 'Hyper-V').InstallState``):

* ``Installed``: the node gets containerd's Hyper-V runtimes
  (:func:`wmco.cluster.runtimeclasses.hyperv_handlers`) and the ``hyperv=true`` label;
* otherwise, with ``on``: the node stays a process-isolation node and the outcome says why;
* otherwise, with ``install``: ``Install-WindowsFeature -Name 'Hyper-V'``, the reboot Windows asks
  for, and the question again. A host that cannot run Hyper-V (a VM without nested
  virtualisation: ``A prerequisite check for the Hyper-V feature failed. 1. Hyper-V cannot be
  installed: The processor does not have required virtualization capabilities.``) stays a
  process-isolation node, with Windows' own words in the outcome.

Nothing about Hyper-V stops a host from becoming a node: an unexpected answer or a failed
installation only makes it a process-isolation node (the host controllers put the reason in a
Warning Event on the Node). A node that could not run it is annotated ``hyperv-checked=<mode>``
so that it is not asked again on every reconcile, only when the setting changes
(:func:`settled`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Final

from lightkube.resources.core_v1 import Node

from wmco import names
from wmco.cluster import runtimeclasses
from wmco.nodeconfig import runner as runner_mod
from wmco.nodeconfig.instance import Inputs, Progress, Step
from wmco.nodeconfig.runner import Runner
from wmco.settings import HyperVMode
from wmco.windows import answers, commands

FEATURE: Final = "Hyper-V"
"""Server Manager's name of the Hyper-V role."""

SETTING_VARIABLE: Final = "WMCO_HYPERV"


@dataclasses.dataclass(frozen=True, slots=True)
class HyperV:
    """What the step found.

    Attributes:
        mode: The setting it ran under.
        handlers: containerd's Hyper-V runtimes for this host (empty: process isolation only).
        problem: Why a Hyper-V setting does not give this node Hyper-V isolation.
    """

    mode: HyperVMode
    handlers: tuple[str, ...] = ()
    problem: str | None = None

    @property
    def available(self) -> bool:
        """Whether the node runs Hyper-V isolated pods."""
        return bool(self.handlers)

    def metadata_patch(self) -> dict[str, Any]:
        """The Node labels and annotations that record the result (a merge patch)."""
        checked = (
            self.mode.value if self.mode is not HyperVMode.OFF and not self.available else None
        )
        return {
            "metadata": {
                "labels": {names.HYPERV_LABEL: names.TRUE if self.available else None},
                "annotations": {names.HYPERV_CHECKED_ANNOTATION: checked},
            }
        }


def settled(node: Node | None, mode: HyperVMode) -> bool:
    """Whether the node already reflects ``mode`` (no SSH needed for Hyper-V's sake).

    ``off``: the node has no ``hyperv`` label. ``on``/``install``: it has the label, or it was
    found unable under this very mode.
    """
    metadata = node.metadata if node is not None else None
    labels = (metadata.labels if metadata else None) or {}
    annotations = (metadata.annotations if metadata else None) or {}
    labelled = labels.get(names.HYPERV_LABEL) == names.TRUE
    if mode is HyperVMode.OFF:
        return not labelled
    return labelled or annotations.get(names.HYPERV_CHECKED_ANNOTATION) == mode.value


def merge_metadata(patch: dict[str, Any], hyperv: HyperV) -> dict[str, Any]:
    """``patch`` (a Node metadata merge patch) with the Hyper-V labels and annotations added."""
    extra = hyperv.metadata_patch()["metadata"]
    metadata = patch.setdefault("metadata", {})
    for part in ("labels", "annotations"):
        metadata.setdefault(part, {}).update(extra[part])
    return patch


async def _state(runner: Runner) -> answers.InstallState | str:
    """The role's InstallState, or a sentence saying why there is none."""
    result = await runner.run(commands.windows_feature_state(FEATURE), what="Hyper-V query")
    if result.exit_status != 0:
        reason = answers.error_message(result.stderr) or f"exit status {result.exit_status}"
        return f"Get-WindowsFeature {FEATURE} failed: {reason}"
    try:
        return answers.parse_install_state(result.stdout)
    except answers.CommandOutputError as exc:
        return str(exc)


def _unavailable(mode: HyperVMode, reason: str) -> HyperV:
    return HyperV(
        mode,
        problem=(f"no Hyper-V isolation on this node: {reason}; it stays a process-isolation node"),
    )


async def ensure_hyperv(
    runner: Runner,
    inputs: Inputs,
    build: int,
    progress: Progress,
    before_reboot: Callable[[], Awaitable[None]] | None = None,
) -> HyperV:
    """Find out (and with ``install`` make sure) whether the host runs Hyper-V isolation.

    Args:
        runner: The host.
        inputs: The settings (``hyperv``) and SSH deadlines.
        build: The host's Windows build (which older builds it may run).
        progress: Progress callback.
        before_reboot: Runs before the restart the installation needs (a node that already
            serves pods is drained there).

    Returns:
        What the node offers; never an error for Hyper-V's own reasons.

    Raises:
        ConfigurationError: The host did not come back from the reboot the installation needs.
    """
    mode = inputs.settings.hyperv
    if mode is HyperVMode.OFF:
        return HyperV(mode)
    runner.step = Step.HYPERV
    state = await _state(runner)
    if not isinstance(state, answers.InstallState):
        return _unavailable(mode, state)
    if state is not answers.InstallState.INSTALLED:
        if mode is HyperVMode.ON:
            return _unavailable(
                mode,
                f"the {FEATURE} role is {state}, not Installed; install it (Install-WindowsFeature "
                f"-Name {FEATURE}, then restart) or set {SETTING_VARIABLE}=install",
            )
        if state is not answers.InstallState.INSTALL_PENDING:
            installed = await _install(runner)
            if installed is not None:
                return _unavailable(mode, installed)
        settings_ = inputs.settings
        await runner_mod.reboot(
            runner,
            settings_.ssh_boot_deadline,
            settings_.ssh_command_timeout,
            before=before_reboot,
        )
        state = await _state(runner)
        if state is not answers.InstallState.INSTALLED:
            return _unavailable(mode, f"the {FEATURE} role is {state} after a restart")
        await progress(Step.HYPERV, f"{FEATURE} role installed (rebooted)")
    handlers = runtimeclasses.hyperv_handlers(build)
    await progress(Step.HYPERV, f"Hyper-V isolation: {', '.join(handlers)}")
    return HyperV(mode, handlers=handlers)


async def _install(runner: Runner) -> str | None:
    """Install the role; ``None`` when Windows took it, else Windows' reason."""
    async with runner.slot.released():  # the role installs while the operator only waits
        result = await runner.run(commands.install_windows_feature(FEATURE), what="Hyper-V install")
    try:
        row = answers.parse_install_result(result.stdout)
    except answers.CommandOutputError:
        row = None
    if row is not None and row.success and result.exit_status == 0:
        return None
    reason = answers.error_message(result.stderr) or (
        f"Install-WindowsFeature answered {row.exit_code}" if row else "no result"
    )
    return f"{FEATURE} cannot be installed: {reason}"
