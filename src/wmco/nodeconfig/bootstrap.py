"""Per-host bootstrap credentials and the kubelet's bootstrap kubeconfig.

The reference operator hands every Windows kubelet the cluster-wide node-bootstrapper token of
OpenShift. We give each host a credential of its own, without touching ``kube-system``:

* one ServiceAccount per host (``windows-host-<hash of the address>``) in a namespace that holds
  nothing else (``settings.bootstrap_namespace``). ``deploy/`` binds that namespace's group,
  ``system:serviceaccounts:<namespace>``, to ``system:node-bootstrapper`` with ONE static
  ClusterRoleBinding, so the operator needs no right to write RBAC: only to create and delete
  ServiceAccounts there and to request their tokens;
* a short-lived token of it from the TokenRequest API (``bootstrap_token_ttl``) goes into the
  kubelet's bootstrap kubeconfig. The kubelet authenticates as
  ``system:serviceaccount:<namespace>:<account>`` and creates its client CSR with it;
* the CSR approver ties that CSR to the host: the requester is the account made for the host,
  ``spec.uid`` is that account's UID, and the account's annotations carry the host's address and
  the node name the host reported (:mod:`wmco.controllers.csr`);
* the account is deleted once the node is Ready (and when the host is removed), which revokes
  every token of it at once; a token of an operator that died meanwhile expires by itself.

A token is requested only when the kubelet has no valid client certificate (its Node missing or
not Ready, or ``kubelet-client-current.pem`` missing, unparseable or about to end:
:func:`wmco.nodeconfig.configure.needs_bootstrap_token`); only then is the bootstrap kubeconfig
written. No service depends on that file (the kubelet reads it only while it has no valid client
certificate), so nothing restarts for it, and a pass over a healthy node neither makes an account
nor writes the file.

The API server URL comes from the settings or, on plain Kubernetes, from ``kube-public/cluster-info``
(the kubeadm convention); the CA from cluster-info or the ``kube-root-ca.crt`` ConfigMap that
every namespace carries.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import json
import logging
from typing import Any

import yaml
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, ServiceAccount

from wmco import kube, names
from wmco.settings import Settings

log = logging.getLogger(__name__)


class BootstrapError(RuntimeError):
    """The cluster does not say how a kubelet should reach it."""


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """A host's bootstrap token; :meth:`__repr__` hides the token itself.

    Attributes:
        account: ``<namespace>/<name>`` of the ServiceAccount it belongs to (for messages).
        value: The bearer token (a JWT): secret, never logged.
        expiration: When it expires (``None`` if the API server did not say).
    """

    account: str
    value: str = dataclasses.field(repr=False)
    expiration: datetime.datetime | None = None

    @property
    def bearer(self) -> str:
        """What a kubelet sends (``Authorization: Bearer <it>``)."""
        return self.value


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterEndpoint:
    """Where kubelets reach the API server, and the CA that signs its serving certificate."""

    server: str
    ca_pem: bytes


def account_name(address: str) -> str:
    """The bootstrap ServiceAccount of the instance at ``address`` (a valid object name).

    A hash, because an address may be an IPv6 address or a long DNS name; the address itself is
    in the account's annotations.
    """
    digest = hashlib.sha256(address.encode()).hexdigest()[:16]
    return f"{names.BOOTSTRAP_ACCOUNT_PREFIX}{digest}"


def _annotations(account: ServiceAccount) -> dict[str, str]:
    return dict((account.metadata.annotations if account.metadata else None) or {})


def _new_account(name: str, namespace: str, annotations: dict[str, str]) -> ServiceAccount:
    return ServiceAccount(
        metadata=ObjectMeta(
            name=name,
            namespace=namespace,
            labels={names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE},
            annotations=annotations,
        ),
        # Its token goes to a Windows host, never into a pod of this namespace.
        automountServiceAccountToken=False,
    )


async def ensure_account(
    client: kube.Client, *, address: str, node_name: str, settings: Settings
) -> ServiceAccount:
    """The instance's bootstrap ServiceAccount, created or updated to name ``node_name``.

    Raises:
        kube.NotFound: The bootstrap namespace does not exist (``deploy/`` creates it).
    """
    namespace = settings.bootstrap_namespace
    name = account_name(address)
    wanted = {
        names.INSTANCE_ADDRESS_ANNOTATION: address,
        names.INSTANCE_NODE_NAME_ANNOTATION: node_name,
    }
    existing = await kube.get(client, ServiceAccount, name, namespace=namespace)
    if existing is None:
        try:
            created = await kube.create(client, _new_account(name, namespace, wanted))
        except kube.AlreadyExists:  # made meanwhile by another pass: update it below
            existing = await kube.get(client, ServiceAccount, name, namespace=namespace)
        else:
            log.info(
                "bootstrap ServiceAccount %s/%s made for instance %s", namespace, name, address
            )
            return created
    if existing is None:
        raise kube.NotFound(404, "NotFound", f"ServiceAccount {namespace}/{name} vanished")
    current = _annotations(existing)
    if all(current.get(key) == value for key, value in wanted.items()):
        return existing
    patched = await kube.patch(
        client, ServiceAccount, name, {"metadata": {"annotations": wanted}}, namespace=namespace
    )
    if patched is None:
        raise kube.NotFound(404, "NotFound", f"ServiceAccount {namespace}/{name} vanished")
    return patched


async def issue_token(
    client: kube.Client, *, address: str, node_name: str, settings: Settings
) -> Token:
    """A fresh bootstrap token for the instance (its ServiceAccount made first when needed)."""
    account = await ensure_account(client, address=address, node_name=node_name, settings=settings)
    name = (account.metadata.name if account.metadata else None) or account_name(address)
    namespace = settings.bootstrap_namespace
    granted = await kube.request_token(
        client,
        name,
        namespace=namespace,
        expiration_seconds=int(settings.bootstrap_token_ttl),
    )
    log.info(
        "bootstrap token of %s/%s for instance %s (expires %s)",
        namespace,
        name,
        address,
        granted.expiration.isoformat() if granted.expiration else "when the API server says",
    )
    return Token(account=f"{namespace}/{name}", value=granted.token, expiration=granted.expiration)


async def delete_account(client: kube.Client, address: str, settings: Settings) -> bool:
    """Delete the instance's bootstrap ServiceAccount, which revokes its tokens.

    Returns:
        ``True`` if it existed.
    """
    name = account_name(address)
    deleted = await kube.delete(
        client, ServiceAccount, name, namespace=settings.bootstrap_namespace
    )
    if deleted:
        log.info(
            "bootstrap ServiceAccount %s/%s of instance %s deleted (its tokens are revoked)",
            settings.bootstrap_namespace,
            name,
            address,
        )
    return deleted


async def cluster_endpoint(client: kube.Client, settings: Settings) -> ClusterEndpoint:
    """Find the API server URL and CA a kubelet should use.

    Raises:
        BootstrapError: Neither the settings nor ``kube-public/cluster-info`` name a server, or no
            CA can be found.
    """
    server = settings.api_server_url
    ca_pem: bytes | None = None
    info = await kube.get(
        client, ConfigMap, names.CLUSTER_INFO_CONFIGMAP, namespace=names.KUBE_PUBLIC_NAMESPACE
    )
    if info is not None and info.data and "kubeconfig" in info.data:
        try:
            cluster = yaml.safe_load(info.data["kubeconfig"])["clusters"][0]["cluster"]
            server = server or cluster.get("server")
            if cluster.get("certificate-authority-data"):
                ca_pem = base64.b64decode(cluster["certificate-authority-data"])
        except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as exc:
            log.warning("kube-public/cluster-info is not a usable kubeconfig: %s", exc)
    if ca_pem is None:
        root = await kube.get(client, ConfigMap, "kube-root-ca.crt", namespace=settings.namespace)
        if root is not None and root.data and root.data.get("ca.crt"):
            ca_pem = root.data["ca.crt"].encode()
    if not server:
        raise BootstrapError(
            "no API server URL for kubelets: set WMCO_API_SERVER_URL or publish "
            "kube-public/cluster-info (kubeadm does)"
        )
    if ca_pem is None:
        raise BootstrapError(
            "no cluster CA for kubelets: neither kube-public/cluster-info nor "
            f"{settings.namespace}/kube-root-ca.crt carries one"
        )
    return ClusterEndpoint(server=server, ca_pem=ca_pem)


def bootstrap_kubeconfig(endpoint: ClusterEndpoint, ca_file: str, token: Token) -> bytes:
    """The kubelet's bootstrap kubeconfig (JSON), naming the CA by its path on the host."""
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": endpoint.server, "certificate-authority": ca_file},
            }
        ],
        "users": [{"name": "kubelet", "user": {"token": token.bearer}}],
        "contexts": [{"name": "kubelet", "context": {"cluster": "local", "user": "kubelet"}}],
        "current-context": "kubelet",
    }
    return json.dumps(config, indent=2).encode()
