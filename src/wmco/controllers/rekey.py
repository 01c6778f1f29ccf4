"""Key rotation: the Secret of trusted keys, and the end of a rotation.

The hosts trust the key they were configured with. When the user puts a new key in Secret
``cloud-private-key``, the operator must still hold the old one to reach them; the user no
longer does. So the operator keeps every key a host may trust in a Secret of its own,
``wmco-trusted-private-key`` (operator namespace, label ``app.kubernetes.io/managed-by``): this
controller writes the current key there as soon as it sees it, so whenever no rotation is under
way that Secret holds the key in use, and when ``cloud-private-key`` changes it still holds the
previous one, also for an operator restarted in the middle of a rotation.

The hosts themselves are moved by the Machine and instance controllers
(:meth:`wmco.controllers.hosts.Hosts.converge` runs :func:`wmco.nodeconfig.rekey.rekey` for a
configured Node whose ``pub-key-hash`` is not the current key's; Events ``HostKeyRotated`` and
``HostKeyRotationFailed``). They offer the previous keys (:meth:`Hosts.inputs`) only once this
Secret holds the current key too, so no key a host trusts is ever only in memory.

When every configured Windows Node carries the current key's hash, the rotation is over: the
Secret keeps only the current key and a ``KeyRotationComplete`` Event (on ``cloud-private-key``)
says so. The user-data controller drops the previous key from the user data at the same moment
(it watches the same hashes).

The Secret ships empty with the install manifests (``deploy/base``) and the operator may only
update it (creating Secrets stays forbidden); with more rights (the tests) a missing one is
created. Keys are named by their ``pub-key-hash`` in the data (``<first 16 hex>.pem``); messages
and logs name them by ``SHA256:`` fingerprint only.

Machines still booting from the old user data (no Node yet) are reached with the previous key
(:func:`wmco.nodeconfig.runner.connect` offers it to every host while it is kept), configured,
their Node recording the hash of the key they accepted, and then re-keyed like any other host.
The previous keys are therefore kept while a host is still joining (:attr:`Hosts.joining`: a
host being configured that has no configured Node yet, also while it retries after a failure).
That count lives in memory: an operator restarted while a Machine boots and every Node already
moved may drop the previous key before that Machine asks for it; delete such a Machine and its
MachineSet creates one with the new user data.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from lightkube.resources.core_v1 import Node, Secret

from wmco import kube, names, userdata
from wmco.cluster import trustedkeys
from wmco.controllers import hosts as hosts_mod
from wmco.runtime import controller as controller_mod
from wmco.runtime import informer as informer_mod
from wmco.runtime import keys
from wmco.runtime import manager as manager_mod
from wmco.settings import Settings

log = logging.getLogger(__name__)

CONTROLLER_NAME: Final = "rekey"


# ---------------------------------------------------------------------------------------------
# Effects


class RekeyReconciler:
    """Keeps the trusted-key Secret (one key: ``<namespace>/wmco-trusted-private-key``)."""

    def __init__(
        self,
        client: kube.Client,
        settings: Settings,
        recorder: kube.EventRecorder,
        nodes: informer_mod.Informer[Node],
        private_keys: informer_mod.Informer[Secret],
        trusted: informer_mod.Informer[Secret],
        joining: Callable[[], int] = lambda: 0,
    ) -> None:
        """Create the reconciler (informers: Windows Nodes, the two Secrets; hosts joining)."""
        self._client = client
        self._settings = settings
        self._recorder = recorder
        self._nodes = nodes
        self._private_keys = private_keys
        self._trusted = trusted
        self._joining = joining

    async def __call__(self, key: str) -> controller_mod.Result | None:
        """Bring the trusted-key Secret in line with the current key and the Nodes."""
        namespace = self._settings.namespace
        private = await kube.get(
            self._client, Secret, names.PRIVATE_KEY_SECRET, namespace=namespace
        )
        encoded = ((private.data if private else None) or {}).get(names.PRIVATE_KEY_SECRET_KEY)
        try:
            current = trustedkeys.TrustedKey.parse(base64.b64decode(encoded or "", validate=True))
        except (binascii.Error, ValueError):
            # The user-data controller reports an unusable key; nothing to keep until it is fixed.
            return None
        existing = await kube.get(
            self._client, Secret, names.TRUSTED_PRIVATE_KEY_SECRET, namespace=namespace
        )
        stored = trustedkeys.stored_keys(existing)
        decision = trustedkeys.decide(
            current,
            stored,
            trustedkeys.configured_hashes(self._nodes.store.objects()),
            self._joining(),
        )
        if existing is not None and trustedkeys.is_up_to_date(existing, decision):
            return None
        try:
            await self._write(decision, existing)
        except kube.Forbidden as exc:
            log.warning(
                "cannot write Secret %s/%s (%s); it ships with the install manifests: re-apply "
                "them. Key rotation is impossible without it.",
                namespace,
                names.TRUSTED_PRIVATE_KEY_SECRET,
                exc,
            )
            return controller_mod.Result(requeue=True)
        dropped = [key for key in stored if key not in decision.keys]
        added = [key for key in decision.keys if key not in stored]
        log.info(
            "Secret %s/%s now holds keys %s (added %s, dropped %s; %d nodes still to move)",
            namespace,
            names.TRUSTED_PRIVATE_KEY_SECRET,
            trustedkeys.fingerprints(decision.keys),
            trustedkeys.fingerprints(added),
            trustedkeys.fingerprints(dropped),
            decision.pending,
        )
        if decision.complete and private is not None:
            await self._recorder.emit_event(
                kube.ref_of(private),
                "Normal",
                names.EventReason.KEY_ROTATION_COMPLETE,
                f"every configured Windows node trusts key {userdata.fingerprint(current.public)}; "
                f"previous key(s) {trustedkeys.fingerprints(dropped)} forgotten (Secret "
                f"{names.TRUSTED_PRIVATE_KEY_SECRET} keeps only the current key)",
            )
        return None

    async def _write(self, decision: trustedkeys.Decision, existing: Secret | None) -> Secret:
        namespace = self._settings.namespace
        if (
            existing is not None
            and (existing.type or trustedkeys.SECRET_TYPE_OPAQUE) != trustedkeys.SECRET_TYPE_OPAQUE
        ):
            await kube.delete(
                self._client, Secret, names.TRUSTED_PRIVATE_KEY_SECRET, namespace=namespace
            )
            existing = None
        if existing is None:
            return await kube.create(
                self._client, trustedkeys.trusted_secret(decision.keys, namespace)
            )
        return await kube.replace(
            self._client, trustedkeys.trusted_secret(decision.keys, namespace, existing.metadata)
        )


def _data_changed(event: informer_mod.Event[Any]) -> bool:
    if event.type is not informer_mod.EventType.MODIFIED or event.old is None:
        return True
    new: Mapping[str, str] = event.obj.data or {}
    old: Mapping[str, str] = event.old.data or {}
    return new != old


def _hash_changed(event: informer_mod.Event[Any]) -> bool:
    if event.type is not informer_mod.EventType.MODIFIED or event.old is None:
        return True
    return trustedkeys.configured_hashes([event.obj]) != trustedkeys.configured_hashes([event.old])


def setup(manager: manager_mod.Manager, hosts: hosts_mod.Hosts) -> controller_mod.Controller:
    """Register the rekey controller on ``manager`` (shares the hosts' informers)."""
    settings = hosts.settings
    key = keys.make_key(names.TRUSTED_PRIVATE_KEY_SECRET, settings.namespace)

    def to_key(obj: Any) -> Iterable[str]:
        return (key,)

    trusted = hosts.trusted_keys or manager.informer(
        Secret,
        namespace=settings.namespace,
        fields={"metadata.name": names.TRUSTED_PRIVATE_KEY_SECRET},
    )
    reconciler = RekeyReconciler(
        manager.client,
        settings,
        hosts.recorder,
        hosts.nodes,
        hosts.private_keys,
        trusted,
        lambda: len(hosts.joining),
    )
    controller = manager.controller(
        CONTROLLER_NAME, reconciler, workers=1, backoff_base=0.5, backoff_max=60.0
    )
    controller.watch(hosts.private_keys, to_key, _data_changed)
    controller.watch(trusted, to_key)
    controller.watch(hosts.nodes, to_key, _hash_changed)
    controller.enqueue(key)
    return controller
