r"""Kubeconfig files on the simulated host's disk, and the lightkube clients made from them.

Kubeconfigs on a Windows node name their files with Windows paths (``C:\\k\\kubelet-ca.crt``,
``c:\\var\\lib\\kubelet\\pki\\kubelet-client-current.pem``) that only exist on the host's
virtual disk. So a kubeconfig is first *resolved* here: every referenced file is read through the
host and the result is one :class:`ResolvedKubeconfig` with inline PEM data. From that a
``lightkube.KubeConfig`` is built with ``*-data`` fields only; lightkube turns those into
private temporary files (``NamedTemporaryFile``, mode 0600) for the TLS context, so nothing from
the virtual disk ever lands in a predictable place on the real one.

The kubeconfig the kubelet writes after TLS bootstrap has exactly the shape of
``bootstrap.writeKubeconfigFromBootstrapping`` (clusters ``default-cluster``, user
``default-auth`` pointing at ``kubelet-client-current.pem`` for both certificate and key).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2
import yaml
from lightkube import AsyncClient, KubeConfig
from lightkube.config.models import Cluster, User

from wmco_sandbox.winhost.kubelet import options as kubelet_options
from wmco_sandbox.winhost.kubelet import pki as kubelet_pki

__all__ = [
    "KubeconfigError",
    "ResolvedKubeconfig",
    "kubelet_kubeconfig",
    "make_client",
    "resolve_kubeconfig",
]

ReadFile = Callable[[str], bytes | None]


class KubeconfigError(Exception):
    """A kubeconfig, or a file it references, is missing or malformed."""


@dataclass(frozen=True, slots=True)
class ResolvedKubeconfig:
    """The current context of a kubeconfig, with every referenced file read in.

    Attributes:
        path: Where the kubeconfig lives on the host.
        server: The API server URL.
        ca_pem: The cluster CA (``None``: system trust, or ``insecure``).
        ca_path: The Windows path of the CA file when given by path (kept for the kubeconfig
            that the kubelet writes after bootstrap).
        insecure: ``insecure-skip-tls-verify``.
        token: A bearer token (bootstrap token ``<id>.<secret>`` or service-account token).
        client: Client certificate and key, if any.
    """

    path: str
    server: str
    ca_pem: bytes | None
    ca_path: str | None
    insecure: bool
    token: str | None
    client: kubelet_pki.CertBundle | None


def _abs(kubeconfig_path: str, ref: str) -> str:
    if kubelet_options.is_win_absolute(ref):
        return ref
    return kubelet_options.win_join(kubelet_options.win_dirname(kubeconfig_path), ref)


def _named(doc: dict[str, Any], section: str, name: str, field: str) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(field) or {}
            if isinstance(value, dict):
                return value
    raise KubeconfigError(f'invalid configuration: {field} "{name}" not found')


def resolve_kubeconfig(path: str, read_file: ReadFile) -> ResolvedKubeconfig:
    """Read a kubeconfig and every file it references from the host's disk.

    Args:
        path: The kubeconfig's Windows path.
        read_file: Reads a host file (``None`` if missing).

    Returns:
        The resolved current context.

    Raises:
        KubeconfigError: When the file, its context, or a referenced file is missing or bad.
    """
    data = read_file(path)
    if data is None:
        raise KubeconfigError(f"stat {path}: The system cannot find the file specified.")
    try:
        doc = yaml.safe_load(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise KubeconfigError(f'error loading config file "{path}": {err}') from err
    if not isinstance(doc, dict):
        raise KubeconfigError(f'error loading config file "{path}": not a kubeconfig')
    current = doc.get("current-context")
    if not current:
        raise KubeconfigError("invalid configuration: no configuration has been provided")
    context = _named(doc, "contexts", str(current), "context")
    cluster = _named(doc, "clusters", str(context.get("cluster", "")), "cluster")
    user = _named(doc, "users", str(context.get("user", "")), "user") if context.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise KubeconfigError("invalid configuration: no server found for cluster")

    def read_ref(ref: str, what: str) -> bytes:
        full = _abs(path, ref)
        content = read_file(full)
        if content is None:
            raise KubeconfigError(
                f"unable to read {what} {full}: open {full}: The system cannot find the file "
                "specified."
            )
        return content

    def data_or_file(
        data_key: str, file_key: str, section: dict[str, Any], what: str
    ) -> bytes | None:
        if section.get(data_key):
            try:
                return base64.b64decode(section[data_key], validate=True)
            except ValueError as err:
                raise KubeconfigError(f"invalid {data_key}: {err}") from err
        if section.get(file_key):
            return read_ref(str(section[file_key]), what)
        return None

    ca_pem = data_or_file("certificate-authority-data", "certificate-authority", cluster, "CA file")
    ca_path = None
    if not cluster.get("certificate-authority-data") and cluster.get("certificate-authority"):
        ca_path = _abs(path, str(cluster["certificate-authority"]))
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = read_ref(str(user["tokenFile"]), "token file").decode().strip()
    cert = data_or_file("client-certificate-data", "client-certificate", user, "client certificate")
    key = data_or_file("client-key-data", "client-key", user, "client key")
    client = None
    if cert is not None:
        # The kubelet's own kubeconfig names one combined PEM for both certificate and key.
        bundle = kubelet_pki.split_bundle(cert + b"\n" + (key or b""))
        if bundle is None:
            raise KubeconfigError(f"unable to load client certificate/key pair from {path}")
        client = bundle
    return ResolvedKubeconfig(
        path=path,
        server=str(server),
        ca_pem=ca_pem,
        ca_path=ca_path,
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        token=str(token) if token else None,
        client=client,
    )


def kubelet_kubeconfig(bootstrap: ResolvedKubeconfig, cert_file: str) -> bytes:
    """Render the ``--kubeconfig`` that the kubelet writes at the start of TLS bootstrap.

    Args:
        bootstrap: The resolved bootstrap kubeconfig (server and CA are copied from it).
        cert_file: The Windows path of ``kubelet-client-current.pem``.

    Returns:
        The YAML document.
    """
    cluster: dict[str, Any] = {"server": bootstrap.server}
    if bootstrap.ca_path:
        cluster["certificate-authority"] = bootstrap.ca_path
    elif bootstrap.ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(bootstrap.ca_pem).decode()
    if bootstrap.insecure:
        cluster["insecure-skip-tls-verify"] = True
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": cluster}],
        "users": [
            {
                "name": "default-auth",
                "user": {"client-certificate": cert_file, "client-key": cert_file},
            }
        ],
        "contexts": [
            {
                "name": "default-context",
                "context": {
                    "cluster": "default-cluster",
                    "user": "default-auth",
                    "namespace": "default",
                },
            }
        ],
        "current-context": "default-context",
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def lightkube_config(
    resolved: ResolvedKubeconfig, client: kubelet_pki.CertBundle | None = None
) -> KubeConfig:
    """Build a lightkube configuration with inline data only.

    Args:
        resolved: Server, CA and default credentials.
        client: A client certificate to use instead of the kubeconfig's credentials.

    Returns:
        The lightkube configuration.
    """
    cluster = Cluster(
        server=resolved.server,
        certificate_auth_data=_b64(resolved.ca_pem) if resolved.ca_pem else None,
        insecure=resolved.insecure,
    )
    bundle = client or resolved.client
    if bundle is not None:
        user = User(client_cert_data=_b64(bundle.cert_pem), client_key_data=_b64(bundle.key_pem))
    else:
        user = User(token=resolved.token)
    return KubeConfig.from_one(cluster=cluster, user=user, context_name="kubelet")


def make_client(
    resolved: ResolvedKubeconfig,
    client: kubelet_pki.CertBundle | None = None,
    *,
    timeout: float = 10.0,
) -> AsyncClient:
    """Create a lightkube ``AsyncClient`` (environment proxies ignored).

    Args:
        resolved: Server, CA and default credentials.
        client: A client certificate to use instead of the kubeconfig's credentials.
        timeout: Request timeout in seconds (watches have no read timeout).

    Returns:
        The client; the caller closes it.
    """
    return AsyncClient(
        config=lightkube_config(resolved, client),
        timeout=httpx2.Timeout(timeout),
        trust_env=False,
        field_manager="kubelet",
    )
