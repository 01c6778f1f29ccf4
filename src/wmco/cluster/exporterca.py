r"""The CA behind windows_exporter's TLS, and the serving certificates it issues (pure).

windows_exporter serves ``/metrics`` over HTTPS on 9182 (issue 10 §3). The operator keeps its
own small CA in the Secret ``windows-exporter-ca`` (operator namespace) and issues every host a
serving certificate that names the node's addresses, so Prometheus can verify each endpoint of
the ``windows-exporter`` EndpointSlice with nothing but ``ca.crt`` from that Secret.

The Secret (type ``kubernetes.io/tls``) holds ``tls.crt`` / ``tls.key``, the CA that signs now,
and ``ca.crt``, the bundle to trust: the current CA and, after a rotation, the previous one
until it expires, so that hosts still serving a certificate of the old CA stay trusted until
their next pass gives them a new one.

Lifetimes (:data:`CA_LIFETIME`, :data:`SERVING_LIFETIME`) and when to renew
(:func:`ca_due_for_rotation`, :attr:`ServingRecord.renew_after`) are decided here from the
certificates themselves, never from wall-clock state kept elsewhere. What the operator issued
to a host is recorded on its Node (:data:`wmco.names.EXPORTER_CERT_ANNOTATION`, a
:class:`ServingRecord` as JSON), so the up-to-date check can tell without SSH when a host needs
a new certificate: another CA, a renewal time passed, or an address the certificate does not
name.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME: Final = datetime.timedelta(days=365)
"""How long a CA the operator creates is valid."""

SERVING_LIFETIME: Final = datetime.timedelta(days=90)
"""How long a host's serving certificate is valid (never past its CA's end)."""

RENEW_FRACTION: Final = 2 / 3
"""Share of its lifetime after which a certificate (CA or serving) is replaced."""

CA_COMMON_NAME: Final = "windows-exporter-ca"
ORGANIZATION: Final = "windows-machine-config-operator"

CERT_KEY: Final = "tls.crt"
PRIVATE_KEY_KEY: Final = "tls.key"
BUNDLE_KEY: Final = "ca.crt"
"""Data keys of the CA Secret: signing CA, its key, and the bundle Prometheus trusts."""

_BACKDATE: Final = datetime.timedelta(minutes=5)
"""Certificates start a little in the past so that a host whose clock lags still accepts them."""


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """Digital signature, plus certificate and CRL signing for a CA."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def sha256(data: bytes) -> str:
    """Lower-case hex SHA-256 (what the Node annotation and Get-FileHash compare)."""
    return hashlib.sha256(data).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A usable CA: its certificate and key, and the bundle to trust.

    Attributes:
        cert_pem: The CA certificate (``tls.crt``).
        key_pem: Its private key (``tls.key``); never in ``repr``.
        bundle_pem: The certificates to trust (``ca.crt``): this CA first, then a previous one.
    """

    cert_pem: bytes
    key_pem: bytes = dataclasses.field(repr=False)
    bundle_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed CA certificate."""
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def sha256(self) -> str:
        """Digest of :attr:`cert_pem`: which CA issued a host's certificate."""
        return sha256(self.cert_pem)

    @property
    def not_after(self) -> datetime.datetime:
        """End of the CA's validity."""
        return self.certificate.not_valid_after_utc

    def secret_data(self) -> dict[str, str]:
        """The Secret's ``stringData``."""
        return {
            CERT_KEY: self.cert_pem.decode(),
            PRIVATE_KEY_KEY: self.key_pem.decode(),
            BUNDLE_KEY: self.bundle_pem.decode(),
        }


def generate_ca(
    *, now: datetime.datetime | None = None, lifetime: datetime.timedelta = CA_LIFETIME
) -> CertificateAuthority:
    """A new self-signed CA (ECDSA P-256) whose bundle is itself."""
    moment = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{CA_COMMON_NAME}@{int(moment.timestamp())}"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - _BACKDATE)
        .not_valid_after(moment + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = _cert_pem(cert)
    return CertificateAuthority(cert_pem=pem, key_pem=_key_pem(key), bundle_pem=pem)


def rotate(
    current: CertificateAuthority,
    *,
    now: datetime.datetime | None = None,
    lifetime: datetime.timedelta = CA_LIFETIME,
) -> CertificateAuthority:
    """A new CA whose bundle still trusts ``current`` while ``current`` is valid."""
    moment = now or _now()
    fresh = generate_ca(now=moment, lifetime=lifetime)
    if current.not_after <= moment:
        return fresh
    return dataclasses.replace(fresh, bundle_pem=fresh.cert_pem + current.cert_pem)


def ca_due_for_rotation(ca: CertificateAuthority, now: datetime.datetime | None = None) -> bool:
    """Whether the CA has lived :data:`RENEW_FRACTION` of its life (or is no longer valid)."""
    cert = ca.certificate
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return (now or _now()) >= start + (end - start) * RENEW_FRACTION


def parse_secret_data(data: Mapping[str, bytes]) -> CertificateAuthority:
    """Read the CA from the Secret's (decoded) data.

    Raises:
        ValueError: A key is missing, the certificate is not a CA, the key does not belong to
            it, or the bundle does not include it (the message says which).
    """
    missing = [key for key in (CERT_KEY, PRIVATE_KEY_KEY, BUNDLE_KEY) if not data.get(key)]
    if missing:
        raise ValueError(f"it has no {', '.join(missing)}")
    try:
        cert = x509.load_pem_x509_certificate(data[CERT_KEY])
    except ValueError:
        raise ValueError(f"{CERT_KEY} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(data[PRIVATE_KEY_KEY], password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{PRIVATE_KEY_KEY} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{PRIVATE_KEY_KEY} is not an ECDSA key")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise ValueError(f"{PRIVATE_KEY_KEY} does not belong to {CERT_KEY}")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ValueError(f"{CERT_KEY} is not a CA certificate")
    try:
        bundle = x509.load_pem_x509_certificates(data[BUNDLE_KEY])
    except ValueError:
        raise ValueError(f"{BUNDLE_KEY} is not PEM certificates") from None
    if cert not in bundle:
        raise ValueError(f"{BUNDLE_KEY} does not include {CERT_KEY}")
    return CertificateAuthority(
        cert_pem=_cert_pem(cert),
        key_pem=bytes(data[PRIVATE_KEY_KEY]),
        bundle_pem=b"".join(_cert_pem(c) for c in bundle),
    )


# --- Serving certificates --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ServingRecord:
    """What the operator wrote to a host, as recorded on its Node (JSON annotation).

    Attributes:
        cert_sha256: Digest of the certificate file written.
        key_sha256: Digest of the key file written (the key itself never leaves the host).
        ca_sha256: Digest of the issuing CA certificate.
        renew_after: When a new certificate is due.
        names: The DNS names and IP addresses the certificate names.
    """

    cert_sha256: str
    key_sha256: str
    ca_sha256: str
    renew_after: datetime.datetime
    names: tuple[str, ...]

    def to_annotation(self) -> str:
        """The annotation value (compact JSON)."""
        return json.dumps(
            {
                "cert": self.cert_sha256,
                "key": self.key_sha256,
                "ca": self.ca_sha256,
                "renewAfter": self.renew_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "names": list(self.names),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_annotation(cls, value: str | None) -> ServingRecord | None:
        """Read an annotation; ``None`` when absent or not of this shape (a new one is issued)."""
        if not value:
            return None
        try:
            doc = json.loads(value)
            names = doc["names"]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                return None
            renew = datetime.datetime.strptime(doc["renewAfter"], "%Y-%m-%dT%H:%M:%SZ")
            return cls(
                cert_sha256=str(doc["cert"]),
                key_sha256=str(doc["key"]),
                ca_sha256=str(doc["ca"]),
                renew_after=renew.replace(tzinfo=datetime.UTC),
                names=tuple(names),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def why_reissue(
        self, ca: CertificateAuthority, names: Iterable[str], now: datetime.datetime | None = None
    ) -> str | None:
        """Why this certificate must be replaced, or ``None`` while it is good."""
        if self.ca_sha256 != ca.sha256:
            return "it was issued by another CA"
        if (now or _now()) >= self.renew_after:
            return f"it was due for renewal at {self.renew_after:%Y-%m-%dT%H:%M:%SZ}"
        missing = sorted(set(canonical_names(names)) - set(self.names))
        if missing:
            return f"it does not name {', '.join(missing)}"
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class ServingCertificate:
    """A host's serving certificate and key, and its record for the Node.

    Attributes:
        cert_pem: The certificate (leaf only; Prometheus holds the CA).
        key_pem: Its private key; never in ``repr``.
        record: What goes onto the Node.
    """

    cert_pem: bytes
    key_pem: bytes = dataclasses.field(repr=False)
    record: ServingRecord


def canonical_names(names: Iterable[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated names: IPs in their canonical form, DNS names lower-case."""
    result: set[str] = set()
    for name in names:
        name = name.strip()
        if not name:
            continue
        try:
            result.add(str(ipaddress.ip_address(name)))
        except ValueError:
            result.add(name.lower().rstrip("."))
    return tuple(sorted(result))


def issue_serving(
    ca: CertificateAuthority,
    node_name: str,
    names: Iterable[str],
    *,
    now: datetime.datetime | None = None,
    lifetime: datetime.timedelta = SERVING_LIFETIME,
) -> ServingCertificate:
    """Issue a serving certificate for one host (ECDSA P-256, server auth only).

    Args:
        ca: The signing CA.
        node_name: The node's name (the subject's CN, and a DNS name).
        names: Its addresses (IPs become IP SANs, the rest DNS SANs).
        now: The issuing time.
        lifetime: Validity, cut at the CA's end.

    Raises:
        ValueError: The CA's key does not load (a Secret that passed
            :func:`parse_secret_data` always does).
    """
    moment = now or _now()
    signer = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an ECDSA key")
    issuer = ca.certificate
    all_names = canonical_names((node_name, *names))
    sans: list[x509.GeneralName] = []
    for name in all_names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    key = ec.generate_private_key(ec.SECP256R1())
    start = moment - _BACKDATE
    end = min(moment + lifetime, issuer.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, node_name.lower()),
                ]
            )
        )
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )
    cert_pem, key_pem = _cert_pem(cert), _key_pem(key)
    return ServingCertificate(
        cert_pem=cert_pem,
        key_pem=key_pem,
        record=ServingRecord(
            cert_sha256=sha256(cert_pem),
            key_sha256=sha256(key_pem),
            ca_sha256=ca.sha256,
            renew_after=(start + (end - start) * RENEW_FRACTION).replace(microsecond=0),
            names=all_names,
        ),
    )


def verify_serving(cert_pem: bytes, ca: CertificateAuthority) -> bool:
    """Whether ``cert_pem`` was signed by ``ca`` (tests and diagnostics)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
