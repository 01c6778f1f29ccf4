r"""Which CA bundle the Windows kubelets trust for client certificates (``C:\k\kubelet-ca.crt``).

The API server calls a kubelet (logs, exec, port-forward) with its *kubelet-client* certificate;
the kubelet verifies it against ``authentication.x509.clientCAFile``. So that file must hold the
CA that signs that certificate (issue 8 §5), which is not the API server's serving CA:

1. the ``kubelet_ca_configmap`` setting (``<namespace>/<name>:<key>``) when set;
2. else, on OpenShift, ``openshift-kube-apiserver-operator/kube-apiserver-to-kubelet-client-ca``
   key ``ca-bundle.crt`` (the kube-apiserver-to-kubelet signer bundle) when that ConfigMap
   exists;
3. else ``kube-system/extension-apiserver-authentication`` key ``client-ca-file`` (the API
   server's ``--client-ca-file``, which on kubeadm-style clusters also signs its kubelet client).

:func:`choose` decides purely from the ConfigMaps' data; bad input (a missing ConfigMap or key,
text that is not PEM certificates) becomes a :class:`ClientCaProblem` that the caller reports in
an Event and a log line; it never raises. The bundle's SHA-256 goes onto each Node
(``kubelet-ca-hash``), so a rotated bundle re-queues the hosts, which rewrite only that file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from typing import Final

from cryptography import x509

from wmco import names
from wmco.settings import ConfigMapKey

OPENSHIFT_SOURCE: Final = ConfigMapKey(
    names.OPENSHIFT_KUBE_APISERVER_OPERATOR_NAMESPACE,
    names.KUBELET_CLIENT_CA_CONFIGMAP,
    names.KUBELET_CLIENT_CA_KEY,
)
KUBERNETES_SOURCE: Final = ConfigMapKey(
    names.KUBE_SYSTEM_NAMESPACE,
    names.EXTENSION_APISERVER_AUTHENTICATION_CONFIGMAP,
    names.CLIENT_CA_FILE_KEY,
)

_PEM_BLOCK: Final = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n[A-Za-z0-9+/=\r\n]*?-----END \1-----", re.DOTALL
)


@dataclasses.dataclass(frozen=True, slots=True)
class ClientCa:
    """A usable bundle.

    Attributes:
        source: Where it came from.
        pem: The bundle as written to the host.
        certificates: How many certificates it holds.
    """

    source: ConfigMapKey
    pem: bytes
    certificates: int

    @property
    def sha256(self) -> str:
        """Lower-case hex digest of :attr:`pem` (the ``kubelet-ca-hash`` annotation)."""
        return hashlib.sha256(self.pem).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class ClientCaProblem:
    """Why no bundle can be used right now (for an Event and a log line).

    Attributes:
        source: The ConfigMap key that was looked at.
        reason: What is wrong, for a person.
        exists: Whether the ConfigMap itself exists (an Event can point at it).
    """

    source: ConfigMapKey
    reason: str
    exists: bool

    @property
    def message(self) -> str:
        """One sentence: what is wrong and what to do."""
        return (
            f"kubelet client CA from ConfigMap {self.source}: {self.reason}; Windows nodes keep "
            "their current kubelet-ca.crt and new ones are not configured until it is fixed "
            "(or WMCO_KUBELET_CA_CONFIGMAP names another bundle)"
        )


Choice = ClientCa | ClientCaProblem


def sources(override: ConfigMapKey | None) -> tuple[ConfigMapKey, ...]:
    """The ConfigMap keys :func:`choose` looks at, in order of preference."""
    return (override,) if override is not None else (OPENSHIFT_SOURCE, KUBERNETES_SOURCE)


def parse_bundle(text: str) -> tuple[bytes, int]:
    """Check that ``text`` is one or more PEM certificates and nothing else.

    Returns:
        The bundle as bytes (with a final newline) and its number of certificates.

    Raises:
        ValueError: No certificate, a PEM block of another type (a private key!), text outside
            the blocks, or a certificate that does not parse.
    """
    blocks = list(_PEM_BLOCK.finditer(text))
    if not blocks:
        raise ValueError("it holds no PEM certificate")
    kinds = {block.group(1) for block in blocks}
    if kinds != {"CERTIFICATE"}:
        other = sorted(kinds - {"CERTIFICATE"})
        raise ValueError(f"it holds PEM blocks other than certificates ({', '.join(other)})")
    if _PEM_BLOCK.sub("", text).strip():
        raise ValueError("it holds text outside its PEM certificates")
    try:
        data = text.strip().encode("ascii") + b"\n"
    except UnicodeEncodeError:
        raise ValueError("it holds characters other than ASCII") from None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError("a certificate in it does not parse") from None
    return data, len(certificates)


def choose(
    override: ConfigMapKey | None,
    configmaps: Mapping[tuple[str, str], Mapping[str, str] | None],
) -> Choice:
    """Decide the bundle from the ConfigMaps' data.

    Args:
        override: The ``kubelet_ca_configmap`` setting.
        configmaps: ``(namespace, name)`` -> its ``data`` (``{}`` when it has none); a ConfigMap
            that does not exist is absent or ``None``.

    Returns:
        The bundle, or why there is none.
    """
    candidates = sources(override)
    source = next(
        (key for key in candidates if configmaps.get((key.namespace, key.name)) is not None),
        candidates[-1],
    )
    data = configmaps.get((source.namespace, source.name))
    if data is None:
        return ClientCaProblem(source, "the ConfigMap does not exist", exists=False)
    value = data.get(source.key)
    if not value:
        return ClientCaProblem(source, f"it has no key {source.key!r}", exists=True)
    try:
        pem, count = parse_bundle(value)
    except ValueError as exc:
        return ClientCaProblem(source, f"key {source.key!r} is not usable: {exc}", exists=True)
    return ClientCa(source=source, pem=pem, certificates=count)
