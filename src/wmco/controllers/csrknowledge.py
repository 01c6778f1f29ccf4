"""What the CSR approver knows about one CSR: the accounts and the Node it concerns.

:mod:`wmco.controllers.csr` decides a CSR from a :class:`wmco.csr.Knowledge`; this module gathers
it, for ONE request, from the informers' caches or fresh from the API. A decision only ever
looks at three things:

* the requester's bootstrap ServiceAccount (``spec.username`` names it);
* the Node the CSR is for (the account's ``instance-node-name`` annotation, or the
  ``system:node:<name>`` requester);
* the accounts that name that Node (their instance addresses are the Node's known addresses).

So :func:`cached_knowledge` reads exactly those through the store's keys and an index of the
accounts by the node they name (:data:`ACCOUNT_NODE_INDEX`), and :func:`fresh_knowledge` GETs
exactly those: a few requests per CSR, the same at 500 hosts as at one, instead of listing every
account and every Windows Node (issue 12 §5). Knowing less never approves more (a missing
account or node makes a CSR not ours; a missing address makes a serving CSR refused), which is
why the approver confirms a refusal with :func:`read_knowledge`, the full read, before acting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Final

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node, ServiceAccount

from wmco import csr, kube, names
from wmco.runtime import informer as informer_mod

ACCOUNT_LABELS: Final = {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE}
WINDOWS_NODE_LABELS: Final = {names.OS_LABEL: names.OS_LABEL_WINDOWS}

ACCOUNT_NODE_INDEX: Final = "wmco-account-node-name"
"""Index of the bootstrap-account informer: the node name the account's host reported."""


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
    instance-address annotation and the address of every account naming it. The Node's status
    addresses are NOT trusted: the kubelet writes them itself, so a compromised host could add
    any address there and obtain a serving certificate for it.
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


def account_node_name(account: ServiceAccount) -> list[str]:
    """Index function: the node name an account's host reported, if any."""
    annotations = (account.metadata.annotations if account.metadata else None) or {}
    name = annotations.get(names.INSTANCE_NODE_NAME_ANNOTATION)
    return [name] if name else []


def requester_account(username: str, bootstrap_namespace: str) -> str | None:
    """The name of the bootstrap-namespace ServiceAccount ``username`` is, if it is one."""
    prefix = names.service_account_user(bootstrap_namespace, "")
    name = username.removeprefix(prefix)
    return name if name != username and name and ":" not in name else None


def node_name_of(username: str, account: ServiceAccount | None) -> str | None:
    """The Node a CSR is about: its account's reported node, else a ``system:node:`` requester."""
    if account is not None:
        named = account_node_name(account)
        return named[0] if named else None
    if username.startswith(names.NODE_USER_PREFIX):
        return username.removeprefix(names.NODE_USER_PREFIX) or None
    return None


def _is_ours(account: ServiceAccount | None) -> bool:
    labels = (account.metadata.labels if account and account.metadata else None) or {}
    return all(labels.get(key) == value for key, value in ACCOUNT_LABELS.items())


def _is_windows(node: Node | None) -> bool:
    labels = (node.metadata.labels if node and node.metadata else None) or {}
    return all(labels.get(key) == value for key, value in WINDOWS_NODE_LABELS.items())


def cached_knowledge(
    request: csr.CsrRequest,
    accounts: informer_mod.Informer[ServiceAccount],
    nodes: informer_mod.Informer[Node],
    bootstrap_namespace: str,
) -> csr.Knowledge:
    """What the caches say about ``request``'s account and node (lookups, no scan).

    ``accounts`` must carry :data:`ACCOUNT_NODE_INDEX`.
    """
    name = requester_account(request.username, bootstrap_namespace)
    account = accounts.store.get_by_name(name, bootstrap_namespace) if name else None
    node_name = node_name_of(request.username, account)
    node = nodes.store.get_by_name(node_name) if node_name else None
    naming = accounts.store.by_index(ACCOUNT_NODE_INDEX, node_name) if node_name else []
    return knowledge_from([a for a in (account, *naming) if a is not None], [node] if node else [])


async def fresh_knowledge(
    client: kube.Client,
    request: csr.CsrRequest,
    accounts: informer_mod.Informer[ServiceAccount],
    bootstrap_namespace: str,
) -> csr.Knowledge:
    """What the API says now about ``request``'s account and node: a few GETs.

    The accounts naming the node are those the cache names, each read again; one the cache
    has not seen yet is missing, which can only make the decision stricter.
    """
    name = requester_account(request.username, bootstrap_namespace)
    account = (
        await kube.get(client, ServiceAccount, name, namespace=bootstrap_namespace)
        if name
        else None
    )
    account = account if _is_ours(account) else None
    node_name = node_name_of(request.username, account)
    if node_name is None:
        return knowledge_from([account] if account else [], [])
    node = await kube.get(client, Node, node_name)
    others = [
        other.metadata.name
        for other in accounts.store.by_index(ACCOUNT_NODE_INDEX, node_name)
        if other.metadata and other.metadata.name and other.metadata.name != name
    ]
    naming = await asyncio.gather(
        *(kube.get(client, ServiceAccount, n, namespace=bootstrap_namespace) for n in others)
    )
    found = [a for a in (account, *naming) if a is not None and _is_ours(a)]
    return knowledge_from(found, [node] if node is not None and _is_windows(node) else [])


async def read_knowledge(client: kube.Client, bootstrap_namespace: str) -> csr.Knowledge:
    """What the operator knows, every account and Windows Node read fresh (two lists)."""
    listed = await kube.list_objects(
        client, ServiceAccount, namespace=bootstrap_namespace, labels=ACCOUNT_LABELS
    )
    windows = await kube.list_objects(client, Node, labels=WINDOWS_NODE_LABELS)
    return knowledge_from(listed.items, windows.items)
