"""Keys, certificate requests and certificate files of the simulated kubelet (pure functions).

The kubelet's certificate manager (client-go ``util/certificate``) generates a fresh ECDSA P-256
key for every request, sends a PKCS#10 request whose subject is ``CN=system:node:<name>,
O=system:nodes`` and stores what the signer returns as ONE PEM file (certificate blocks, then the
``EC PRIVATE KEY`` block) named ``kubelet-<client|server>-<timestamp>.pem``, reached through
``kubelet-<client|server>-current.pem``. The virtual disk has no symbolic links, so the
``-current`` file is written as a copy. Everything here is deterministic given its inputs, so
the decisions (is this certificate still usable? does it cover the node's addresses?) are unit
testable without any cluster.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "CLIENT_SIGNER",
    "CLIENT_USAGES",
    "SERVING_SIGNER",
    "SERVING_USAGES",
    "CertBundle",
    "bundle_pem",
    "client_csr",
    "covers",
    "new_key",
    "node_subject_cn",
    "serving_csr",
    "split_bundle",
    "still_valid",
    "timestamped_name",
]

CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
SERVING_SIGNER = "kubernetes.io/kubelet-serving"
# Since 1.27 the kubelet sends "key encipherment" only for RSA keys; ours are ECDSA.
CLIENT_USAGES = ("digital signature", "client auth")
SERVING_USAGES = ("digital signature", "server auth")
NODES_GROUP = "system:nodes"


@dataclass(frozen=True, slots=True)
class CertBundle:
    """A certificate chain and its private key, PEM-encoded.

    Attributes:
        cert_pem: One or more ``CERTIFICATE`` blocks, leaf first.
        key_pem: The ``EC PRIVATE KEY`` (or other private key) block.
    """

    cert_pem: bytes
    key_pem: bytes


def node_subject_cn(node_name: str) -> str:
    """Return the certificate CN of a node identity (``system:node:<name>``)."""
    return f"system:node:{node_name}"


def new_key() -> ec.EllipticCurvePrivateKey:
    """Generate the ECDSA P-256 key that the kubelet uses for each certificate request."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Encode a key as the kubelet does (``x509.MarshalECPrivateKey``: ``EC PRIVATE KEY``)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _subject(node_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODES_GROUP),
            x509.NameAttribute(NameOID.COMMON_NAME, node_subject_cn(node_name)),
        ]
    )


def client_csr(key: ec.EllipticCurvePrivateKey, node_name: str) -> bytes:
    """Build the PEM certificate request of a kubelet client certificate (no SANs)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(node_name))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def serving_csr(
    key: ec.EllipticCurvePrivateKey,
    node_name: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
) -> bytes:
    """Build the PEM certificate request of a kubelet serving certificate.

    Args:
        key: The new private key.
        node_name: The node name.
        dns_names: DNS SANs (the non-IP ``Hostname`` addresses), de-duplicated and sorted here.
        ip_addresses: IP SANs (``InternalIP``/``ExternalIP`` addresses), de-duplicated and sorted.

    Returns:
        The PEM-encoded PKCS#10 request.
    """
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in sorted(set(dns_names))]
    ips = sorted({ipaddress.ip_address(a) for a in ip_addresses}, key=lambda a: (a.version, a))
    sans += [x509.IPAddress(a) for a in ips]
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_subject(node_name))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def bundle_pem(cert_pem: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """Return the content of ``kubelet-*-current.pem``: certificate block(s), then the key."""
    return cert_pem.rstrip(b"\n") + b"\n" + key_pem(key)


def split_bundle(data: bytes) -> CertBundle | None:
    """Split a combined PEM file into certificates and key; ``None`` if either is missing."""
    certs: list[bytes] = []
    keys: list[bytes] = []
    block: list[bytes] = []
    kind = b""
    for line in data.splitlines():
        line = line.strip()
        if line.startswith(b"-----BEGIN "):
            kind, block = line, [line]
        elif line.startswith(b"-----END ") and block:
            block.append(line)
            text = b"\n".join(block) + b"\n"
            if b"CERTIFICATE" in kind and b"REQUEST" not in kind:
                certs.append(text)
            elif b"PRIVATE KEY" in kind:
                keys.append(text)
            block = []
        elif block:
            block.append(line)
    if not certs or not keys:
        return None
    return CertBundle(cert_pem=b"".join(certs), key_pem=keys[0])


def still_valid(cert_pem: bytes, now: dt.datetime) -> bool:
    """Mirror ``isClientConfigStillValid``: every certificate parses and none has expired."""
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        return False
    return bool(certs) and all(now <= c.not_valid_after_utc for c in certs)


def covers(
    cert_pem: bytes,
    node_name: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    now: dt.datetime,
) -> bool:
    """Whether a serving certificate is current and covers the wanted CN and SANs.

    Extra SANs in the certificate do not matter (as in the certificate manager).
    """
    if not still_valid(cert_pem, now):
        return False
    cert = x509.load_pem_x509_certificates(cert_pem)[0]
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns or cns[0].value != node_subject_cn(node_name):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return not dns_names and not ip_addresses
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    want_ips = {str(ipaddress.ip_address(a)) for a in ip_addresses}
    return set(dns_names) <= have_dns and want_ips <= have_ips


def timestamped_name(prefix: str, now: dt.datetime) -> str:
    """Return ``<prefix>-YYYY-MM-DD-HH-MM-SS.pem`` as the certificate file store names it."""
    return f"{prefix}-{now.strftime('%Y-%m-%d-%H-%M-%S')}.pem"
