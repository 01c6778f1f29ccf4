"""The kubelet API's x509 authenticator: the client's chain against ``clientCAFile`` (pure).

As ``k8s.io/apiserver/pkg/authentication/request/x509``: the leaf must chain, through the
intermediates the client sent, to a CA of the *current* content of ``authentication.x509.
clientCAFile`` (the kubelet watches the file, so a rewritten bundle takes effect without a
restart), every certificate must be within its validity period, intermediates must be CAs, and
a leaf with an extended key usage must allow client authentication. The user is the subject's
CN, the groups its O values plus ``system:authenticated``. Anything else is "no user": the
kubelet answers 401 ``Unauthorized``.

Go's verifier also checks name constraints, key usage bits and path length; the simulation
checks what the sandbox's certificates can get wrong (an approximation).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["AuthError", "User", "authenticate"]


class AuthError(Exception):
    """The certificate does not verify (the message is Go's, for the kubelet log)."""


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated client.

    Attributes:
        name: The user name (the certificate's CN).
        groups: Its groups (O values, then ``system:authenticated``).
    """

    name: str
    groups: tuple[str, ...]


def _valid_at(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _describe(cert: x509.Certificate) -> str:
    return f"verifying certificate SN={cert.serial_number} failed"


def _client_auth_allowed(leaf: x509.Certificate) -> bool:
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    allowed = {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    return any(usage in allowed for usage in usages)


def authenticate(
    chain: list[x509.Certificate], ca_bundle: bytes | None, now: dt.datetime
) -> User | None:
    """Authenticate a TLS client by its certificate chain.

    Args:
        chain: What the client sent, leaf first (may be empty).
        ca_bundle: The current content of ``clientCAFile`` (``None``: no x509 authentication).
        now: The time of the request.

    Returns:
        The user, or ``None`` when the client sent no certificate or there is no CA file.

    Raises:
        AuthError: A certificate was sent and does not verify.
    """
    if not chain or not ca_bundle:
        return None
    try:
        roots = x509.load_pem_x509_certificates(ca_bundle)
    except ValueError:
        raise AuthError("unable to load client CA file: no valid certificates") from None
    leaf, pool = chain[0], chain[1:]
    if not _client_auth_allowed(leaf):
        raise AuthError(f"{_describe(leaf)}: x509: certificate specifies an incompatible key usage")
    current = leaf
    for _ in range(len(pool) + 1):
        if not _valid_at(current, now):
            raise AuthError(f"{_describe(leaf)}: x509: certificate has expired or is not yet valid")
        if any(_issued_by(current, root) and _valid_at(root, now) for root in roots):
            return _user(leaf)
        parent = next((c for c in pool if _is_ca(c) and _issued_by(current, c)), None)
        if parent is None:
            break
        pool.remove(parent)
        current = parent
    raise AuthError(f"{_describe(leaf)}: x509: certificate signed by unknown authority")


def _user(leaf: x509.Certificate) -> User:
    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    groups = tuple(str(o.value) for o in orgs)
    return User(str(names[0].value) if names else "", (*groups, "system:authenticated"))
