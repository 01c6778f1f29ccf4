"""What the operator decides about the cluster: the network profile and the kubelet client CA."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wmco import names, settings
from wmco.cluster import clientca
from wmco.cluster import network as cluster_network

AUTO = settings.NetworkProfile.AUTO
OVN = settings.NetworkProfile.OVN_HYBRID
HOSTPROCESS = settings.NetworkProfile.HOSTPROCESS


def openshift_network(
    network_type: str = "OVNKubernetes",
    hybrid: Any = ({"cidr": "10.132.0.0/14", "hostPrefix": 23},),
) -> dict[str, Any]:
    ovn: dict[str, Any] = {}
    if hybrid is not None:
        ovn["hybridOverlayConfig"] = {
            "hybridClusterNetwork": list(hybrid) if isinstance(hybrid, tuple) else hybrid
        }
    return {
        "apiVersion": "operator.openshift.io/v1",
        "kind": "Network",
        "metadata": {"name": "cluster"},
        "spec": {"defaultNetwork": {"type": network_type, "ovnKubernetesConfig": ovn}},
    }


# --- Network profile ------------------------------------------------------------------------------


def test_auto_on_openshift_with_a_hybrid_overlay_is_ovn_hybrid() -> None:
    assert cluster_network.resolve_profile(AUTO, openshift_network()) is OVN
    assert cluster_network.hybrid_cluster_networks(openshift_network()) == (
        cluster_network.HybridClusterNetwork("10.132.0.0/14", 23),
    )


def test_auto_without_the_crd_or_object_is_hostprocess() -> None:
    assert cluster_network.resolve_profile(AUTO, None) is HOSTPROCESS


@pytest.mark.parametrize("hybrid", [None, (), []])
def test_ovn_kubernetes_without_a_hybrid_overlay_is_refused(hybrid: Any) -> None:
    with pytest.raises(
        cluster_network.NetworkProfileError,
        match=r"^cluster is not configured for OVN hybrid networking$",
    ):
        cluster_network.resolve_profile(AUTO, openshift_network(hybrid=hybrid))


@pytest.mark.parametrize(
    "hybrid",
    [
        ({"cidr": "not-a-cidr", "hostPrefix": 23},),
        ({"cidr": "10.132.0.0/14"},),
        ({"cidr": "10.132.0.0/14", "hostPrefix": 8},),
        ({"cidr": "10.132.0.0/14", "hostPrefix": "23"},),
        ("10.132.0.0/14",),
        {"cidr": "10.132.0.0/14", "hostPrefix": 23},
    ],
)
def test_a_malformed_hybrid_overlay_is_refused(hybrid: Any) -> None:
    with pytest.raises(cluster_network.NetworkProfileError, match="invalid OVN hybrid"):
        cluster_network.resolve_profile(AUTO, openshift_network(hybrid=hybrid))


def test_another_network_type_is_refused_with_what_to_do() -> None:
    with pytest.raises(
        cluster_network.NetworkProfileError, match="WMCO_NETWORK_PROFILE=hostprocess"
    ):
        cluster_network.resolve_profile(AUTO, openshift_network("OpenShiftSDN"))


def test_an_explicit_profile_is_used_as_set() -> None:
    assert cluster_network.resolve_profile(OVN, None) is OVN
    assert cluster_network.resolve_profile(HOSTPROCESS, openshift_network()) is HOSTPROCESS
    assert cluster_network.resolve_profile(OVN, openshift_network(hybrid=None)) is OVN


def test_the_network_config_resource_is_openshifts() -> None:
    from wmco import kube

    assert kube.kind_of(cluster_network.NetworkConfig) == ("operator.openshift.io/v1", "Network")
    assert not kube.is_namespaced(cluster_network.NetworkConfig)


# --- Kubelet client CA ----------------------------------------------------------------------------


def certificate(common_name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def pems() -> tuple[str, str]:
    return certificate("kubelet-client-signer"), certificate("kube-apiserver-to-kubelet-signer")


OPENSHIFT = (names.OPENSHIFT_KUBE_APISERVER_OPERATOR_NAMESPACE, names.KUBELET_CLIENT_CA_CONFIGMAP)
KUBERNETES = (names.KUBE_SYSTEM_NAMESPACE, names.EXTENSION_APISERVER_AUTHENTICATION_CONFIGMAP)


def test_openshifts_signer_bundle_wins_when_it_exists(pems: tuple[str, str]) -> None:
    plain, openshift = pems
    choice = clientca.choose(
        None,
        {
            OPENSHIFT: {"ca-bundle.crt": openshift},
            KUBERNETES: {"client-ca-file": plain, "requestheader-client-ca-file": plain},
        },
    )
    assert isinstance(choice, clientca.ClientCa)
    assert choice.source == clientca.OPENSHIFT_SOURCE
    assert choice.pem == openshift.strip().encode() + b"\n"
    assert choice.certificates == 1


def test_plain_kubernetes_uses_the_api_servers_client_ca_file(pems: tuple[str, str]) -> None:
    plain, other = pems
    bundle = plain + other
    choice = clientca.choose(None, {KUBERNETES: {"client-ca-file": bundle}})
    assert isinstance(choice, clientca.ClientCa)
    assert str(choice.source) == "kube-system/extension-apiserver-authentication:client-ca-file"
    assert choice.certificates == 2
    assert (
        choice.sha256
        == clientca.choose(None, {OPENSHIFT: None, KUBERNETES: {"client-ca-file": bundle}}).sha256
    )  # type: ignore[union-attr]


def test_the_setting_overrides_both(pems: tuple[str, str]) -> None:
    plain, mine = pems
    override = settings.ConfigMapKey("wmco", "my-ca", "ca.crt")
    configmaps = {
        ("wmco", "my-ca"): {"ca.crt": mine},
        OPENSHIFT: {"ca-bundle.crt": plain},
        KUBERNETES: {"client-ca-file": plain},
    }
    choice = clientca.choose(override, configmaps)
    assert isinstance(choice, clientca.ClientCa) and choice.source == override
    assert clientca.sources(override) == (override,)
    missing = clientca.choose(override, {OPENSHIFT: {"ca-bundle.crt": plain}})
    assert isinstance(missing, clientca.ClientCaProblem) and not missing.exists
    assert "does not exist" in missing.message


def test_a_configmap_without_the_key_is_a_problem_not_a_fallback(pems: tuple[str, str]) -> None:
    plain, _ = pems
    choice = clientca.choose(
        None, {OPENSHIFT: {"other.crt": plain}, KUBERNETES: {"client-ca-file": plain}}
    )
    assert isinstance(choice, clientca.ClientCaProblem)
    assert choice.source == clientca.OPENSHIFT_SOURCE and choice.exists
    assert "no key 'ca-bundle.crt'" in choice.message
    assert "WMCO_KUBELET_CA_CONFIGMAP" in choice.message


def test_no_source_at_all() -> None:
    choice = clientca.choose(None, {})
    assert isinstance(choice, clientca.ClientCaProblem)
    assert choice.source == clientca.KUBERNETES_SOURCE and not choice.exists


def private_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("not PEM at all", "no PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "does not parse"),
        ("PRIVATE", "other than certificates"),
        ("TRAILING", "text outside"),
        ("UNICODE", "other than ASCII"),
    ],
)
def test_bad_bundles_are_problems_with_a_reason(
    pems: tuple[str, str], value: str, fragment: str
) -> None:
    plain, _ = pems
    value = {
        "PRIVATE": plain + private_key_pem(),
        "TRAILING": plain + "# and a comment\n",
        "UNICODE": plain + "\u00a0\n" + plain,
    }.get(value, value)
    choice = clientca.choose(None, {KUBERNETES: {"client-ca-file": value}})
    assert isinstance(choice, clientca.ClientCaProblem)
    assert fragment in choice.reason
    assert "PRIVATE KEY-----\n" not in choice.message, "the content is never echoed"


# --- Which CA ConfigMap events re-queue hosts ------------------------------------------------------


def configmap(data: dict[str, str] | None) -> Any:
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import ConfigMap

    return ConfigMap(metadata=ObjectMeta(name="extension-apiserver-authentication"), data=data)


def test_ca_events_that_requeue_hosts() -> None:
    from wmco.controllers import hosts
    from wmco.runtime import informer

    Event, Type, Origin = informer.Event, informer.EventType, informer.Origin
    old, new = configmap({"client-ca-file": "a"}), configmap({"client-ca-file": "b"})
    assert hosts.ca_changed(Event(Type.ADDED, old))
    assert hosts.ca_changed(Event(Type.DELETED, old, old))
    assert hosts.ca_changed(Event(Type.MODIFIED, new, old)), "a rotated bundle"
    same = configmap({"client-ca-file": "a"})
    assert not hosts.ca_changed(Event(Type.MODIFIED, same, old)), "only metadata changed"
    assert not hosts.ca_changed(Event(Type.MODIFIED, old, old, Origin.RESYNC)), "a resync"
