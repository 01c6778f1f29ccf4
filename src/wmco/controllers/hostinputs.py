"""What every host's flow is given: the private key, the kubelet client CA, the exporter CA, old keys.

The host controllers (:mod:`wmco.controllers.hosts`) turn the cluster's Secrets and ConfigMaps into
one :class:`wmco.nodeconfig.instance.Inputs` per reconcile. Everything here reads the manager's
shared informers, each narrowed to the one object it follows by a ``metadata.name`` field
selector, so building the inputs of a host costs no request however many hosts there are (the
private key is read from the API only while its informer has not seen it yet).

* The kubelet client CA comes from its source ConfigMaps (:func:`wmco.cluster.clientca.sources`);
  :func:`ca_changed` is the predicate with which the controllers re-queue every host when one of
  them changes (not at a periodic resync).
* The exporter CA (:mod:`wmco.cluster.exportersecret`) is read through a
  :class:`~wmco.cluster.exportersecret.CaKeeper` on its Secret's informer.
* The previous private keys of Secret ``wmco-trusted-private-key``
  (:mod:`wmco.cluster.trustedkeys`) ride along, so every connection offers them after the
  current key.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from lightkube.resources.core_v1 import ConfigMap, Secret

from wmco import kube, names, userdata
from wmco.cluster import clientca, exportersecret, trustedkeys
from wmco.nodeconfig import instance as instance_mod
from wmco.payload import manifest as payload_manifest
from wmco.runtime import informer as informer_mod
from wmco.runtime import manager as manager_mod
from wmco.runtime import metrics as metrics_mod
from wmco.settings import Settings


@dataclasses.dataclass
class InputSources:
    """The informers the flow's inputs are read from, and how to read them."""

    client: kube.Client
    settings: Settings
    payload: payload_manifest.Manifest
    version: str
    private_keys: informer_mod.Informer[Secret]
    ca_sources: tuple[informer_mod.Informer[ConfigMap], ...] = ()
    exporter_secrets: informer_mod.Informer[Secret] | None = None
    trusted_keys: informer_mod.Informer[Secret] | None = None
    metrics: metrics_mod.Metrics = dataclasses.field(default_factory=metrics_mod.Metrics)
    exporter_cas: exportersecret.CaKeeper = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        informer = self.exporter_secrets

        def cached() -> Secret | None:
            if informer is None:
                return None
            return informer.store.get_by_name(
                names.WINDOWS_EXPORTER_CA_SECRET, self.settings.namespace
            )

        self.exporter_cas = exportersecret.CaKeeper(self.client, self.settings.namespace, cached)

    def client_ca(self) -> clientca.Choice:
        """The kubelet client CA bundle as the source ConfigMaps say now (from the caches)."""
        return clientca.choose(self.settings.kubelet_ca_configmap, self.ca_configmaps())

    def ca_configmaps(self) -> dict[tuple[str, str], dict[str, str] | None]:
        """The data of every CA source ConfigMap, ``None`` for those that do not exist."""
        result: dict[tuple[str, str], dict[str, str] | None] = {}
        for source in clientca.sources(self.settings.kubelet_ca_configmap):
            found: ConfigMap | None = None
            for informer in self.ca_sources:
                found = found or informer.store.get_by_name(source.name, source.namespace)
            result[(source.namespace, source.name)] = (
                dict(found.data or {}) if found is not None else None
            )
        return result

    async def inputs(self) -> instance_mod.Inputs | None:
        """The inputs of the flow, or ``None`` while the private key is missing or unusable.

        The user-data controller reports a bad key in an Event; here it only means "not yet".
        A bad kubelet client CA does not stop here: the inputs carry the problem, up-to-date
        nodes stay as they are, and a new host fails its ``bootstrap-files`` step with it.
        """
        secret = self.private_keys.store.get_by_name(
            names.PRIVATE_KEY_SECRET, self.settings.namespace
        ) or await kube.get(
            self.client, Secret, names.PRIVATE_KEY_SECRET, namespace=self.settings.namespace
        )
        raw = ((secret.data if secret else None) or {}).get(names.PRIVATE_KEY_SECRET_KEY)
        if not raw:
            return None
        try:
            inputs = instance_mod.Inputs.from_key(
                self.settings,
                base64.b64decode(raw),
                self.payload,
                self.version,
                client_ca=self.client_ca(),
                exporter_ca=await self.exporter_cas.current(),
                observer=self.metrics,
            )
        except userdata.PrivateKeyError:
            return None
        return dataclasses.replace(inputs, previous_private_keys=self.previous_keys(inputs))

    def trusted_secret(self) -> Secret | None:
        """Secret ``wmco-trusted-private-key`` as cached, if any."""
        if self.trusted_keys is None:
            return None
        return self.trusted_keys.store.get_by_name(
            names.TRUSTED_PRIVATE_KEY_SECRET, self.settings.namespace
        )

    def previous_keys(self, inputs: instance_mod.Inputs) -> tuple[bytes, ...]:
        """The keys of the trusted-key Secret other than the current one."""
        return trustedkeys.previous_keys(inputs.pub_key_hash, self.trusted_secret())


def ca_changed(event: informer_mod.Event[Any]) -> bool:
    """A CA source ConfigMap appeared, went, or changed its data (not a periodic resync)."""
    if event.type is not informer_mod.EventType.MODIFIED or event.old is None:
        return True
    return bool(event.obj.data != event.old.data)


def named(
    manager: manager_mod.Manager, resource: type[Any], name: str, namespace: str
) -> informer_mod.Informer[Any]:
    """The shared informer of one object (a ``metadata.name`` field selector)."""
    return manager.informer(resource, namespace=namespace, fields={"metadata.name": name})


def ca_informers(
    manager: manager_mod.Manager, settings: Settings
) -> tuple[informer_mod.Informer[ConfigMap], ...]:
    """One informer per kubelet client CA source ConfigMap (a name field selector each)."""
    return tuple(
        named(manager, ConfigMap, source.name, source.namespace)
        for source in clientca.sources(settings.kubelet_ca_configmap)
    )


def exporter_ca_informer(
    manager: manager_mod.Manager, settings: Settings
) -> informer_mod.Informer[Secret]:
    """The informer of the exporter CA Secret (shared with the monitoring controller)."""
    return named(manager, Secret, names.WINDOWS_EXPORTER_CA_SECRET, settings.namespace)
