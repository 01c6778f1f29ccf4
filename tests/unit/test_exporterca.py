"""The exporter CA and the serving certificates it issues; when a host needs a new one.

Pure: certificates made by cryptography, times passed in. The Secret's data round-trips; a
broken Secret says what is wrong; rotation keeps the old CA trusted while it is valid; a
certificate names the node's name and addresses, serves TLS only, ends with its CA at the
latest, and its Node record says when it is due and which CA issued it.
"""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from lightkube.models.core_v1 import NodeAddress, NodeCondition, NodeStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node

from wmco import names
from wmco.cluster import exporterca
from wmco.nodeconfig import exportertls
from wmco.nodeconfig.instance import Instance, Origin

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
CA = exporterca.generate_ca(now=NOW)


def data(ca: exporterca.CertificateAuthority) -> dict[str, bytes]:
    return {key: value.encode() for key, value in ca.secret_data().items()}


def test_the_secret_data_round_trips() -> None:
    parsed = exporterca.parse_secret_data(data(CA))
    assert parsed == CA
    assert CA.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({exporterca.BUNDLE_KEY: b""}, "it has no ca.crt"),
        ({exporterca.CERT_KEY: b"not a certificate"}, "tls.crt is not a PEM certificate"),
        (
            {exporterca.PRIVATE_KEY_KEY: exporterca.generate_ca().key_pem},
            "does not belong to tls.crt",
        ),
        (
            {exporterca.BUNDLE_KEY: exporterca.generate_ca().cert_pem},
            "ca.crt does not include tls.crt",
        ),
    ],
)
def test_an_unusable_secret_says_why(change: dict[str, bytes], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        exporterca.parse_secret_data({**data(CA), **change})


def test_a_leaf_certificate_is_not_a_ca() -> None:
    leaf = exporterca.issue_serving(CA, "win-a", ["10.0.0.5"], now=NOW)
    with pytest.raises(ValueError, match="not a CA certificate"):
        exporterca.parse_secret_data(
            {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": leaf.cert_pem}
        )


def test_rotation_is_due_after_two_thirds_and_keeps_the_old_ca_trusted() -> None:
    assert not exporterca.ca_due_for_rotation(CA, NOW + datetime.timedelta(days=240))
    due = NOW + datetime.timedelta(days=244)
    assert exporterca.ca_due_for_rotation(CA, due)
    rotated = exporterca.rotate(CA, now=due)
    bundle = x509.load_pem_x509_certificates(rotated.bundle_pem)
    assert [c.subject for c in bundle] == [rotated.certificate.subject, CA.certificate.subject]
    assert exporterca.parse_secret_data(data(rotated)) == rotated
    expired = exporterca.rotate(CA, now=NOW + datetime.timedelta(days=400))
    assert expired.bundle_pem == expired.cert_pem


def test_a_serving_certificate_names_the_node_and_serves_tls_only() -> None:
    serving = exporterca.issue_serving(CA, "WIN-A", ["10.0.0.5", "win-a.example.com."], now=NOW)
    cert = x509.load_pem_x509_certificate(serving.cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["win-a", "win-a.example.com"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert exporterca.verify_serving(serving.cert_pem, CA)
    assert not exporterca.verify_serving(serving.cert_pem, exporterca.generate_ca())
    assert cert.not_valid_after_utc == NOW + exporterca.SERVING_LIFETIME
    assert serving.record.names == ("10.0.0.5", "win-a", "win-a.example.com")
    assert serving.record.cert_sha256 == exporterca.sha256(serving.cert_pem)
    assert serving.record.renew_after == NOW + datetime.timedelta(days=60) - datetime.timedelta(
        minutes=5
    ) * (1 / 3)


def test_a_serving_certificate_never_outlives_its_ca() -> None:
    late = NOW + datetime.timedelta(days=330)
    serving = exporterca.issue_serving(CA, "win-a", ["10.0.0.5"], now=late)
    cert = x509.load_pem_x509_certificate(serving.cert_pem)
    assert cert.not_valid_after_utc == CA.not_after


def test_the_record_says_when_a_new_certificate_is_due() -> None:
    record = exporterca.issue_serving(CA, "win-a", ["10.0.0.5"], now=NOW).record
    assert exporterca.ServingRecord.from_annotation(record.to_annotation()) == record
    assert record.why_reissue(CA, ["10.0.0.5", "WIN-A"], NOW) is None
    assert "another CA" in (record.why_reissue(exporterca.generate_ca(), ["win-a"], NOW) or "")
    assert "due for renewal" in (
        record.why_reissue(CA, ["win-a"], NOW + datetime.timedelta(days=61)) or ""
    )
    assert record.why_reissue(CA, ["10.0.0.9"], NOW) == "it does not name 10.0.0.9"
    for garbage in (None, "", "{", '{"names": "x"}', '{"cert": 1}'):
        assert exporterca.ServingRecord.from_annotation(garbage) is None


def node(record: exporterca.ServingRecord | None, *addresses: str, ready: bool = True) -> Node:
    annotations = {names.INSTANCE_ADDRESS_ANNOTATION: "10.0.0.5"}
    if record is not None:
        annotations[names.EXPORTER_CERT_ANNOTATION] = record.to_annotation()
    return Node(
        metadata=ObjectMeta(name="win-a", annotations=annotations),
        status=NodeStatus(
            addresses=[NodeAddress(type="InternalIP", address=a) for a in addresses],
            conditions=[NodeCondition(type="Ready", status="True" if ready else "False")],
        ),
    )


def test_the_fast_path_sees_a_new_address_and_a_new_ca_without_ssh() -> None:
    record = exporterca.issue_serving(CA, "win-a", ["10.0.0.5"]).record
    assert exportertls.is_current(node(record, "10.0.0.5"), CA)
    assert not exportertls.is_current(node(record, "10.0.0.5", "10.0.0.6"), CA)
    assert not exportertls.is_current(node(record, "10.0.0.5"), exporterca.generate_ca())
    assert not exportertls.is_current(node(None, "10.0.0.5"), CA)
    # Without a CA nothing can be issued: no host goes through the flow for it.
    assert exportertls.is_current(node(None, "10.0.0.5"), None)


def test_the_certificate_covers_what_the_operator_and_the_node_call_the_host() -> None:
    instance = Instance(address="10.0.0.5", username="Administrator", origin=Origin.BYOH)
    got = exportertls.host_names("win-a", instance, node(None, "10.0.0.5", "192.168.1.4"))
    assert got == ("10.0.0.5", "192.168.1.4", "win-a")
    dns = Instance(address="win-a.corp.example", username="Administrator", origin=Origin.BYOH)
    assert exportertls.host_names("win-a", dns, None) == ("win-a", "win-a.corp.example")
