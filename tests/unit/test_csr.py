"""Strict kubelet CSR decisions, with real certificate requests made by cryptography."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from wmco import csr, names

EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

CLIENT = names.CSR_SIGNER_KUBELET_CLIENT
SERVING = names.CSR_SIGNER_KUBELET_SERVING
CLIENT_USAGES = ("digital signature", "client auth")
SERVING_USAGES = ("digital signature", "server auth")
NODE_GROUPS = ("system:nodes", "system:authenticated")
BOOTSTRAP_NS = "wmco-bootstrap"
BOOTSTRAP_GROUP = names.service_accounts_group(BOOTSTRAP_NS)
BOOTSTRAP_GROUPS = ("system:serviceaccounts", BOOTSTRAP_GROUP, "system:authenticated")
OURS = names.service_account_user(BOOTSTRAP_NS, "windows-host-aaaa")
OURS_UID = "3f0c5a52-0000-4000-8000-00000000000a"
PENDING = names.service_account_user(BOOTSTRAP_NS, "windows-host-pppp")
PENDING_UID = "3f0c5a52-0000-4000-8000-00000000000p"

KNOWLEDGE = csr.Knowledge.build(
    accounts=[
        csr.BootstrapAccount(OURS, OURS_UID, BOOTSTRAP_GROUP, "10.0.0.5", "win-a"),
        csr.BootstrapAccount(PENDING, PENDING_UID, BOOTSTRAP_GROUP, "10.0.0.6", None),
    ],
    nodes=[csr.ManagedNode("win-b", frozenset({"10.0.0.7", "win-b.example.com"}))],
)
UIDS = {OURS: OURS_UID, PENDING: PENDING_UID}


def make_pem(
    cn: str | None,
    orgs: Sequence[str] = ("system:nodes",),
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    emails: Sequence[str] = (),
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = EC_KEY,
    ca: bool = False,
    extra_ou: str | None = None,
) -> bytes:
    attributes = []
    if cn is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in orgs]
    if extra_ou:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, extra_ou))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    general: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    general += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    general += [x509.RFC822Name(e) for e in emails]
    if general:
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def request(
    pem: bytes,
    username: str,
    *,
    signer: str = CLIENT,
    groups: Sequence[str] = BOOTSTRAP_GROUPS,
    usages: Sequence[str] = CLIENT_USAGES,
    conditions: Sequence[dict[str, str]] = (),
    uid: str | None = None,
) -> csr.CsrRequest:
    """A CSR as the API server stores it; ``uid`` defaults to that of the requester's account."""
    obj: dict[str, Any] = {
        "metadata": {"name": "csr-x"},
        "spec": {
            "request": base64.b64encode(pem).decode(),
            "username": username,
            "uid": UIDS.get(username, "") if uid is None else uid,
            "groups": list(groups),
            "usages": list(usages),
            "signerName": signer,
        },
        "status": {"conditions": list(conditions)},
    }
    return csr.csr_request_from_object(obj)


def verdict(req: csr.CsrRequest) -> csr.Verdict:
    return csr.decide(req, KNOWLEDGE).verdict


APPROVE, IGNORE, REFUSE = csr.Verdict.APPROVE, csr.Verdict.IGNORE, csr.Verdict.REFUSE


# --- Client certificates -----------------------------------------------------------------------


def test_bootstrap_client_csr_for_the_reported_name_is_approved() -> None:
    decision = csr.decide(request(make_pem("system:node:win-a"), OURS), KNOWLEDGE)
    assert decision.verdict is APPROVE
    assert "win-a" in decision.reason and "10.0.0.5" in decision.reason


def test_rsa_client_csr_may_add_key_encipherment() -> None:
    pem = make_pem("system:node:win-a", key=RSA_KEY)
    usages = ("digital signature", "key encipherment", "client auth")
    assert verdict(request(pem, OURS, usages=usages)) is APPROVE


def test_ecdsa_client_csr_may_not_add_key_encipherment() -> None:
    usages = ("digital signature", "key encipherment", "client auth")
    req = request(make_pem("system:node:win-a"), OURS, usages=usages)
    assert verdict(req) is REFUSE


def test_bootstrap_account_asking_for_another_name_is_refused() -> None:
    decision = csr.decide(request(make_pem("system:node:win-b"), OURS), KNOWLEDGE)
    assert decision.verdict is REFUSE
    assert "system:node:win-a" in decision.reason


def test_substring_names_are_not_enough() -> None:
    req = request(make_pem("system:node:win-a-evil"), OURS)
    assert verdict(req) is REFUSE
    req = request(make_pem("system:node:win"), OURS)
    assert verdict(req) is REFUSE


def test_accounts_we_did_not_make_are_ignored() -> None:
    pem = make_pem("system:node:win-a")
    other = names.service_account_user(BOOTSTRAP_NS, "windows-host-zzzz")
    assert verdict(request(pem, other, uid="some-uid")) is IGNORE
    # The same account name in another namespace is another account.
    elsewhere = names.service_account_user("default", "windows-host-aaaa")
    groups = ("system:serviceaccounts", "system:serviceaccounts:default")
    assert verdict(request(pem, elsewhere, uid=OURS_UID, groups=groups)) is IGNORE
    # Bootstrap tokens (kube-system Secrets) are no credential of this operator any more.
    bootstrap = request(pem, "system:bootstrap:abc123", groups=("system:bootstrappers",), uid="")
    assert verdict(bootstrap) is IGNORE


def test_an_earlier_account_of_the_same_name_is_not_ours() -> None:
    # A CSR made with a token of a deleted account that was made again since: another UID.
    decision = csr.decide(request(make_pem("system:node:win-a"), OURS, uid="old-uid"), KNOWLEDGE)
    assert decision.verdict is IGNORE
    assert "old-uid" in decision.reason and OURS_UID in decision.reason
    assert verdict(request(make_pem("system:node:win-a"), OURS, uid="")) is IGNORE


def test_account_whose_host_name_is_unknown_is_not_decided_yet() -> None:
    decision = csr.decide(request(make_pem("system:node:win-c"), PENDING), KNOWLEDGE)
    assert decision.verdict is IGNORE
    assert "not known yet" in decision.reason


def test_bootstrap_requester_must_be_in_its_namespace_group() -> None:
    req = request(make_pem("system:node:win-a"), OURS, groups=("system:authenticated",))
    decision = csr.decide(req, KNOWLEDGE)
    assert decision.verdict is REFUSE
    assert BOOTSTRAP_GROUP in decision.reason


def test_managed_node_may_renew_its_own_client_certificate() -> None:
    req = request(make_pem("system:node:win-b"), "system:node:win-b", groups=NODE_GROUPS)
    assert verdict(req) is APPROVE
    other = request(make_pem("system:node:win-a"), "system:node:win-b", groups=NODE_GROUPS)
    assert verdict(other) is REFUSE


def test_unmanaged_nodes_and_other_requesters_are_ignored() -> None:
    linux = request(make_pem("system:node:linux-1"), "system:node:linux-1", groups=NODE_GROUPS)
    assert verdict(linux) is IGNORE
    sa = request(
        make_pem("system:node:win-a"),
        "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper",
    )
    assert verdict(sa) is IGNORE


@pytest.mark.parametrize(
    ("pem_kwargs", "usages", "fragment"),
    [
        ({"orgs": ("system:masters",)}, CLIENT_USAGES, "subject O"),
        ({"orgs": ("system:nodes", "system:masters")}, CLIENT_USAGES, "subject O"),
        ({"orgs": ()}, CLIENT_USAGES, "subject O"),
        ({"dns": ("win-a",)}, CLIENT_USAGES, "subject alt names"),
        ({"ips": ("10.0.0.5",)}, CLIENT_USAGES, "subject alt names"),
        ({"ca": True}, CLIENT_USAGES, "CA"),
        ({"extra_ou": "x"}, CLIENT_USAGES, "unexpected attribute"),
        ({}, ("digital signature", "server auth"), "usages"),
        ({}, ("digital signature", "client auth", "client auth"), "usages"),
        ({}, ("client auth",), "usages"),
    ],
)
def test_client_csr_rules(pem_kwargs: dict[str, Any], usages: Sequence[str], fragment: str) -> None:
    pem = make_pem("system:node:win-a", **pem_kwargs)
    decision = csr.decide(request(pem, OURS, usages=usages), KNOWLEDGE)
    assert decision.verdict is REFUSE
    assert fragment in decision.reason


def test_missing_cn_is_refused() -> None:
    assert verdict(request(make_pem(None), OURS)) is REFUSE


def test_garbage_request_from_our_account_is_refused() -> None:
    req = request(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                  OURS)  # fmt: skip
    assert verdict(req) is REFUSE
    bad_b64 = csr.csr_request_from_object(
        {
            "spec": {
                "request": "%%%",
                "username": OURS,
                "uid": OURS_UID,
                "groups": list(BOOTSTRAP_GROUPS),
                "signerName": CLIENT,
            }
        }
    )
    assert bad_b64.request_pem == b""
    assert verdict(bad_b64) is REFUSE


def test_tampered_signature_is_refused() -> None:
    good = x509.load_pem_x509_csr(make_pem("system:node:win-a"))
    der = good.public_bytes(serialization.Encoding.DER)
    signature = good.signature
    flipped = signature[:-1] + bytes([signature[-1] ^ 0x01])
    tampered_der = der.replace(signature, flipped)
    assert tampered_der != der
    tampered = x509.load_der_x509_csr(tampered_der).public_bytes(serialization.Encoding.PEM)
    decision = csr.decide(request(tampered, OURS), KNOWLEDGE)
    assert decision.verdict is REFUSE
    assert "signature" in decision.reason


# --- Serving certificates ----------------------------------------------------------------------


def serving(pem: bytes, user: str = "system:node:win-b", **kwargs: Any) -> csr.CsrRequest:
    kwargs.setdefault("groups", NODE_GROUPS)
    kwargs.setdefault("usages", SERVING_USAGES)
    return request(pem, user, signer=SERVING, **kwargs)


def test_serving_csr_with_known_sans_is_approved() -> None:
    pem = make_pem("system:node:win-b", dns=("win-b", "WIN-B.example.com"), ips=("10.0.0.7",))
    decision = csr.decide(serving(pem), KNOWLEDGE)
    assert decision.verdict is APPROVE, decision.reason


def test_serving_csr_with_an_unknown_ip_or_name_is_refused() -> None:
    pem = make_pem("system:node:win-b", ips=("10.0.0.7", "10.9.9.9"))
    decision = csr.decide(serving(pem), KNOWLEDGE)
    assert decision.verdict is REFUSE and "10.9.9.9" in decision.reason
    pem = make_pem("system:node:win-b", dns=("evil.example.com",))
    assert verdict(serving(pem)) is REFUSE


def test_serving_csr_needs_a_san_and_only_dns_or_ip() -> None:
    assert verdict(serving(make_pem("system:node:win-b"))) is REFUSE
    pem = make_pem("system:node:win-b", ips=("10.0.0.7",), emails=("a@b.c",))
    assert verdict(serving(pem)) is REFUSE


def test_serving_csr_for_another_node_or_wrong_usages_is_refused() -> None:
    pem = make_pem("system:node:win-a", ips=("10.0.0.7",))
    assert verdict(serving(pem)) is REFUSE
    pem = make_pem("system:node:win-b", ips=("10.0.0.7",))
    assert verdict(serving(pem, usages=CLIENT_USAGES)) is REFUSE
    assert verdict(serving(pem, groups=("system:authenticated",))) is REFUSE


def test_rsa_serving_csr_may_add_key_encipherment() -> None:
    pem = make_pem("system:node:win-b", ips=("10.0.0.7",), key=RSA_KEY)
    usages = ("key encipherment", "digital signature", "server auth")
    assert verdict(serving(pem, usages=usages)) is APPROVE


def test_serving_csrs_of_others_are_ignored() -> None:
    pem = make_pem("system:node:linux-1", ips=("10.0.0.9",))
    assert verdict(serving(pem, user="system:node:linux-1")) is IGNORE
    assert verdict(serving(pem, user=OURS)) is IGNORE


# --- Everything else ---------------------------------------------------------------------------


def test_other_signers_and_decided_csrs_are_ignored() -> None:
    pem = make_pem("system:node:win-a")
    assert verdict(request(pem, OURS, signer="example.com/x")) is IGNORE
    decided = request(pem, OURS, conditions=[{"type": "Approved"}])
    assert decided.decided
    assert verdict(decided) is IGNORE


def test_request_from_object_reads_the_fields() -> None:
    pem = make_pem("system:node:win-a")
    req = request(pem, OURS)
    assert req.request_pem == pem
    assert req.name == "csr-x"
    assert req.signer_name == CLIENT
    assert req.usages == CLIENT_USAGES
    assert req.groups == BOOTSTRAP_GROUPS
    assert req.uid == OURS_UID
    assert not req.decided


# --- Reason codes (the bounded labels of wmco_csr_approvals_total / wmco_csr_refusals_total) ---


CODE = csr.ReasonCode


@pytest.mark.parametrize(
    ("req", "verdict_", "code"),
    [
        (
            request(make_pem("system:node:win-a"), OURS),
            APPROVE,
            CODE.CLIENT_BOOTSTRAP,
        ),
        (
            request(make_pem("system:node:win-b"), "system:node:win-b", groups=NODE_GROUPS),
            APPROVE,
            CODE.CLIENT_RENEWAL,
        ),
        (serving(make_pem("system:node:win-b", ips=("10.0.0.7",))), APPROVE, CODE.SERVING),
        (
            request(make_pem("system:node:win-b"), OURS),
            REFUSE,
            CODE.WRONG_SUBJECT,
        ),
        (
            request(
                make_pem("system:node:win-a"),
                OURS,
                groups=("system:authenticated",),
            ),
            REFUSE,
            CODE.WRONG_GROUP,
        ),
        (
            request(make_pem("system:node:win-a"), OURS, usages=SERVING_USAGES),
            REFUSE,
            CODE.WRONG_USAGES,
        ),
        (
            request(make_pem("system:node:win-a", dns=("win-a",)), OURS),
            REFUSE,
            CODE.CLIENT_SANS,
        ),
        (serving(make_pem("system:node:win-b")), REFUSE, CODE.NO_SANS),
        (serving(make_pem("system:node:win-b", ips=("10.9.9.9",))), REFUSE, CODE.NAME_NOT_ALLOWED),
        (request(b"", OURS), REFUSE, CODE.BAD_REQUEST),
        (
            request(
                make_pem("system:node:x"),
                names.service_account_user(BOOTSTRAP_NS, "windows-host-zzzz"),
            ),
            IGNORE,
            CODE.NONE,
        ),
    ],
)
def test_every_approval_and_refusal_has_a_reason_code(
    req: csr.CsrRequest, verdict_: csr.Verdict, code: csr.ReasonCode
) -> None:
    decision = csr.decide(req, KNOWLEDGE)
    assert (decision.verdict, decision.code) == (verdict_, code), decision.reason
