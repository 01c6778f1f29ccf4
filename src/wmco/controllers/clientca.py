"""Kubelet client CA: say which bundle the Windows kubelets trust, and say so loudly when it is bad.

The host controllers read the bundle themselves (:meth:`wmco.controllers.hosts.Hosts.client_ca`)
and re-queue their hosts when it changes. This controller only reports: a log line each time the
chosen bundle changes, and, when the source ConfigMap is unusable (no such key, not PEM
certificates), a Warning Event on that ConfigMap (reason ``KubeletClientCAInvalid``) with what to
fix, plus a log line. Nothing here raises on bad input.
"""

from __future__ import annotations

import logging
from typing import Any

from lightkube.resources.core_v1 import ConfigMap

from wmco import kube, names, settings
from wmco.cluster import clientca
from wmco.controllers import hosts as hosts_mod
from wmco.runtime import controller as controller_mod
from wmco.runtime import manager as manager_mod

log = logging.getLogger(__name__)

KEY = "kubelet-client-ca"
"""The one queue key: the decision is about all sources at once."""


class ClientCaReporter:
    """Reconciles :data:`KEY`: logs the chosen bundle, reports an unusable one."""

    def __init__(self, hosts: hosts_mod.Hosts) -> None:
        self.hosts = hosts
        self._last: str | None = None

    def _configmap(self, source: settings.ConfigMapKey) -> ConfigMap | None:
        for informer in self.hosts.ca_sources:
            found = informer.store.get_by_name(source.name, source.namespace)
            if found is not None:
                return found
        return None

    async def reconcile(self, key: str) -> controller_mod.Result | None:
        """Decide the bundle from the caches and report it."""
        choice = self.hosts.client_ca()
        if isinstance(choice, clientca.ClientCa):
            if choice.sha256 != self._last:
                log.info(
                    "kubelet client CA: %d certificate(s) from ConfigMap %s (sha256 %s)",
                    choice.certificates,
                    choice.source,
                    choice.sha256[:16],
                )
            self._last = choice.sha256
            return None
        self._last = None
        log.warning("%s", choice.message)
        configmap = self._configmap(choice.source) if choice.exists else None
        if configmap is not None:
            await self.hosts.recorder.emit_event(
                kube.ref_of(configmap),
                "Warning",
                names.EventReason.KUBELET_CLIENT_CA_INVALID,
                choice.message,
            )
        return None


def setup(manager: manager_mod.Manager, hosts: hosts_mod.Hosts) -> controller_mod.Controller:
    """Register the reporter on the CA source informers the host controllers share."""
    reporter = ClientCaReporter(hosts)
    controller = manager.controller("kubelet-client-ca", reporter.reconcile, workers=1)

    def always(obj: Any) -> tuple[str]:
        return (KEY,)

    for source in hosts.ca_sources:
        controller.watch(source, always, hosts_mod.ca_changed)
    # Also when no source ConfigMap exists at all (then no informer ever has an event).
    controller.enqueue(KEY)
    return controller
