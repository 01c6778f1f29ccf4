"""Prometheus metrics of the controller runtime, in a registry of their own.

A private :class:`prometheus_client.CollectorRegistry` (not the process-global one) keeps two
managers in one process (tests, the sandbox) from colliding over metric names, and lets
``/metrics`` expose exactly what the operator owns. Names follow controller-runtime's
(``controller_runtime_reconcile_total``, ``workqueue_depth``...) so existing dashboards apply.

The operator's own (``wmco_*``, issue 10 §5): Windows hosts by phase (:class:`HostPhases`), the
duration of each configure step and the SSH errors by kind (reported by the flows through
:class:`Metrics` as their :class:`~wmco.nodeconfig.instance.FlowObserver`), and the CSR
approvals and refusals by reason. Labels take only bounded values (phases, step names, error
kinds, reason codes): never host addresses or node names.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import prometheus_client
from prometheus_client import exposition

STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""Seconds: a step runs from a few ms (a hash query) to minutes (a reboot, waiting for Ready)."""


class HostPhase(enum.StrEnum):
    """Where a Windows host the operator manages stands."""

    CONFIGURING = "configuring"
    READY = "ready"
    FAILED = "failed"


class HostPhases:
    """The phase of every managed host by address, exported as counts per phase."""

    def __init__(self, gauge: prometheus_client.Gauge) -> None:
        self._gauge = gauge
        self._phases: dict[str, HostPhase] = {}
        self._publish()

    def set(self, address: str, phase: HostPhase) -> None:
        """Record the phase of one host."""
        self._phases[address] = phase
        self._publish()

    def forget(self, address: str) -> None:
        """The host is no longer managed (deconfigured, removed)."""
        if self._phases.pop(address, None) is not None:
            self._publish()

    def counts(self) -> Mapping[HostPhase, int]:
        """Hosts per phase (every phase present, zero included)."""
        counts = dict.fromkeys(HostPhase, 0)
        for phase in self._phases.values():
            counts[phase] += 1
        return counts

    def _publish(self) -> None:
        for phase, count in self.counts().items():
            self._gauge.labels(phase=phase.value).set(count)


class Metrics:
    """The runtime's metrics; one instance per :class:`wmco.runtime.manager.Manager`."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        self.reconcile_total = prometheus_client.Counter(
            "controller_runtime_reconcile_total",
            "Reconciliations per controller and result (success, error, requeue, requeue_after).",
            ["controller", "result"],
            registry=self.registry,
        )
        self.reconcile_errors = prometheus_client.Counter(
            "controller_runtime_reconcile_errors_total",
            "Reconciliations that raised, per controller.",
            ["controller"],
            registry=self.registry,
        )
        self.reconcile_duration = prometheus_client.Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Duration of reconciliations per controller.",
            ["controller"],
            registry=self.registry,
        )
        self.queue_depth = prometheus_client.Gauge(
            "workqueue_depth", "Keys waiting in the work queue.", ["name"], registry=self.registry
        )
        self.queue_adds = prometheus_client.Counter(
            "workqueue_adds_total",
            "Keys added to the work queue.",
            ["name"],
            registry=self.registry,
        )
        self.queue_retries = prometheus_client.Counter(
            "workqueue_retries_total",
            "Rate-limited re-adds (retries after failures).",
            ["name"],
            registry=self.registry,
        )
        self.informer_relists = prometheus_client.Counter(
            "informer_relists_total",
            "Full lists by informers (initial and after 410 Gone), per resource.",
            ["resource"],
            registry=self.registry,
        )
        self.leader = prometheus_client.Gauge(
            "leader_election_master_status",
            "1 while this process holds the leader Lease.",
            ["name"],
            registry=self.registry,
        )
        self.hosts = HostPhases(
            prometheus_client.Gauge(
                "wmco_hosts",
                "Windows hosts managed by the operator, by phase (configuring, ready, failed).",
                ["phase"],
                registry=self.registry,
            )
        )
        self.configure_step_duration = prometheus_client.Histogram(
            "wmco_configure_step_duration_seconds",
            "Time each step of configuring a Windows host took (failed attempts included).",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.ssh_errors = prometheus_client.Counter(
            "wmco_ssh_errors_total",
            "SSH errors met while configuring or removing hosts, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.csr_approvals = prometheus_client.Counter(
            "wmco_csr_approvals_total",
            "Kubelet CSRs the operator approved, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.csr_refusals = prometheus_client.Counter(
            "wmco_csr_refusals_total",
            "Kubelet CSRs of the operator's hosts it denied, by reason.",
            ["reason"],
            registry=self.registry,
        )

    def step_finished(self, step: str, seconds: float) -> None:
        """Observe one configure step's duration (the flows' FlowObserver)."""
        self.configure_step_duration.labels(step=str(step)).observe(max(0.0, seconds))

    def ssh_error(self, kind: str) -> None:
        """Count one SSH error (the flows' FlowObserver)."""
        self.ssh_errors.labels(kind=str(kind)).inc()

    def csr_decided(self, *, approved: bool, reason: str) -> None:
        """Count one CSR the operator approved or denied."""
        counter = self.csr_approvals if approved else self.csr_refusals
        counter.labels(reason=reason).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for ``/metrics``."""
        return prometheus_client.generate_latest(self.registry), exposition.CONTENT_TYPE_LATEST
