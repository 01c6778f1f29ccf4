"""Per-instance bootstrap tokens and the kubelet's bootstrap kubeconfig.

The reference operator hands every Windows kubelet the cluster-wide node-bootstrapper token of
OpenShift. We mint one short-lived bootstrap token per instance instead (a Secret
``kube-system/bootstrap-token-<id>``), so that:

* it works on plain Kubernetes, where bootstrap tokens are the standard way a kubelet joins;
* the CSR approver can tie a kubelet client CSR to the instance the token was minted for: the
  Secret carries the instance address and the node name that instance reported;
* the token expires on its own if the operator dies, and is deleted once the node is Ready.

The API server URL comes from the settings or, on plain Kubernetes, from ``kube-public/cluster-info``
(the kubeadm convention); the CA from cluster-info or the ``kube-root-ca.crt`` ConfigMap that
every namespace carries.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import logging
import secrets
import string
from typing import Any

import yaml
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Secret

from wmco import kube, names
from wmco.settings import Settings

log = logging.getLogger(__name__)

_TOKEN_ALPHABET = string.ascii_lowercase + string.digits
_REUSE_FRACTION = 0.5
"""A token is reused only while more than this fraction of its lifetime is left."""


class BootstrapError(RuntimeError):
    """The cluster does not say how a kubelet should reach it."""


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """A bootstrap token; :meth:`__repr__` hides the secret half."""

    token_id: str
    secret: str = dataclasses.field(repr=False)

    @property
    def bearer(self) -> str:
        """``<id>.<secret>``, what a kubelet sends."""
        return f"{self.token_id}.{self.secret}"


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterEndpoint:
    """Where kubelets reach the API server, and the CA that signs its serving certificate."""

    server: str
    ca_pem: bytes


def secret_name(token_id: str) -> str:
    """The Secret that holds a bootstrap token."""
    return f"{names.BOOTSTRAP_TOKEN_SECRET_PREFIX}{token_id}"


def _random(length: int) -> str:
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(length))


def _expiry(secret: Secret) -> datetime.datetime | None:
    data = secret.data or {}
    raw = data.get("expiration")
    if not raw:
        return None
    try:
        text = base64.b64decode(raw).decode()
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _decoded(secret: Secret, key: str) -> str:
    value = (secret.data or {}).get(key)
    return base64.b64decode(value).decode() if value else ""


async def tokens_for(client: kube.Client, address: str) -> list[Secret]:
    """The operator's bootstrap token Secrets minted for the instance at ``address``."""
    result = await kube.list_objects(
        client,
        Secret,
        namespace=names.KUBE_SYSTEM_NAMESPACE,
        labels={names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE},
    )
    return [
        s
        for s in result.items
        if s.type == names.BOOTSTRAP_TOKEN_SECRET_TYPE
        and ((s.metadata.annotations if s.metadata else None) or {}).get(
            names.INSTANCE_ADDRESS_ANNOTATION
        )
        == address
    ]


async def ensure_token(
    client: kube.Client, *, address: str, node_name: str, settings: Settings
) -> Token:
    """Return a usable bootstrap token for the instance, minting one when needed.

    A token of this instance that is still fresh (more than half its lifetime left) and names the
    same node is reused, so a configuration interrupted and resumed does not rewrite the
    kubelet's bootstrap kubeconfig. Stale tokens of the instance are deleted.
    """
    now = datetime.datetime.now(datetime.UTC)
    ttl = datetime.timedelta(seconds=settings.bootstrap_token_ttl)
    for existing in await tokens_for(client, address):
        expiry = _expiry(existing)
        meta = existing.metadata or ObjectMeta()
        annotations = meta.annotations or {}
        fresh = expiry is not None and expiry - now > ttl * _REUSE_FRACTION
        if fresh and annotations.get(names.INSTANCE_NODE_NAME_ANNOTATION) == node_name:
            return Token(_decoded(existing, "token-id"), _decoded(existing, "token-secret"))
        await kube.delete(client, Secret, meta.name or "", namespace=names.KUBE_SYSTEM_NAMESPACE)
    token = Token(_random(6), _random(16))
    expiration = (now + ttl).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    await kube.create(
        client,
        Secret(
            metadata=ObjectMeta(
                name=secret_name(token.token_id),
                namespace=names.KUBE_SYSTEM_NAMESPACE,
                labels={names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE},
                annotations={
                    names.INSTANCE_ADDRESS_ANNOTATION: address,
                    names.INSTANCE_NODE_NAME_ANNOTATION: node_name,
                },
            ),
            type=names.BOOTSTRAP_TOKEN_SECRET_TYPE,
            stringData={
                "token-id": token.token_id,
                "token-secret": token.secret,
                "expiration": expiration,
                "usage-bootstrap-authentication": "true",
                "auth-extra-groups": names.BOOTSTRAP_TOKEN_GROUP,
                "description": f"wmco: kubelet bootstrap of the Windows instance {address}",
            },
        ),
    )
    log.info(
        "minted bootstrap token %s for instance %s (expires %s)",
        token.token_id,
        address,
        expiration,
    )
    return token


async def delete_tokens(client: kube.Client, address: str) -> int:
    """Delete every bootstrap token of the instance; return how many were deleted."""
    deleted = 0
    for existing in await tokens_for(client, address):
        name = existing.metadata.name if existing.metadata else None
        if name and await kube.delete(client, Secret, name, namespace=names.KUBE_SYSTEM_NAMESPACE):
            deleted += 1
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
