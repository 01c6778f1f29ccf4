"""Strict approval decisions for kubelet CertificateSigningRequests. Pure: no API calls here.

The reference operator approved a CSR when the requested node name was a *substring* of some
instance's DNS name or host name. We tie approval to what the operator itself issued:

- a **client** CSR (``kubernetes.io/kube-apiserver-client-kubelet``) is approved only when it comes
  from the per-host bootstrap ServiceAccount this operator made for one host
  (``system:serviceaccount:<bootstrap namespace>:<account>``, with that account's UID, so a
  later account of the same name is not mistaken for it) and asks for exactly
  ``CN=system:node:<the name that host reported>``; or when a managed node renews its own client
  certificate (``system:node:<name>`` asking for the same name);
- a **serving** CSR (``kubernetes.io/kubelet-serving``) is approved only when a managed node asks
  for its own name, and every DNS/IP SAN is that name or one of the node's known addresses.

Both require ``O=[system:nodes]``, exact usages (``key encipherment`` only with an RSA key), a valid
signature and no CA bit. A CSR that is not ours (another signer, another requester, an account we
did not make) is **ignored**: it belongs to someone else. A CSR that is ours but wrong is **refused**
(the controller denies it) with the reason.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from wmco import names

DIGITAL_SIGNATURE: Final = "digital signature"
KEY_ENCIPHERMENT: Final = "key encipherment"
CLIENT_AUTH: Final = "client auth"
SERVER_AUTH: Final = "server auth"


class Verdict(enum.StrEnum):
    """What to do with a CSR."""

    APPROVE = "approve"
    IGNORE = "ignore"
    REFUSE = "refuse"


class ReasonCode(enum.StrEnum):
    """Why a CSR was approved or refused, as a bounded label (metrics ``wmco_csr_*_total``)."""

    NONE = ""
    """Ignored CSRs."""
    CLIENT_BOOTSTRAP = "client-bootstrap"
    CLIENT_RENEWAL = "client-renewal"
    SERVING = "serving"
    WRONG_GROUP = "wrong-group"
    BAD_REQUEST = "bad-request"
    WRONG_SUBJECT = "wrong-subject"
    WRONG_USAGES = "wrong-usages"
    CLIENT_SANS = "client-sans"
    NO_SANS = "no-sans"
    NAME_NOT_ALLOWED = "name-not-allowed"


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """A verdict, the reason a person reads (in an Event or a Denied condition) and its code."""

    verdict: Verdict
    reason: str
    code: ReasonCode = ReasonCode.NONE

    @classmethod
    def approve(cls, reason: str, code: ReasonCode) -> Decision:
        """Approve: the CSR is ours and valid."""
        return cls(Verdict.APPROVE, reason, code)

    @classmethod
    def ignore(cls, reason: str) -> Decision:
        """Leave the CSR untouched: it is not ours (or not yet decidable)."""
        return cls(Verdict.IGNORE, reason)

    @classmethod
    def refuse(cls, reason: str, code: ReasonCode) -> Decision:
        """Deny: it claims to be ours but breaks a rule."""
        return cls(Verdict.REFUSE, reason, code)


class CsrKind(enum.StrEnum):
    """The two kubelet certificate kinds."""

    CLIENT = "client"
    SERVING = "serving"


@dataclasses.dataclass(frozen=True, slots=True)
class CsrRequest:
    """The fields of a CertificateSigningRequest the decision needs.

    Attributes:
        name: ``metadata.name``.
        request_pem: Decoded ``spec.request`` (PEM ``CERTIFICATE REQUEST``); empty if undecodable.
        username: ``spec.username`` (set by the API server from the requester).
        uid: ``spec.uid`` (likewise: a ServiceAccount's UID for its tokens).
        groups: ``spec.groups``.
        usages: ``spec.usages``.
        signer_name: ``spec.signerName``.
        decided: Whether ``status.conditions`` already has Approved, Denied or Failed.
    """

    name: str
    request_pem: bytes
    username: str
    groups: tuple[str, ...]
    usages: tuple[str, ...]
    signer_name: str
    decided: bool = False
    uid: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class BootstrapAccount:
    """A per-host bootstrap ServiceAccount the operator made.

    Attributes:
        username: What the API server calls it, and writes into ``spec.username`` of the CSRs
            made with its tokens: ``system:serviceaccount:<namespace>:<name>``.
        uid: Its UID (``spec.uid`` of those CSRs).
        group: ``system:serviceaccounts:<namespace>``, a group its tokens authenticate in.
        address: The host's address (for messages).
        node_name: The name the host reported (lower-cased host name or override); ``None`` until
            known, in which case CSRs made with its tokens are not decided yet.
    """

    username: str
    uid: str
    group: str
    address: str
    node_name: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class ManagedNode:
    """A node the operator manages, with every address it knows for it (IPs and DNS names)."""

    name: str
    addresses: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class Knowledge:
    """What the operator knows when it decides: its accounts (by user name), its nodes (by name)."""

    accounts: Mapping[str, BootstrapAccount] = dataclasses.field(default_factory=dict)
    nodes: Mapping[str, ManagedNode] = dataclasses.field(default_factory=dict)

    @classmethod
    def build(
        cls, accounts: Iterable[BootstrapAccount] = (), nodes: Iterable[ManagedNode] = ()
    ) -> Knowledge:
        """Index accounts by user name and nodes by name."""
        return cls(
            accounts={account.username: account for account in accounts},
            nodes={node.name: node for node in nodes},
        )


def csr_request_from_object(obj: Mapping[str, Any]) -> CsrRequest:
    """Extract a :class:`CsrRequest` from a CSR as a JSON dict (e.g. a lightkube model's dict).

    An undecodable ``spec.request`` yields an empty ``request_pem`` (refused if the CSR is ours).
    """
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    raw = spec.get("request") or b""
    pem: bytes
    if isinstance(raw, bytes):
        pem = raw if raw.startswith(b"-----BEGIN") else _b64(raw)
    else:
        pem = _b64(str(raw).encode("ascii", errors="replace"))
    conditions = status.get("conditions") or []
    decided = any(
        condition.get("type") in ("Approved", "Denied", "Failed") for condition in conditions
    )
    return CsrRequest(
        name=str(metadata.get("name", "")),
        request_pem=pem,
        username=str(spec.get("username", "")),
        uid=str(spec.get("uid") or ""),
        groups=tuple(str(group) for group in spec.get("groups") or ()),
        usages=tuple(str(usage) for usage in spec.get("usages") or ()),
        signer_name=str(spec.get("signerName", "")),
        decided=decided,
    )


def _b64(data: bytes) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return b""


def decide(request: CsrRequest, knowledge: Knowledge) -> Decision:
    """Decide what to do with one CSR.

    Args:
        request: The CSR.
        knowledge: The operator's bootstrap accounts and managed nodes.

    Returns:
        Approve, Ignore (not ours / not decidable yet) or Refuse (ours but invalid), with a reason.
    """
    if request.decided:
        return Decision.ignore("already approved or denied")
    if request.signer_name == names.CSR_SIGNER_KUBELET_CLIENT:
        return _decide_client(request, knowledge)
    if request.signer_name == names.CSR_SIGNER_KUBELET_SERVING:
        return _decide_serving(request, knowledge)
    return Decision.ignore(f"signer {request.signer_name!r} is not a kubelet signer")


def _decide_client(request: CsrRequest, knowledge: Knowledge) -> Decision:
    username = request.username
    account = knowledge.accounts.get(username)
    if account is not None:
        if request.uid != account.uid:
            return Decision.ignore(
                f"requester {username} (uid {request.uid!r}) is not the bootstrap account of "
                f"host {account.address} (uid {account.uid!r}), only one of the same name"
            )
        if account.node_name is None:
            return Decision.ignore(
                f"the node name of host {account.address} is not known yet; decide later"
            )
        if account.group not in request.groups:
            return Decision.refuse(
                f"requester {username} is not in group {account.group}", ReasonCode.WRONG_GROUP
            )
        node_name = account.node_name
        origin = f"bootstrap account of host {account.address}"
        code = ReasonCode.CLIENT_BOOTSTRAP
    elif username.startswith(names.NODE_USER_PREFIX):
        node_name = username.removeprefix(names.NODE_USER_PREFIX)
        if node_name not in knowledge.nodes:
            return Decision.ignore(f"node {node_name!r} is not managed by this operator")
        if names.NODES_GROUP not in request.groups:
            return Decision.refuse(
                f"requester {username} is not in group {names.NODES_GROUP}",
                ReasonCode.WRONG_GROUP,
            )
        origin = f"renewal by node {node_name}"
        code = ReasonCode.CLIENT_RENEWAL
    else:
        return Decision.ignore(
            f"requester {username!r} is neither a bootstrap account of this operator nor a node"
        )
    parsed = _parse(request)
    if isinstance(parsed, Decision):
        return parsed
    problem = _problem(request, parsed, node_name, CsrKind.CLIENT)
    if problem:
        return problem
    if _sans(parsed):
        return Decision.refuse(
            "a kubelet client certificate must not have subject alt names", ReasonCode.CLIENT_SANS
        )
    return Decision.approve(f"client certificate for node {node_name} ({origin})", code)


def _decide_serving(request: CsrRequest, knowledge: Knowledge) -> Decision:
    username = request.username
    if not username.startswith(names.NODE_USER_PREFIX):
        return Decision.ignore(f"requester {username!r} is not a node")
    node_name = username.removeprefix(names.NODE_USER_PREFIX)
    node = knowledge.nodes.get(node_name)
    if node is None:
        return Decision.ignore(f"node {node_name!r} is not managed by this operator")
    if names.NODES_GROUP not in request.groups:
        return Decision.refuse(
            f"requester {username} is not in group {names.NODES_GROUP}", ReasonCode.WRONG_GROUP
        )
    parsed = _parse(request)
    if isinstance(parsed, Decision):
        return parsed
    problem = _problem(request, parsed, node_name, CsrKind.SERVING)
    if problem:
        return problem
    sans = _sans(parsed)
    if not sans:
        return Decision.refuse(
            "a kubelet serving certificate needs at least one DNS or IP SAN", ReasonCode.NO_SANS
        )
    allowed_dns, allowed_ips = _allowed_names(node)
    for kind, value in sans:
        if kind == "dns":
            if value.lower() not in allowed_dns:
                return Decision.refuse(
                    f"DNS name {value!r} is neither node {node_name} nor one of its addresses",
                    ReasonCode.NAME_NOT_ALLOWED,
                )
        elif kind == "ip":
            if ipaddress.ip_address(value) not in allowed_ips:
                return Decision.refuse(
                    f"IP {value} is not an address of node {node_name}",
                    ReasonCode.NAME_NOT_ALLOWED,
                )
        else:
            return Decision.refuse(
                f"SAN of type {kind} is not allowed in a serving certificate",
                ReasonCode.NAME_NOT_ALLOWED,
            )
    return Decision.approve(f"serving certificate for node {node_name}", ReasonCode.SERVING)


def _allowed_names(
    node: ManagedNode,
) -> tuple[set[str], set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    dns = {node.name.lower()}
    ips: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for address in node.addresses:
        try:
            ips.add(ipaddress.ip_address(address))
        except ValueError:
            dns.add(address.lower().rstrip("."))
    return dns, ips


def _parse(request: CsrRequest) -> x509.CertificateSigningRequest | Decision:
    bad = ReasonCode.BAD_REQUEST
    if not request.request_pem:
        return Decision.refuse("spec.request is empty or not base64", bad)
    try:
        parsed = x509.load_pem_x509_csr(request.request_pem)
    except ValueError:
        return Decision.refuse("spec.request is not a PEM certificate request", bad)
    try:
        if not parsed.is_signature_valid:
            return Decision.refuse("the certificate request's signature is invalid", bad)
    except Exception:  # unsupported algorithm and the like: not something we can vouch for
        return Decision.refuse("the certificate request's signature cannot be checked", bad)
    return parsed


def _problem(
    request: CsrRequest, parsed: x509.CertificateSigningRequest, node_name: str, kind: CsrKind
) -> Decision | None:
    """A refusal for a wrong subject or wrong usages, else ``None``."""
    subject = _check_subject(parsed, node_name)
    if subject:
        return Decision.refuse(subject, ReasonCode.WRONG_SUBJECT)
    usages = _check_usages(request, parsed, kind)
    if usages:
        return Decision.refuse(usages, ReasonCode.WRONG_USAGES)
    return None


def _check_subject(parsed: x509.CertificateSigningRequest, node_name: str) -> str | None:
    expected_cn = names.NODE_USER_PREFIX + node_name
    common_names = [
        str(a.value) for a in parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    organizations = [
        str(a.value) for a in parsed.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    ]
    if common_names != [expected_cn]:
        shown = common_names[0] if len(common_names) == 1 else common_names
        return f"subject CN is {shown!r}, expected {expected_cn!r}"
    if organizations != [names.NODES_GROUP]:
        return f"subject O is {organizations!r}, expected [{names.NODES_GROUP!r}]"
    for attribute in parsed.subject:
        if attribute.oid not in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
            return f"subject has an unexpected attribute {attribute.oid.dotted_string}"
    try:
        constraints = parsed.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return None
    if constraints.value.ca:
        return "a kubelet certificate must not be a CA"
    return None


def _check_usages(
    request: CsrRequest, parsed: x509.CertificateSigningRequest, kind: CsrKind
) -> str | None:
    purpose = CLIENT_AUTH if kind is CsrKind.CLIENT else SERVER_AUTH
    allowed = [{DIGITAL_SIGNATURE, purpose}]
    if isinstance(parsed.public_key(), rsa.RSAPublicKey):
        allowed.append({DIGITAL_SIGNATURE, KEY_ENCIPHERMENT, purpose})
    usages = set(request.usages)
    if len(usages) != len(request.usages) or usages not in allowed:
        expected = " or ".join(str(sorted(option)) for option in allowed)
        return f"usages {sorted(request.usages)} are not {expected}"
    return None


def _sans(parsed: x509.CertificateSigningRequest) -> list[tuple[str, str]]:
    try:
        extension = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    result: list[tuple[str, str]] = []
    for general_name in extension.value:
        if isinstance(general_name, x509.DNSName):
            result.append(("dns", general_name.value))
        elif isinstance(general_name, x509.IPAddress):
            result.append(("ip", str(general_name.value)))
        elif isinstance(general_name, x509.RFC822Name):
            result.append(("email", general_name.value))
        elif isinstance(general_name, x509.UniformResourceIdentifier):
            result.append(("uri", general_name.value))
        else:
            result.append((type(general_name).__name__, ""))
    return result
