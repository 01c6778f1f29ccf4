"""What the parts of the simulated kubelet share: options, timings, the klog, the node's state.

The kubelet is split by concern like the real one's packages: the certificate managers
(``kubelet_certmanager``), the heartbeats (``kubelet_heartbeat``: Lease, registration, node
status), the pod worker (``kubelet_pods``) and the process shell (``kubelet``). They all get one
:class:`Kubelet` context: the host environment, the resolved options, the :class:`Timings`, a
klog-style logger writing to the host's kubelet log, and the small mutable :class:`NodeState`
that the loops hand to each other (the Node's UID for the Lease's owner reference, the Node's
labels for pod admission, whether containerd runs). The two control-flow exceptions live here
too: :class:`KubeletExit` ends the process (klog ``Fatal``), :class:`Rotated` restarts every loop
with a renewed client certificate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from lightkube import ApiError

from wmco_sandbox.winhost.core import klog
from wmco_sandbox.winhost.core.processes import KubeletEnvironment
from wmco_sandbox.winhost.kubelet import options as kubelet_options
from wmco_sandbox.winhost.kubelet import pki as kubelet_pki

__all__ = [
    "Kubelet",
    "KubeletExit",
    "NodeState",
    "Rotated",
    "Timings",
    "cert_backoff",
    "describe",
    "go_duration",
    "utcnow",
]


@dataclass(frozen=True, slots=True)
class Timings:
    """How fast the simulated kubelet acts (real defaults; tests shorten them).

    Attributes:
        lease_renew_interval: Seconds between Lease renewals.
        status_interval: Seconds between node status computations.
        runtime_check_interval: Seconds between checks of the containerd service.
        client_cert_timeout: Exit after this long without a client certificate.
        backoff_base: First retry delay of the certificate managers.
        client_rotation_after: Fixed delay before rotating the client certificate, or ``None``
            for a random point in 70-90 % of its lifetime.
        pod_retry_interval: Delay before a pod that could not start is synced again (the pod
            workers' 10 s back-off); a change of the runtime's readiness retries at once.
        bootstrap_delay: Seconds from the start of the TLS bootstrap to the client CSR (key
            generation, certificate manager start; a host profile's ``kubelet_bootstrap``).
        registration_delay: Seconds before the Node is registered (a host profile's
            ``kubelet_registration``).
    """

    lease_renew_interval: float = 10.0
    status_interval: float = 10.0
    runtime_check_interval: float = 1.0
    client_cert_timeout: float = 300.0
    backoff_base: float = 2.0
    client_rotation_after: float | None = None
    pod_retry_interval: float = 10.0
    bootstrap_delay: float = 0.0
    registration_delay: float = 0.0


class KubeletExit(Exception):
    """The kubelet process ends (klog ``Fatal`` / ``os.Exit``)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Rotated(Exception):
    """The client certificate was renewed: every loop restarts with the new identity."""

    def __init__(self, bundle: kubelet_pki.CertBundle) -> None:
        super().__init__("client certificate rotated")
        self.bundle = bundle


def utcnow() -> dt.datetime:
    """Return the current time, UTC."""
    return dt.datetime.now(dt.UTC)


def go_duration(seconds: float) -> str:
    """Format seconds like Go's ``time.Duration.String`` (``300`` → ``5m0s``)."""
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    text = f"{secs + (seconds - whole):g}s"
    return f"{minutes}m{text}" if minutes else text


def cert_backoff(base: float, attempt: int) -> float:
    """Certificate manager retry delay: base, x2, 10 % jitter, 5 steps; then 16 x base."""
    delay = base * 2.0 ** min(attempt, 4)
    return delay * (1 + 0.1 * random.random())


def describe(err: BaseException) -> str:
    """Render an error as the kubelet would log it."""
    if isinstance(err, ApiError):
        status = err.status
        return f"{status.message or status.reason} (HTTP {status.code})"
    return str(err) or type(err).__name__


@dataclass(slots=True)
class NodeState:
    """What the loops learn and hand to each other while the kubelet runs.

    Attributes:
        uid: The Node's UID once registered (for the Lease's owner reference).
        labels: The Node's labels as last seen (for pod admission).
        runtime_up: Whether the CRI answered with RuntimeReady at the last check.
        network_ready: Whether it also reported NetworkReady.
        runtime_changed: Set when ``runtime_up`` or ``network_ready`` changes.
        registered: Set once the Node is registered.
        pods: The pods bound to the node, by ``(namespace, name)`` (API dicts), as the pod
            worker last saw them (the kubelet API looks pods up here).
    """

    uid: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    runtime_up: bool | None = None
    network_ready: bool | None = None
    runtime_changed: asyncio.Event = field(default_factory=asyncio.Event)
    registered: asyncio.Event = field(default_factory=asyncio.Event)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class Kubelet:
    """The context every part of a running simulated kubelet shares.

    Attributes:
        env: The host.
        opts: The resolved options.
        timings: How fast to act.
        log: The host-side kubelet log.
        state: The node's state, shared by the loops.
    """

    env: KubeletEnvironment
    opts: kubelet_options.KubeletOptions
    timings: Timings
    log: klog.Klog
    state: NodeState = field(default_factory=NodeState)
