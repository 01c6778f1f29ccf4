"""Strict approval of the kubelet CSRs of the hosts this operator set up.

The rules live in :mod:`wmco.csr` (pure); this module gathers what the operator knows, asks
:func:`wmco.csr.decide`, and carries the verdict out. The key is the CSR's name (cluster scope).

**What the operator knows** (:class:`wmco.csr.Knowledge`):

* *accounts*: every per-host bootstrap ServiceAccount the operator made (the bootstrap
  namespace, label ``app.kubernetes.io/managed-by=windows-machine-config-operator``): its user
  name and UID, the instance address and the node name that instance reported (annotations);
* *nodes*: the Windows Nodes it manages, i.e. carrying the instance-address annotation, or named
  as one of its accounts says. Their addresses: only what the operator recorded (the Node's
  instance-address annotation and the address of every account naming it).

**Watches.** Pending CSRs (no Approved/Denied condition) are reconciled. A change of a bootstrap
account re-queues the pending CSRs it requested and those of the node it names; a change of a
Windows Node those its kubelet requested (an index of the CSRs by requester: no walk over every
CSR per Node heartbeat).

**Cache for triggering, the API for acting.** A first decision is made from the informers'
caches. A CSR that would be approved or refused is decided again from a fresh read of the CSR,
its account, its Node and the accounts naming that Node (:mod:`.csrknowledge`: a few GETs, no
list), and only that second decision is carried out. Caches of different kinds lag each other
(a CSR may be seen before the Node whose address it names); a verdict that cannot be undone
(approval, denial) is not taken on a stale view. A refusal is confirmed once more from a full
read of every account and Windows Node, since knowing less only ever refuses more.

**Verdicts.**

* APPROVE: condition ``Approved`` (reason ``WMCOApprove``) through the ``approval`` subresource,
  conditional on the CSR's resourceVersion; a Normal Event ``CSRApproved`` on the CSR. The
  controller-manager then signs it.
* REFUSE (it comes from our account or our node but breaks a rule: wrong CN, extra SAN, wrong
  usages):
  condition ``Denied`` (reason ``WMCODeny``, the rule broken as message) and a Warning Event
  ``CSRDenied``. Denying, rather than leaving it pending, is deliberate: nobody else approves
  these signers' CSRs for our hosts, a denial is visible in ``kubectl get csr``, and the kubelet
  starts over with a new CSR instead of waiting for one that will never be approved.
* IGNORE (not ours: an account we did not make, a Linux node, another signer): nothing is
  touched, no Event. When the CSR was made by one of our accounts whose node name is not known
  yet, it is looked at again after :data:`UNKNOWN_NODE_NAME_RETRY` seconds.

The operator never sees the tokens the hosts use here: only account names and UIDs, which are
public.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.certificates_v1 import (
    CertificateSigningRequest,
    CertificateSigningRequestApproval,
)
from lightkube.resources.core_v1 import Node, ServiceAccount

from wmco import csr, kube, names
from wmco.controllers import csrknowledge
from wmco.runtime import controller as controller_mod
from wmco.runtime import informer as informer_mod
from wmco.runtime import manager as manager_mod
from wmco.runtime import metrics as metrics_mod
from wmco.settings import Settings

log = logging.getLogger(__name__)

CONTROLLER_NAME: Final = "csr"

UNKNOWN_NODE_NAME_RETRY: Final = 5.0
"""Seconds before a CSR of our account whose node name is not known yet is looked at again."""

ACCOUNT_LABELS: Final = csrknowledge.ACCOUNT_LABELS
WINDOWS_NODE_LABELS: Final = csrknowledge.WINDOWS_NODE_LABELS

_DECISIVE: Final = frozenset({"Approved", "Denied"})


# ---------------------------------------------------------------------------------------------
# Pure decisions


def is_pending(obj: CertificateSigningRequest) -> bool:
    """Whether a CSR has neither an Approved nor a Denied condition."""
    conditions = (obj.status.conditions if obj.status else None) or []
    return not any(condition.type in _DECISIVE for condition in conditions)


knowledge_from = csrknowledge.knowledge_from
"""Build what the operator knows (see :func:`wmco.controllers.csrknowledge.knowledge_from`)."""

CSR_USER_INDEX: Final = "wmco-csr-username"
"""Index of the CSR informer: the requester (``spec.username``)."""


def csr_username(obj: CertificateSigningRequest) -> list[str]:
    """Index function: who requested the CSR."""
    username = obj.spec.username if obj.spec else None
    return [username] if username else []


def request_of(obj: CertificateSigningRequest) -> csr.CsrRequest:
    """The fields of a CSR the decision needs."""
    return csr.csr_request_from_object(obj.to_dict())


def awaits_node_name(request: csr.CsrRequest, knowledge: csr.Knowledge) -> bool:
    """Whether the CSR was made by one of our accounts whose node name is not known yet."""
    account = knowledge.accounts.get(request.username)
    return account is not None and account.uid == request.uid and account.node_name is None


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


# ---------------------------------------------------------------------------------------------
# Effects


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
        accounts: informer_mod.Informer[ServiceAccount],
        nodes: informer_mod.Informer[Node],
        bootstrap_namespace: str,
        metrics: metrics_mod.Metrics | None = None,
    ) -> None:
        """Create the reconciler.

        Args:
            client: API client.
            recorder: Where Events go.
            csrs: Informer of every CSR.
            accounts: Informer of our bootstrap ServiceAccounts.
            nodes: Informer of the Windows Nodes.
            bootstrap_namespace: Where the bootstrap ServiceAccounts live.
            metrics: Where approvals and refusals are counted (by reason code).
        """
        self._client = client
        self._recorder = recorder
        self._csrs = csrs
        self._accounts = accounts
        self._nodes = nodes
        self._bootstrap_namespace = bootstrap_namespace
        self._metrics = metrics

    def cached_knowledge(self, request: csr.CsrRequest) -> csr.Knowledge:
        """What the informers' caches say about the request's account and node."""
        return csrknowledge.cached_knowledge(
            request, self._accounts, self._nodes, self._bootstrap_namespace
        )

    async def __call__(self, key: str) -> controller_mod.Result | None:
        """Decide the CSR named ``key`` if it is pending and ours."""
        cached = self._csrs.store.get(key)
        if cached is None or not is_pending(cached):
            return None
        request = request_of(cached)
        knowledge = self.cached_knowledge(request)
        decision = csr.decide(request, knowledge)
        if decision.verdict is csr.Verdict.IGNORE:
            return self._ignored(request, knowledge, decision)
        # Irreversible: decide again on a fresh view before acting.
        fresh = await kube.get(self._client, CertificateSigningRequest, key)
        if fresh is None or not is_pending(fresh):
            return None
        request = request_of(fresh)
        knowledge = await csrknowledge.fresh_knowledge(
            self._client, request, self._accounts, self._bootstrap_namespace
        )
        decision = csr.decide(request, knowledge)
        if decision.verdict is csr.Verdict.REFUSE:  # knowing less refuses more: be sure
            knowledge = await csrknowledge.read_knowledge(self._client, self._bootstrap_namespace)
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
        settings: Operator settings (the bootstrap namespace; CSRs and Nodes are
            cluster-scoped).
        recorder: Where Events go.

    Returns:
        The controller (already registered).
    """
    csrs = manager.informer(CertificateSigningRequest)
    csrs.add_index(CSR_USER_INDEX, csr_username)
    accounts = manager.informer(
        ServiceAccount, namespace=settings.bootstrap_namespace, labels=ACCOUNT_LABELS
    )
    accounts.add_index(csrknowledge.ACCOUNT_NODE_INDEX, csrknowledge.account_node_name)
    nodes = manager.informer(Node, labels=WINDOWS_NODE_LABELS)
    reconciler = CsrReconciler(
        manager.client,
        recorder,
        csrs,
        accounts,
        nodes,
        settings.bootstrap_namespace,
        manager.metrics,
    )
    controller = manager.controller(CONTROLLER_NAME, reconciler)

    def pending_of(*usernames: str) -> list[str]:
        return [
            item.metadata.name
            for username in usernames
            for item in csrs.store.by_index(CSR_USER_INDEX, username)
            if item.metadata is not None and item.metadata.name and is_pending(item)
        ]

    def csrs_of_account(obj: Any) -> Iterable[str]:
        account: ServiceAccount = obj
        metadata = account.metadata or ObjectMeta()
        if not (metadata.name and metadata.namespace):
            return []
        own = names.service_account_user(metadata.namespace, metadata.name)
        nodes_named = csrknowledge.account_node_name(account)
        return pending_of(own, *(names.NODE_USER_PREFIX + n for n in nodes_named))

    def csrs_of_node(obj: Any) -> Iterable[str]:
        name = obj.metadata.name if obj.metadata else None
        return pending_of(names.NODE_USER_PREFIX + name) if name else []

    controller.watch(csrs, controller_mod.own_key, _pending)
    controller.watch(accounts, csrs_of_account)
    controller.watch(nodes, csrs_of_node, _node_knowledge_changed)
    return controller
