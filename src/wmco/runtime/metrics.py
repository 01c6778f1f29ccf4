"""Prometheus metrics of the controller runtime, in a registry of their own.

A private :class:`prometheus_client.CollectorRegistry` (not the process-global one) keeps two
managers in one process (tests, the sandbox) from colliding over metric names, and lets
``/metrics`` expose exactly what the operator owns. Names follow controller-runtime's
(``controller_runtime_reconcile_total``, ``workqueue_depth``...) so existing dashboards apply.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import exposition


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

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for ``/metrics``."""
        return prometheus_client.generate_latest(self.registry), exposition.CONTENT_TYPE_LATEST
