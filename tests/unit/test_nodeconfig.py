"""Pure decisions of the configure flow: which node is an instance's, is it up to date, what it gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lightkube.models.core_v1 import NodeAddress, NodeCondition, NodeStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node

from wmco import names, userdata
from wmco.nodeconfig import bootstrap, configure
from wmco.payload import manifest as payload_manifest
from wmco.settings import Settings
from wmco.windows import ssh


def node(
    name: str,
    *,
    address: str | None = None,
    annotations: dict[str, str] | None = None,
    ready: bool = True,
) -> Node:
    return Node(
        metadata=ObjectMeta(name=name, annotations=annotations),
        status=NodeStatus(
            addresses=[NodeAddress(type="InternalIP", address=address)] if address else None,
            conditions=[NodeCondition(type="Ready", status="True" if ready else "False")],
        ),
    )


def instance(
    address: str = "10.0.0.5", origin: configure.Origin = configure.Origin.BYOH
) -> configure.Instance:
    return configure.Instance(address=address, username="Administrator", origin=origin)


@pytest.fixture
def inputs(tmp_path: Path) -> configure.Inputs:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    payload = payload_manifest.generate_test_payload(tmp_path / "payload", size=64)
    return configure.Inputs.from_key(Settings(), pem, payload, "1.2.3")


def test_inputs_derive_the_reference_pub_key_hash(inputs: configure.Inputs) -> None:
    key = userdata.load_private_key(inputs.private_key_pem)
    assert inputs.pub_key_hash == userdata.pub_key_hash(key)
    assert "PRIVATE" not in repr(inputs)


def test_unusable_key_is_refused(tmp_path: Path) -> None:
    payload = payload_manifest.generate_test_payload(tmp_path / "p", size=64)
    with pytest.raises(userdata.PrivateKeyError):
        configure.Inputs.from_key(Settings(), b"not a key", payload, "1")


def test_match_node_prefers_the_recorded_address_over_a_reported_one() -> None:
    reported = node("a", address="10.0.0.5")
    recorded = node("b", annotations={names.INSTANCE_ADDRESS_ANNOTATION: "10.0.0.5"})
    assert configure.match_node([reported, recorded], instance()) is recorded
    assert configure.match_node([reported], instance()) is reported
    assert configure.match_node([node("c", address="10.0.0.6")], instance()) is None


def test_up_to_date_needs_this_version_and_this_key() -> None:
    current = node(
        "a", annotations={names.VERSION_ANNOTATION: "1", names.PUB_KEY_HASH_ANNOTATION: "h"}
    )
    assert configure.is_up_to_date(current, "1", "h")
    assert not configure.is_up_to_date(current, "2", "h")
    assert not configure.is_up_to_date(current, "1", "other")
    assert not configure.is_up_to_date(None, "1", "h")
    assert configure.node_is_ready(current)
    assert not configure.node_is_ready(node("b", ready=False))


def test_node_ip_only_for_ipv4_addresses() -> None:
    assert instance("10.0.0.5").node_ip == "10.0.0.5"
    assert instance("win.example.com").node_ip is None


def test_metadata_of_a_listed_host(inputs: configure.Inputs) -> None:
    key = ssh.HostKey(
        "ssh-ed25519", b"\x00\x00\x00\x0bssh-ed25519" + b"\x00\x00\x00\x20" + b"k" * 32
    )
    patch = configure.node_metadata_patch(instance(), inputs, key)
    labels, annotations = patch["metadata"]["labels"], patch["metadata"]["annotations"]
    assert labels[names.BYOH_LABEL] == "true" and labels[names.WORKER_ROLE_LABEL] == ""
    assert annotations[names.VERSION_ANNOTATION] == "1.2.3"
    assert annotations[names.PUB_KEY_HASH_ANNOTATION] == inputs.pub_key_hash
    assert annotations[names.INSTANCE_ADDRESS_ANNOTATION] == "10.0.0.5"
    assert annotations[names.SSH_HOST_KEY_TYPE_ANNOTATION] == "ssh-ed25519"
    assert names.MACHINE_ANNOTATION not in annotations


def test_metadata_of_a_machine_host(inputs: configure.Inputs) -> None:
    machine = configure.Instance(
        address="10.0.0.7",
        username="Administrator",
        origin=configure.Origin.MACHINE,
        machine="mapi/m-1",
    )
    patch = configure.node_metadata_patch(machine, inputs, None)
    assert names.BYOH_LABEL not in patch["metadata"]["labels"]
    assert patch["metadata"]["annotations"][names.MACHINE_ANNOTATION] == "mapi/m-1"
    assert names.SSH_HOST_KEY_ANNOTATION not in patch["metadata"]["annotations"]


def test_bootstrap_kubeconfig_names_the_ca_by_path_and_carries_the_token() -> None:
    endpoint = bootstrap.ClusterEndpoint(server="https://10.0.0.1:6443", ca_pem=b"CA")
    token = bootstrap.Token("abcdef", "0123456789abcdef")
    config = json.loads(bootstrap.bootstrap_kubeconfig(endpoint, "C:\\k\\ca.crt", token))
    assert config["clusters"][0]["cluster"] == {
        "server": "https://10.0.0.1:6443",
        "certificate-authority": "C:\\k\\ca.crt",
    }
    assert config["users"][0]["user"]["token"] == "abcdef.0123456789abcdef"
    assert "0123456789abcdef" not in repr(token)
