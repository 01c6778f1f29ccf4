"""The strict CSR approver against the REAL API server.

Covers: a kubelet client CSR made with a token of the per-host bootstrap ServiceAccount the
operator made, for the node name that account names, is approved and then signed by the
controller-manager; CSRs made by that account for another name, with extra SANs or with wrong
usages are denied with a Warning Event; a CSR of an account the operator did not make is left
pending with no Event; an account whose node name is not known yet holds its CSR until the name is
known; a CSR of an earlier account of the same name (another UID) is left alone while one of the
current account is approved; deleting an account revokes its tokens; serving CSRs of a managed node
are approved for its name and address and denied with an extra SAN; a serving CSR of a node we do
not manage is left alone; and tokens never reach logs or Events.

CSRs are created AS the requester: with a TokenRequest token of the bootstrap ServiceAccount (the
namespace's group is bound to ``system:node-bootstrapper`` as ``deploy/`` does) or with a
``system:node:<name>`` client certificate, so ``spec.username``, ``spec.uid`` and ``spec.groups``
are set by the API server exactly as for a real kubelet. Nothing else approves CSRs on this
control plane.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import ipaddress
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.certificates_v1 import CertificateSigningRequestSpec
from lightkube.models.core_v1 import NodeAddress, NodeStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.certificates_v1 import CertificateSigningRequest
from lightkube.resources.core_v1 import Event, Node, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding

import kube_helpers
from wmco import kube as kapi
from wmco import names
from wmco.controllers import csr as csr_controller
from wmco.runtime import manager as manager_mod
from wmco.settings import Settings
from wmco_sandbox.controlplane import ControlPlane

pytestmark = pytest.mark.integration

# Generous: informers reconnect with backoff when the API server is busy (CI has 2 cores).
DEADLINE = 45.0
CLIENT_USAGES = ["digital signature", "client auth"]
SERVING_USAGES = ["digital signature", "server auth"]


eventually = functools.partial(kube_helpers.eventually, timeout=DEADLINE, poll=0.1)


# --- requests ---------------------------------------------------------------------------------


def csr_pem(cn: str, dns: Sequence[str] = (), ips: Sequence[str] = ()) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, names.NODES_GROUP),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    request = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    return base64.b64encode(request).decode()


async def submit(
    client: AsyncClient, request: str, signer: str, usages: Sequence[str], prefix: str
) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await client.create(
        CertificateSigningRequest(
            metadata=ObjectMeta(name=name),
            spec=CertificateSigningRequestSpec(
                request=request, signerName=signer, usages=list(usages)
            ),
        )
    )
    return name


@dataclass
class Cluster:
    """The admin client, the control plane, and everything a test created (deleted at the end)."""

    kube: AsyncClient
    plane: ControlPlane
    bootstrap_namespace: str
    csrs: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    clients: list[AsyncClient] = field(default_factory=list)

    async def account(
        self,
        *,
        ours: bool = True,
        node_name: str | None = None,
        address: str = "127.0.9.9",
        name: str | None = None,
    ) -> ServiceAccount:
        """Make a bootstrap ServiceAccount as the operator would (``ours``) or as someone else."""
        annotations = {names.INSTANCE_ADDRESS_ANNOTATION: address}
        if node_name is not None:
            annotations[names.INSTANCE_NODE_NAME_ANNOTATION] = node_name
        return await self.kube.create(
            ServiceAccount(
                metadata=ObjectMeta(
                    name=name or f"windows-host-{secrets.token_hex(8)}",
                    namespace=self.bootstrap_namespace,
                    labels={names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE} if ours else None,
                    annotations=annotations,
                )
            )
        )

    async def token(self, account: ServiceAccount) -> str:
        """A TokenRequest token of ``account``, what the operator puts into a host's kubeconfig."""
        assert account.metadata is not None and account.metadata.name
        granted = await kapi.request_token(
            self.kube,
            account.metadata.name,
            namespace=self.bootstrap_namespace,
            expiration_seconds=600,
        )
        return granted.token

    async def as_account(self, account: ServiceAccount) -> AsyncClient:
        return self.as_bearer(await self.token(account))

    def as_bearer(self, token: str) -> AsyncClient:
        config = KubeConfig.from_dict(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "sandbox",
                        "cluster": {
                            "server": self.plane.server,
                            "certificate-authority-data": base64.b64encode(
                                self.plane.ca_pem
                            ).decode(),
                        },
                    }
                ],
                "users": [{"name": "bootstrap", "user": {"token": token}}],
                "contexts": [
                    {"name": "bootstrap", "context": {"cluster": "sandbox", "user": "bootstrap"}}
                ],
                "current-context": "bootstrap",
            }
        )
        client = AsyncClient(config=config)
        self.clients.append(client)
        return client

    def as_node(self, node: str) -> AsyncClient:
        path = self.plane.kubeconfig_for(f"{names.NODE_USER_PREFIX}{node}", [names.NODES_GROUP])
        client = AsyncClient(config=KubeConfig.from_file(path))
        self.clients.append(client)
        return client

    async def node(self, name: str, address: str) -> None:
        await self.kube.create(
            Node(
                metadata=ObjectMeta(
                    name=name,
                    labels={names.OS_LABEL: names.OS_LABEL_WINDOWS},
                    annotations={names.INSTANCE_ADDRESS_ANNOTATION: address},
                )
            )
        )
        self.nodes.append(name)

    async def submit(
        self,
        client: AsyncClient,
        request: str,
        *,
        signer: str = names.CSR_SIGNER_KUBELET_CLIENT,
        usages: Sequence[str] = CLIENT_USAGES,
    ) -> str:
        name = await submit(client, request, signer, usages, "csr-test")
        self.csrs.append(name)
        return name

    async def conditions(self, name: str) -> dict[str, str]:
        """Condition type -> reason of a CSR."""
        got = await self.kube.get(CertificateSigningRequest, name)
        return {
            c.type: c.reason or "" for c in (got.status.conditions if got.status else None) or []
        }

    async def wait_condition(self, name: str, kind: str) -> None:
        async def check() -> bool:
            return kind in await self.conditions(name)

        await eventually(check, f"CSR {name} to be {kind}")

    async def events(self, csr_name: str) -> list[Event]:
        return [
            event
            async for event in self.kube.list(Event, namespace="default")
            if event.involvedObject.name == csr_name
        ]


@pytest.fixture
async def cluster(
    control_plane: ControlPlane, kube: AsyncClient, namespace: str
) -> AsyncIterator[Cluster]:
    # The test's namespace holds its bootstrap accounts; its group may bootstrap kubelets, as the
    # static ClusterRoleBinding of deploy/ allows for the real bootstrap namespace.
    binding = await kube.create(kube_helpers.node_bootstrapper_binding(namespace))
    client = kapi.make_client(control_plane.kubeconfig)
    manager = manager_mod.Manager(client, port=0)
    settings = Settings(
        namespace=namespace,
        machine_api_namespace=namespace,
        bootstrap_namespace=namespace,
        leader_election=False,
    )
    csr_controller.setup(manager, settings, kapi.EventRecorder(client))
    task = asyncio.create_task(manager.run())
    state = Cluster(kube, control_plane, namespace)
    try:
        yield state
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()
        for other in state.clients:
            await other.close()
        for name in state.csrs:
            await kapi.delete(kube, CertificateSigningRequest, name)
        for name in state.nodes:
            await kapi.delete(kube, Node, name)
        await kapi.delete(kube, ClusterRoleBinding, binding.metadata.name or "")  # type: ignore[union-attr]


async def stays_pending(cluster: Cluster, *csrs: str, seconds: float = 1.0) -> None:
    """Assert the CSRs keep no Approved/Denied condition and got no Event for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name in csrs:
            assert await cluster.conditions(name) == {}, f"CSR {name} was decided"
        await asyncio.sleep(0.2)
    for name in csrs:
        assert await cluster.events(name) == [], f"CSR {name} got an Event"


# --- tests ------------------------------------------------------------------------------------


async def test_client_csr_of_our_account_is_approved_then_signed(cluster: Cluster) -> None:
    node = f"win-{secrets.token_hex(3)}"
    bootstrap = await cluster.as_account(await cluster.account(node_name=node))
    name = await cluster.submit(bootstrap, csr_pem(f"system:node:{node}"))

    await cluster.wait_condition(name, "Approved")
    assert await cluster.conditions(name) == {"Approved": names.CSR_APPROVAL_REASON}

    async def signed() -> bool:
        got = await cluster.kube.get(CertificateSigningRequest, name)
        return bool(got.status and got.status.certificate)

    await eventually(signed, "the controller-manager to sign the approved CSR")
    got = await cluster.kube.get(CertificateSigningRequest, name)
    cert = x509.load_pem_x509_certificate(base64.b64decode(got.status.certificate))  # type: ignore[union-attr, arg-type]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        f"system:node:{node}"
    )
    [event] = await cluster.events(name)
    assert (event.type, event.reason) == ("Normal", "CSRApproved")


async def test_client_csrs_breaking_a_rule_are_denied_with_an_event(cluster: Cluster) -> None:
    node = f"win-{secrets.token_hex(3)}"
    bootstrap = await cluster.as_account(await cluster.account(node_name=node))
    other_name = await cluster.submit(bootstrap, csr_pem("system:node:someone-else"))
    extra_san = await cluster.submit(
        bootstrap, csr_pem(f"system:node:{node}", dns=[node], ips=["127.0.9.9"])
    )
    wrong_usages = await cluster.submit(
        bootstrap,
        csr_pem(f"system:node:{node}"),
        usages=["digital signature", "client auth", "server auth"],
    )
    expected = {
        other_name: "expected 'system:node:",
        extra_san: "subject alt names",
        wrong_usages: "usages",
    }
    for name, words in expected.items():
        await cluster.wait_condition(name, "Denied")
        assert await cluster.conditions(name) == {"Denied": names.CSR_DENIAL_REASON}
        [event] = await cluster.events(name)
        assert (event.type, event.reason) == ("Warning", "CSRDenied")
        assert words in (event.message or ""), event.message
        got = await cluster.kube.get(CertificateSigningRequest, name)
        assert not (got.status and got.status.certificate)


async def test_csr_of_an_account_we_did_not_make_is_left_alone(cluster: Cluster) -> None:
    node = f"win-{secrets.token_hex(3)}"
    foreign = await cluster.as_account(await cluster.account(ours=False, node_name=node))
    ignored = await cluster.submit(foreign, csr_pem(f"system:node:{node}"))
    # A CSR created after it, that the controller does approve, shows it has looked.
    ours_node = f"win-{secrets.token_hex(3)}"
    ours = await cluster.as_account(await cluster.account(node_name=ours_node))
    approved = await cluster.submit(ours, csr_pem(f"system:node:{ours_node}"))
    await cluster.wait_condition(approved, "Approved")
    await stays_pending(cluster, ignored)


async def test_csr_waits_for_the_node_name_of_its_account(cluster: Cluster) -> None:
    node = f"win-{secrets.token_hex(3)}"
    account = await cluster.account(node_name=None)
    name = await cluster.submit(await cluster.as_account(account), csr_pem(f"system:node:{node}"))
    await stays_pending(cluster, name, seconds=0.5)

    assert account.metadata is not None
    await cluster.kube.patch(
        ServiceAccount,
        account.metadata.name or "",
        {"metadata": {"annotations": {names.INSTANCE_NODE_NAME_ANNOTATION: node}}},
        namespace=cluster.bootstrap_namespace,
    )
    await cluster.wait_condition(name, "Approved")


async def test_csr_of_an_earlier_account_of_the_same_name_is_left_alone(cluster: Cluster) -> None:
    node = f"win-{secrets.token_hex(3)}"
    first = await cluster.account(node_name=None)
    assert first.metadata is not None and first.metadata.name
    stale = await cluster.submit(await cluster.as_account(first), csr_pem(f"system:node:{node}"))
    # The account is deleted and made again (another configuration pass): same name, new UID.
    await kapi.delete(
        cluster.kube, ServiceAccount, first.metadata.name, namespace=cluster.bootstrap_namespace
    )

    async def gone() -> bool:
        return (
            await kapi.get(
                cluster.kube,
                ServiceAccount,
                first.metadata.name or "",
                namespace=cluster.bootstrap_namespace,
            )
            is None
        )

    await eventually(gone, "the first account to be deleted")
    second = await cluster.account(node_name=node, name=first.metadata.name)
    assert second.metadata is not None and second.metadata.uid != first.metadata.uid
    current = await cluster.submit(await cluster.as_account(second), csr_pem(f"system:node:{node}"))
    await cluster.wait_condition(current, "Approved")
    await stays_pending(cluster, stale)


async def test_deleting_an_account_revokes_its_token(cluster: Cluster) -> None:
    node = f"win-{secrets.token_hex(3)}"
    account = await cluster.account(node_name=node)
    assert account.metadata is not None and account.metadata.name
    bootstrap = await cluster.as_account(account)
    await cluster.submit(bootstrap, csr_pem(f"system:node:{node}"))  # the token works
    await kapi.delete(
        cluster.kube, ServiceAccount, account.metadata.name, namespace=cluster.bootstrap_namespace
    )

    async def refused() -> bool:
        try:
            await cluster.submit(bootstrap, csr_pem(f"system:node:{node}"))
        except ApiError as exc:
            return exc.status.code == 401
        return False

    await eventually(refused, "the token of the deleted account to be refused (401)")


async def test_serving_csrs_of_a_managed_node(cluster: Cluster) -> None:
    node, address = f"win-{secrets.token_hex(3)}", "127.0.7.7"
    await cluster.node(node, address)
    as_node = cluster.as_node(node)
    good = await cluster.submit(
        as_node,
        csr_pem(f"system:node:{node}", dns=[node], ips=[address]),
        signer=names.CSR_SIGNER_KUBELET_SERVING,
        usages=SERVING_USAGES,
    )
    extra = await cluster.submit(
        as_node,
        csr_pem(f"system:node:{node}", dns=[node, "evil.example.com"], ips=[address]),
        signer=names.CSR_SIGNER_KUBELET_SERVING,
        usages=SERVING_USAGES,
    )
    # A node the operator does not manage (a Linux node, say): not ours to decide.
    linux = f"linux-{secrets.token_hex(3)}"
    unmanaged = await cluster.submit(
        cluster.as_node(linux),
        csr_pem(f"system:node:{linux}", dns=[linux]),
        signer=names.CSR_SIGNER_KUBELET_SERVING,
        usages=SERVING_USAGES,
    )

    await cluster.wait_condition(good, "Approved")
    await cluster.wait_condition(extra, "Denied")
    [event] = await cluster.events(extra)
    assert (event.type, event.reason) == ("Warning", "CSRDenied")
    assert "evil.example.com" in (event.message or "")
    await stays_pending(cluster, unmanaged)


async def test_tokens_never_reach_logs_or_events(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    node = f"win-{secrets.token_hex(3)}"
    account = await cluster.account(node_name=node)
    assert account.metadata is not None and account.metadata.name
    token = await cluster.token(account)
    bootstrap = cluster.as_bearer(token)
    approved = await cluster.submit(bootstrap, csr_pem(f"system:node:{node}"))
    denied = await cluster.submit(bootstrap, csr_pem("system:node:intruder"))
    await cluster.wait_condition(approved, "Approved")
    await cluster.wait_condition(denied, "Denied")

    async def both_events() -> bool:
        return bool(await cluster.events(approved)) and bool(await cluster.events(denied))

    await eventually(both_events, "Events for both CSRs")
    messages = "\n".join(
        [
            event.message or ""
            async for event in cluster.kube.list(Event, namespace="default")
            if event.involvedObject.name in (approved, denied)
        ]
    )
    assert caplog.text and messages
    # The account is named, so the checks below mean something.
    assert account.metadata.name in caplog.text
    signature = token.rsplit(".", 1)[1]
    for text in (caplog.text, messages):
        assert token not in text
        assert signature not in text


# --- what the operator knows (pure, no API) -----------------------------------------------------


def test_knowledge_names_our_accounts_and_the_nodes_we_manage() -> None:
    def account(name: str, uid: str | None, **annotations: str) -> ServiceAccount:
        return ServiceAccount(
            metadata=ObjectMeta(name=name, namespace="bs", uid=uid, annotations=annotations)
        )

    def node(name: str, annotations: dict[str, str] | None = None, *ips: str) -> Node:
        return Node(
            metadata=ObjectMeta(name=name, annotations=annotations),
            status=NodeStatus(addresses=[NodeAddress(type="InternalIP", address=ip) for ip in ips]),
        )

    address_key, name_key = names.INSTANCE_ADDRESS_ANNOTATION, names.INSTANCE_NODE_NAME_ANNOTATION
    knowledge = csr_controller.knowledge_from(
        [
            account("windows-host-a", "uid-a", **{address_key: "10.0.0.1", name_key: "win-a"}),
            account("windows-host-b", "uid-b", **{address_key: "10.0.0.2"}),
            account("windows-host-c", None, **{address_key: "10.0.0.3", name_key: "win-c"}),
            account("windows-host-d", "uid-d", **{name_key: "win-d"}),  # no address: not ours
        ],
        [
            node("win-a", None, "192.168.1.1"),
            node("win-b", {address_key: "10.0.0.9"}),
            node("win-c"),  # named only by an account without a UID: not ours
            node("linux-1", None, "192.168.1.2"),
        ],
    )
    a, b = "system:serviceaccount:bs:windows-host-a", "system:serviceaccount:bs:windows-host-b"
    assert set(knowledge.accounts) == {a, b}
    assert knowledge.accounts[a].uid == "uid-a"
    assert knowledge.accounts[a].group == "system:serviceaccounts:bs"
    assert knowledge.accounts[b].node_name is None
    assert set(knowledge.nodes) == {"win-a", "win-b"}
    # Only addresses the operator recorded count; what the kubelet reports in status does not.
    assert knowledge.nodes["win-a"].addresses == {"10.0.0.1"}
    assert knowledge.nodes["win-b"].addresses == {"10.0.0.9"}
