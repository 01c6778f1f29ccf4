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
account or of a Windows Node re-queues every pending CSR, since what the operator knows changed.

**Cache for triggering, the API for acting.** A first decision is made from the informers'
caches. A CSR that would be approved or refused is decided again from a fresh read of the CSR,
the bootstrap accounts and the Nodes, and only that second decision is carried out. Caches of
different kinds lag each other (a CSR may be seen before the Node whose address it names); a
verdict that cannot be undone (approval, denial) is not taken on a stale view.

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
from wmco.runtime import controller as controller_mod
from wmco.runtime import informer as informer_mod
from wmco.runtime import manager as manager_mod
from wmco.runtime import metrics as metrics_mod
from wmco.settings import Settings

log = logging.getLogger(__name__)

CONTROLLER_NAME: Final = "csr"

UNKNOWN_NODE_NAME_RETRY: Final = 5.0
"""Seconds before a CSR of our account whose node name is not known yet is looked at again."""

ACCOUNT_LABELS: Final = {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE}
WINDOWS_NODE_LABELS: Final = {names.OS_LABEL: names.OS_LABEL_WINDOWS}

_DECISIVE: Final = frozenset({"Approved", "Denied"})


# ---------------------------------------------------------------------------------------------
# Pure decisions


def is_pending(obj: CertificateSigningRequest) -> bool:
    """Whether a CSR has neither an Approved nor a Denied condition."""
    conditions = (obj.status.conditions if obj.status else None) or []
    return not any(condition.type in _DECISIVE for condition in conditions)


def bootstrap_account(account: ServiceAccount) -> csr.BootstrapAccount | None:
    """The :class:`wmco.csr.BootstrapAccount` a bootstrap ServiceAccount of ours describes.

    Returns ``None`` when it lacks a name, a namespace, a UID or the instance-address annotation
    (not one the operator made).
    """
    metadata = account.metadata or ObjectMeta()
    annotations = metadata.annotations or {}
    address = annotations.get(names.INSTANCE_ADDRESS_ANNOTATION)
    if not (metadata.name and metadata.namespace and metadata.uid and address):
        return None
    return csr.BootstrapAccount(
        username=names.service_account_user(metadata.namespace, metadata.name),
        uid=metadata.uid,
        group=names.service_accounts_group(metadata.namespace),
        address=address,
        node_name=annotations.get(names.INSTANCE_NODE_NAME_ANNOTATION) or None,
    )


def managed_nodes(
    nodes: Iterable[Node], accounts: Iterable[csr.BootstrapAccount]
) -> list[csr.ManagedNode]:
    """The Nodes the operator manages, with every address it knows for each.

    A Node is managed when it carries the instance-address annotation or one of our accounts
    names it. Its known addresses are only what the operator itself recorded: its
    instance-address annotation and the address of every account naming it. The Node's status addresses are NOT
    trusted: the kubelet writes them itself, so a compromised host could add any address there
    and obtain a serving certificate for it.
    """
    recorded: dict[str, set[str]] = {}
    for account in accounts:
        if account.node_name:
            addresses = recorded.setdefault(account.node_name, set())
            if account.address:
                addresses.add(account.address)
    managed: list[csr.ManagedNode] = []
    for node in nodes:
        metadata = node.metadata or ObjectMeta()
        name = metadata.name or ""
        annotation = (metadata.annotations or {}).get(names.INSTANCE_ADDRESS_ANNOTATION)
        if not name or (annotation is None and name not in recorded):
            continue
        addresses = set(recorded.get(name, ()))
        if annotation:
            addresses.add(annotation)
        managed.append(csr.ManagedNode(name=name, addresses=frozenset(addresses)))
    return managed


def knowledge_from(
    service_accounts: Iterable[ServiceAccount], nodes: Iterable[Node]
) -> csr.Knowledge:
    """Build what the operator knows from its bootstrap accounts and the Windows Nodes."""
    accounts = [a for a in map(bootstrap_account, service_accounts) if a is not None]
    return csr.Knowledge.build(accounts=accounts, nodes=managed_nodes(nodes, accounts))


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


async def read_knowledge(client: kube.Client, bootstrap_namespace: str) -> csr.Knowledge:
    """What the operator knows, read fresh from the API server."""
    accounts = await kube.list_objects(
        client, ServiceAccount, namespace=bootstrap_namespace, labels=ACCOUNT_LABELS
    )
    nodes = await kube.list_objects(client, Node, labels=WINDOWS_NODE_LABELS)
    return knowledge_from(accounts.items, nodes.items)


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

    def cached_knowledge(self) -> csr.Knowledge:
        """What the operator knows according to the informers' caches."""
        return knowledge_from(self._accounts.store.objects(), self._nodes.store.objects())

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
        knowledge = await read_knowledge(self._client, self._bootstrap_namespace)
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
    accounts = manager.informer(
        ServiceAccount, namespace=settings.bootstrap_namespace, labels=ACCOUNT_LABELS
    )
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

    def pending_csrs(obj: Any) -> Iterable[str]:
        return [
            item.metadata.name
            for item in csrs.store.objects()
            if item.metadata is not None and item.metadata.name and is_pending(item)
        ]

    controller.watch(csrs, controller_mod.own_key, _pending)
    controller.watch(accounts, pending_csrs)
    controller.watch(nodes, pending_csrs, _node_knowledge_changed)
    return controller
