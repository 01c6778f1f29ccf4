"""What the CSR approver gathers for one CSR: exactly what the whole cache says about it.

:func:`wmco.controllers.csrknowledge.cached_knowledge` reads the requester's account, the node
the CSR is for and the accounts naming that node through keys and an index; the decision only
ever reads those entries of a :class:`wmco.csr.Knowledge`, so they must equal what the full
knowledge (every account, every Windows Node) holds for them.
"""

from __future__ import annotations

from typing import Any

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node, ServiceAccount

from wmco import csr, names
from wmco.controllers import csrknowledge
from wmco.runtime import informer

NS = "wmco-bootstrap"


def account(name: str, address: str, node: str | None) -> ServiceAccount:
    annotations = {names.INSTANCE_ADDRESS_ANNOTATION: address}
    if node:
        annotations[names.INSTANCE_NODE_NAME_ANNOTATION] = node
    return ServiceAccount(
        metadata=ObjectMeta(
            name=name,
            namespace=NS,
            uid=f"uid-{name}",
            labels=dict(csrknowledge.ACCOUNT_LABELS),
            annotations=annotations,
        )
    )


def node(name: str, address: str | None) -> Node:
    annotations = {names.INSTANCE_ADDRESS_ANNOTATION: address} if address else None
    return Node(metadata=ObjectMeta(name=name, annotations=annotations))


def informer_of(resource: Any, objects: list[Any]) -> informer.Informer[Any]:
    made: informer.Informer[Any] = informer.Informer(None, resource)  # type: ignore[arg-type]
    for obj in objects:
        made.store.upsert(obj)
    return made


def request(username: str) -> csr.CsrRequest:
    return csr.CsrRequest(
        name="csr-1",
        request_pem=b"",
        username=username,
        groups=(),
        usages=(),
        signer_name=names.CSR_SIGNER_KUBELET_SERVING,
    )


ACCOUNTS = [
    account("wmco-10-0-0-1", "10.0.0.1", "win-a"),
    account("wmco-10-0-0-2", "10.0.0.2", "win-b"),
    account("wmco-win-a-dns", "win-a.example.com", "win-a"),  # a second address of win-a
    account("wmco-10-0-0-9", "10.0.0.9", None),  # its host has not said its node name yet
]
NODES = [node("win-a", "10.0.0.1"), node("win-b", None), node("win-c", "10.0.0.3"), node("x", None)]


def test_the_targeted_knowledge_agrees_with_the_whole_cache() -> None:
    accounts = informer_of(ServiceAccount, ACCOUNTS)
    accounts.add_index(csrknowledge.ACCOUNT_NODE_INDEX, csrknowledge.account_node_name)
    nodes = informer_of(Node, NODES)
    whole = csrknowledge.knowledge_from(ACCOUNTS, NODES)
    usernames = [
        *(names.service_account_user(NS, a.metadata.name or "") for a in ACCOUNTS),
        names.service_account_user("elsewhere", "wmco-10-0-0-1"),
        *(names.NODE_USER_PREFIX + (n.metadata.name or "") for n in NODES),
        names.NODE_USER_PREFIX + "unknown",
        "system:anonymous",
    ]
    for username in usernames:
        targeted = csrknowledge.cached_knowledge(request(username), accounts, nodes, NS)
        assert targeted.accounts.get(username) == whole.accounts.get(username), username
        wanted = csrknowledge.node_name_of(
            username,
            accounts.store.get_by_name(csrknowledge.requester_account(username, NS) or "-", NS),
        )
        if wanted is not None:
            assert targeted.nodes.get(wanted) == whole.nodes.get(wanted), username
    serving = csrknowledge.cached_knowledge(request("system:node:win-a"), accounts, nodes, NS)
    assert serving.nodes["win-a"].addresses == {"10.0.0.1", "win-a.example.com"}


def test_the_requester_account_is_only_one_of_the_bootstrap_namespace() -> None:
    assert csrknowledge.requester_account(f"system:serviceaccount:{NS}:wmco-1", NS) == "wmco-1"
    assert csrknowledge.requester_account("system:serviceaccount:other:wmco-1", NS) is None
    assert csrknowledge.requester_account(f"system:serviceaccount:{NS}:", NS) is None
    assert csrknowledge.requester_account("system:node:win-a", NS) is None
