"""The kubelet's view of its container runtime: RuntimeReady and NetworkReady from the CRI.

Every ``runtime_check_interval`` the kubelet asks containerd's CRI ``Status`` (a real kubelet's
``updateRuntimeUp`` runs every 5 s). The answer decides the node's Ready condition and which pods
may start (``kubelet-windows.md`` §3.2, ``windows-networking.md`` §0, §4):

* no CRI (the containerd service is not running): ``container runtime is down``;
* RuntimeReady false: ``container runtime not ready: RuntimeReady=false reason:<r> message:<m>``;
* NetworkReady false: ``container runtime network not ready: NetworkReady=false
  reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not
  initialized``. Only hostNetwork pods start then; others get the ``NetworkNotReady`` event.

The same check asks the CRI ``Version`` (``nodeInfo.containerRuntimeVersion`` is
``containerd://<version without the v>``, from the running containerd, not from configuration).

A real kubelet calls the runtime down only after the CRI has failed to answer for 2 minutes
(``baseRuntimeSyncThreshold``); the simulation says so at the next check (an approximation).
"""

from __future__ import annotations

from dataclasses import dataclass

from wmco_sandbox.winhost.core.processes import KubeletEnvironment

__all__ = ["NETWORK_NOT_READY", "RUNTIME_DOWN", "RuntimeHealth", "check"]

RUNTIME_DOWN = "container runtime is down"
NETWORK_NOT_READY = "network is not ready"


@dataclass(frozen=True, slots=True)
class RuntimeHealth:
    """The runtime as the kubelet last saw it.

    Attributes:
        runtime_error: Why the runtime is not ready, or ``None``.
        network_error: Why the pod network is not ready, or ``None``.
        runtime_version: What the CRI ``Version`` call answered (``None`` when no CRI answers).
    """

    runtime_error: str | None
    network_error: str | None
    runtime_version: str | None = None

    @property
    def runtime_up(self) -> bool:
        """Whether the CRI answers and reports RuntimeReady."""
        return self.runtime_error is None

    @property
    def network_ready(self) -> bool:
        """Whether non-hostNetwork pods may start."""
        return self.runtime_up and self.network_error is None

    @property
    def node_error(self) -> str | None:
        """The Ready condition's message when not ready (an aggregate of the errors)."""
        errors = [e for e in (self.runtime_error, self.network_error) if e]
        if not errors:
            return None
        return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def check(env: KubeletEnvironment) -> RuntimeHealth:
    """Ask the CRI for its status now."""
    cri = env.cri()
    if cri is None:
        return RuntimeHealth(RUNTIME_DOWN, None)
    status, version = cri.status(), cri.runtime_version()
    if not status.runtime_ready:
        return RuntimeHealth(
            f"container runtime not ready: RuntimeReady=false reason:{status.network_reason} "
            f"message:{status.network_message}",
            None,
            version,
        )
    if not status.network_ready:
        return RuntimeHealth(
            None,
            "container runtime network not ready: NetworkReady=false "
            f"reason:{status.network_reason} message:{status.network_message}",
            version,
        )
    return RuntimeHealth(None, None, version)
