"""Strict approval of the kubelet CSRs of the hosts this operator set up.

The rules live in :mod:`wmco.csr` (pure); this module gathers what the operator knows, asks
:func:`wmco.csr.decide`, and carries the verdict out. The key is the CSR's name (cluster scope).

**What the operator knows** (:class:`wmco.csr.Knowledge`):

* *tokens*: every bootstrap token Secret the operator minted (``kube-system``, label
  ``app.kubernetes.io/managed-by=windows-machine-config-operator``): its ``token-id``, the
  instance address and the node name that instance reported (annotations);
* *nodes*: the Windows Nodes it manages, i.e. carrying the instance-address annotation, or named
  as one of its tokens says. Their addresses: the Node's status addresses plus the instance
  address(es) from the Node's annotation and from the tokens naming it.

**Watches.** Pending CSRs (no Approved/Denied condition) are reconciled. A change of a token
Secret or of a Windows Node re-queues every pending CSR, since what the operator knows changed.

**Cache for triggering, the API for acting.** A first decision is made from the informers'
caches. A CSR that would be approved or refused is decided again from a fresh read of the CSR,
the token Secrets and the Nodes, and only that second decision is carried out. Caches of
different kinds lag each other (a CSR may be seen before the Node whose address it names); a
verdict that cannot be undone (approval, denial) is not taken on a stale view.

**Verdicts.**

* APPROVE: condition ``Approved`` (reason ``WMCOApprove``) through the ``approval`` subresource,
  conditional on the CSR's resourceVersion; a Normal Event ``CSRApproved`` on the CSR. The
  controller-manager then signs it.
* REFUSE (it names our token or our node but breaks a rule: wrong CN, extra SAN, wrong usages):
  condition ``Denied`` (reason ``WMCODeny``, the rule broken as message) and a Warning Event
  ``CSRDenied``. Denying, rather than leaving it pending, is deliberate: nobody else approves
  these signers' CSRs for our hosts, a denial is visible in ``kubectl get csr``, and the kubelet
  starts over with a new CSR instead of waiting for one that will never be approved.
* IGNORE (not ours: a token we did not mint, a Linux node, another signer): nothing is touched,
  no Event. When the CSR was made with one of our tokens whose node name is not known yet, it is
  looked at again after :data:`UNKNOWN_NODE_NAME_RETRY` seconds.

Token secrets never reach a log or an Event: only token ids, which are public (``system:bootstrap:<id>``).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.certificates_v1 import (
    CertificateSigningRequest,
    CertificateSigningRequestApproval,
)
from lightkube.resources.core_v1 import Node, Secret

from wmco import csr, kube, names
from wmco.runtime import controller as controller_mod
from wmco.runtime import informer as informer_mod
from wmco.runtime import manager as manager_mod
from wmco.runtime import metrics as metrics_mod
from wmco.settings import Settings

log = logging.getLogger(__name__)

CONTROLLER_NAME: Final = "csr"

UNKNOWN_NODE_NAME_RETRY: Final = 5.0
"""Seconds before a CSR made with our token whose node name is not known yet is looked at again."""

TOKEN_ID_KEY: Final = "token-id"
"""Data key of a bootstrap token Secret holding the token's public id."""

TOKEN_LABELS: Final = {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE}
WINDOWS_NODE_LABELS: Final = {names.OS_LABEL: names.OS_LABEL_WINDOWS}

_DECISIVE: Final = frozenset({"Approved", "Denied"})


# ---------------------------------------------------------------------------------------------
# Pure decisions


def is_pending(obj: CertificateSigningRequest) -> bool:
    """Whether a CSR has neither an Approved nor a Denied condition."""
    conditions = (obj.status.conditions if obj.status else None) or []
    return not any(condition.type in _DECISIVE for condition in conditions)


def issued_token(secret: Secret) -> csr.IssuedToken | None:
    """The :class:`wmco.csr.IssuedToken` a bootstrap token Secret of ours describes.

    Returns ``None`` when the Secret has no readable ``token-id``. Only the public id is read:
    the token's secret half is never decoded.
    """
    encoded = (secret.data or {}).get(TOKEN_ID_KEY)
    token_id = _decode(encoded) if encoded is not None else None
    if not token_id:
        return None
    annotations = (secret.metadata.annotations if secret.metadata else None) or {}
    node_name = annotations.get(names.INSTANCE_NODE_NAME_ANNOTATION) or None
    return csr.IssuedToken(
        token_id=token_id,
        address=annotations.get(names.INSTANCE_ADDRESS_ANNOTATION, ""),
        node_name=node_name,
    )


def managed_nodes(
    nodes: Iterable[Node], tokens: Iterable[csr.IssuedToken]
) -> list[csr.ManagedNode]:
    """The Nodes the operator manages, with every address it knows for each.

    A Node is managed when it carries the instance-address annotation or one of our tokens names
    it. Its known addresses are only what the operator itself recorded: its instance-address
    annotation and the address of every token naming it. The Node's status addresses are NOT
    trusted: the kubelet writes them itself, so a compromised host could add any address there
    and obtain a serving certificate for it.
    """
    token_addresses: dict[str, set[str]] = {}
    for token in tokens:
        if token.node_name:
            addresses = token_addresses.setdefault(token.node_name, set())
            if token.address:
                addresses.add(token.address)
    managed: list[csr.ManagedNode] = []
    for node in nodes:
        metadata = node.metadata or ObjectMeta()
        name = metadata.name or ""
        annotation = (metadata.annotations or {}).get(names.INSTANCE_ADDRESS_ANNOTATION)
        if not name or (annotation is None and name not in token_addresses):
            continue
        addresses = set(token_addresses.get(name, ()))
        if annotation:
            addresses.add(annotation)
        managed.append(csr.ManagedNode(name=name, addresses=frozenset(addresses)))
    return managed


def knowledge_from(token_secrets: Iterable[Secret], nodes: Iterable[Node]) -> csr.Knowledge:
    """Build what the operator knows from its token Secrets and the Windows Nodes."""
    tokens = [token for token in map(issued_token, token_secrets) if token is not None]
    return csr.Knowledge.build(tokens=tokens, nodes=managed_nodes(nodes, tokens))


def request_of(obj: CertificateSigningRequest) -> csr.CsrRequest:
    """The fields of a CSR the decision needs."""
    return csr.csr_request_from_object(obj.to_dict())


def awaits_node_name(request: csr.CsrRequest, knowledge: csr.Knowledge) -> bool:
    """Whether the CSR was made with one of our tokens whose node name is not known yet."""
    if not request.username.startswith(names.BOOTSTRAP_USER_PREFIX):
        return False
    token = knowledge.tokens.get(request.username.removeprefix(names.BOOTSTRAP_USER_PREFIX))
    return token is not None and token.node_name is None


def approval_patch(resource_version: str | None, decision: csr.Decision) -> dict[str, Any]:
    """The merge patch of the ``approval`` subresource that carries out ``decision``.

    Conditional on ``resource_version`` so that a CSR changed since it was read is not decided.
    """
    approve = decision.verdict is csr.Verdict.APPROVE
    condition = {
        "type": "Approved" if approve else "Denied",
        "status": "True",
        "reason": names.CSR_APPROVAL_REASON if approve else names.CSR_DENIAL_REASON,
        "message": names.CSR_APPROVAL_MESSAGE if approve else decision.reason,
    }
    return {
        "metadata": {"resourceVersion": resource_version},
        "status": {"conditions": [condition]},
    }


def _decode(encoded: str) -> str | None:
    try:
        return base64.b64decode(encoded, validate=True).decode("ascii").strip()
    except (binascii.Error, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Effects


async def read_knowledge(client: kube.Client) -> csr.Knowledge:
    """What the operator knows, read fresh from the API server."""
    tokens = await kube.list_objects(
        client, Secret, namespace=names.KUBE_SYSTEM_NAMESPACE, labels=TOKEN_LABELS
    )
    nodes = await kube.list_objects(client, Node, labels=WINDOWS_NODE_LABELS)
    return knowledge_from(tokens.items, nodes.items)


async def set_decision(
    client: kube.Client, obj: CertificateSigningRequest, decision: csr.Decision
) -> bool:
    """Write the Approved or Denied condition through the ``approval`` subresource.

    Returns:
        ``False`` when the CSR no longer exists.

    Raises:
        kube.Conflict: The CSR changed since ``obj`` was read (the caller retries).
    """
    metadata = obj.metadata or ObjectMeta()
    written = await kube.patch(
        client,
        CertificateSigningRequestApproval,
        metadata.name or "",
        approval_patch(metadata.resourceVersion, decision),
    )
    return written is not None


class CsrReconciler:
    """Decides one pending CSR per call, from the informers' caches then from the API."""

    def __init__(
        self,
        client: kube.Client,
        recorder: kube.EventRecorder,
        csrs: informer_mod.Informer[CertificateSigningRequest],
        tokens: informer_mod.Informer[Secret],
        nodes: informer_mod.Informer[Node],
        metrics: metrics_mod.Metrics | None = None,
    ) -> None:
        """Create the reconciler.

        Args:
            client: API client.
            recorder: Where Events go.
            csrs: Informer of every CSR.
            tokens: Informer of our bootstrap token Secrets.
            nodes: Informer of the Windows Nodes.
            metrics: Where approvals and refusals are counted (by reason code).
        """
        self._client = client
        self._recorder = recorder
        self._csrs = csrs
        self._tokens = tokens
        self._nodes = nodes
        self._metrics = metrics

    def cached_knowledge(self) -> csr.Knowledge:
        """What the operator knows according to the informers' caches."""
        return knowledge_from(self._tokens.store.objects(), self._nodes.store.objects())

    async def __call__(self, key: str) -> controller_mod.Result | None:
        """Decide the CSR named ``key`` if it is pending and ours."""
        cached = self._csrs.store.get(key)
        if cached is None or not is_pending(cached):
            return None
        request = request_of(cached)
        knowledge = self.cached_knowledge()
        decision = csr.decide(request, knowledge)
        if decision.verdict is csr.Verdict.IGNORE:
            return self._ignored(request, knowledge, decision)
        # Irreversible: decide again on a fresh view before acting.
        fresh = await kube.get(self._client, CertificateSigningRequest, key)
        if fresh is None or not is_pending(fresh):
            return None
        request = request_of(fresh)
        knowledge = await read_knowledge(self._client)
        decision = csr.decide(request, knowledge)
        if decision.verdict is csr.Verdict.IGNORE:
            return self._ignored(request, knowledge, decision)
        if not await set_decision(self._client, fresh, decision):
            return None
        approved = decision.verdict is csr.Verdict.APPROVE
        if self._metrics is not None:
            self._metrics.csr_decided(approved=approved, reason=decision.code.value)
        log.info(
            "CSR %s (%s, requested by %s) %s: %s",
            key,
            request.signer_name,
            request.username,
            "approved" if approved else "denied",
            decision.reason,
        )
        await self._recorder.emit_event(
            kube.ref_of(fresh),
            "Normal" if approved else "Warning",
            names.EventReason.CSR_APPROVED if approved else names.EventReason.CSR_DENIED,
            decision.reason if approved else f"denied: {decision.reason}",
        )
        return None

    def _ignored(
        self, request: csr.CsrRequest, knowledge: csr.Knowledge, decision: csr.Decision
    ) -> controller_mod.Result | None:
        log.debug("CSR %s ignored: %s", request.name, decision.reason)
        if awaits_node_name(request, knowledge):
            return controller_mod.Result(requeue_after=UNKNOWN_NODE_NAME_RETRY)
        return None


# ---------------------------------------------------------------------------------------------
# Wiring


def _pending(event: informer_mod.Event[Any]) -> bool:
    return event.type is not informer_mod.EventType.DELETED and is_pending(event.obj)


def _node_knowledge_changed(event: informer_mod.Event[Any]) -> bool:
    """Node events that can change a decision: added, deleted, annotations or addresses."""
    if event.type is not informer_mod.EventType.MODIFIED or event.old is None:
        return True
    return bool(
        _instance_address(event.obj) != _instance_address(event.old)
        or _addresses(event.obj) != _addresses(event.old)
    )


def _instance_address(node: Any) -> str | None:
    annotations: Mapping[str, str] | None = node.metadata.annotations
    return (annotations or {}).get(names.INSTANCE_ADDRESS_ANNOTATION)


def _addresses(node: Any) -> list[tuple[str, str]]:
    status = node.status
    return [(a.type, a.address) for a in (status.addresses if status else None) or []]


def setup(
    manager: manager_mod.Manager, settings: Settings, recorder: kube.EventRecorder
) -> controller_mod.Controller:
    """Register the CSR approver and its watches with ``manager``.

    Args:
        manager: The manager that owns informers and controllers.
        settings: Operator settings (unused: tokens live in ``kube-system``, CSRs and Nodes
            are cluster-scoped).
        recorder: Where Events go.

    Returns:
        The controller (already registered).
    """
    csrs = manager.informer(CertificateSigningRequest)
    tokens = manager.informer(Secret, namespace=names.KUBE_SYSTEM_NAMESPACE, labels=TOKEN_LABELS)
    nodes = manager.informer(Node, labels=WINDOWS_NODE_LABELS)
    reconciler = CsrReconciler(manager.client, recorder, csrs, tokens, nodes, manager.metrics)
    controller = manager.controller(CONTROLLER_NAME, reconciler)

    def pending_csrs(obj: Any) -> Iterable[str]:
        return [
            item.metadata.name
            for item in csrs.store.objects()
            if item.metadata is not None and item.metadata.name and is_pending(item)
        ]

    controller.watch(csrs, controller_mod.own_key, _pending)
    controller.watch(tokens, pending_csrs)
    controller.watch(nodes, pending_csrs, _node_knowledge_changed)
    return controller
