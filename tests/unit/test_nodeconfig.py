"""Pure decisions of the configure and deconfigure flows.

Which node is an instance's, is it up to date (key, version, client CA), what metadata it gets,
which files it must hold, which HNS network is the pods', whether the VIP endpoint can be reused,
and what deconfiguration removes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lightkube.models.core_v1 import NodeAddress, NodeCondition, NodeStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node

from wmco import names, settings, userdata
from wmco.cluster import clientca
from wmco.nodeconfig import bootstrap, deconfigure, hostfiles, network
from wmco.nodeconfig import node as node_mod
from wmco.nodeconfig.instance import Inputs, Instance, Origin, Step
from wmco.payload import manifest as payload_manifest
from wmco.settings import Settings
from wmco.windows import answers, commands, kubelet, layout, sshkeys

CA = clientca.ClientCa(source=clientca.KUBERNETES_SOURCE, pem=b"PEM\n", certificates=1)


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
            conditions=[
                NodeCondition(
                    type="Ready",
                    status="True" if ready else "False",
                    message=None if ready else "container runtime network not ready",
                )
            ],
        ),
    )


def instance(address: str = "10.0.0.5", origin: Origin = Origin.BYOH) -> Instance:
    return Instance(address=address, username="Administrator", origin=origin)


@pytest.fixture
def payload(tmp_path: Path) -> payload_manifest.Manifest:
    return payload_manifest.generate_test_payload(tmp_path / "payload", size=64)


@pytest.fixture
def inputs(payload: payload_manifest.Manifest) -> Inputs:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return Inputs.from_key(Settings(), pem, payload, "1.2.3", client_ca=CA)


def test_inputs_derive_the_reference_pub_key_hash(inputs: Inputs) -> None:
    key = userdata.load_private_key(inputs.private_key_pem)
    assert inputs.pub_key_hash == userdata.pub_key_hash(key)
    assert "PRIVATE" not in repr(inputs)
    assert inputs.client_ca_hash == hashlib.sha256(b"PEM\n").hexdigest()


def test_unusable_key_is_refused(payload: payload_manifest.Manifest) -> None:
    with pytest.raises(userdata.PrivateKeyError):
        Inputs.from_key(Settings(), b"not a key", payload, "1", client_ca=CA)


def test_a_bad_client_ca_has_no_hash(inputs: Inputs) -> None:
    problem = clientca.ClientCaProblem(clientca.KUBERNETES_SOURCE, "broken", exists=True)
    broken = Inputs(
        inputs.settings,
        inputs.private_key_pem,
        inputs.payload,
        inputs.version,
        inputs.pub_key_hash,
        problem,
    )
    assert broken.client_ca_hash is None


def test_match_node_prefers_the_recorded_address_over_a_reported_one() -> None:
    reported = node("a", address="10.0.0.5")
    recorded = node("b", annotations={names.INSTANCE_ADDRESS_ANNOTATION: "10.0.0.5"})
    assert node_mod.match_node([reported, recorded], instance()) is recorded
    assert node_mod.match_node([reported], instance()) is reported
    assert node_mod.match_node([node("c", address="10.0.0.6")], instance()) is None


def test_up_to_date_needs_this_version_this_key_and_this_client_ca() -> None:
    current = node(
        "a",
        annotations={
            names.VERSION_ANNOTATION: "1",
            names.PUB_KEY_HASH_ANNOTATION: "h",
            names.KUBELET_CA_HASH_ANNOTATION: "ca1",
        },
    )
    assert node_mod.is_up_to_date(current, "1", "h", "ca1")
    assert not node_mod.is_up_to_date(current, "2", "h", "ca1")
    assert not node_mod.is_up_to_date(current, "1", "other", "ca1")
    assert not node_mod.is_up_to_date(current, "1", "h", "ca2"), "a rotated bundle re-queues"
    assert node_mod.is_up_to_date(current, "1", "h", None), "an unusable bundle changes nothing"
    assert not node_mod.is_up_to_date(None, "1", "h", "ca1")
    assert node_mod.node_is_ready(current)
    not_ready = node("b", ready=False)
    assert not node_mod.node_is_ready(not_ready)
    assert node_mod.ready_message(not_ready) == "container runtime network not ready"


def test_node_ip_only_for_ipv4_addresses() -> None:
    assert instance("10.0.0.5").node_ip == "10.0.0.5"
    assert instance("win.example.com").node_ip is None


def test_metadata_of_a_listed_host(inputs: Inputs) -> None:
    key = sshkeys.HostKey(
        "ssh-ed25519", b"\x00\x00\x00\x0bssh-ed25519" + b"\x00\x00\x00\x20" + b"k" * 32
    )
    patch = node_mod.node_metadata_patch(instance(), inputs, key)
    labels, annotations = patch["metadata"]["labels"], patch["metadata"]["annotations"]
    assert labels[names.BYOH_LABEL] == "true" and labels[names.WORKER_ROLE_LABEL] == ""
    assert annotations[names.VERSION_ANNOTATION] == "1.2.3"
    assert annotations[names.PUB_KEY_HASH_ANNOTATION] == inputs.pub_key_hash
    assert annotations[names.KUBELET_CA_HASH_ANNOTATION] == inputs.client_ca_hash
    assert annotations[names.INSTANCE_ADDRESS_ANNOTATION] == "10.0.0.5"
    assert annotations[names.SSH_HOST_KEY_TYPE_ANNOTATION] == "ssh-ed25519"
    assert names.MACHINE_ANNOTATION not in annotations


def test_metadata_of_a_machine_host(inputs: Inputs) -> None:
    machine = Instance(
        address="10.0.0.7", username="Administrator", origin=Origin.MACHINE, machine="mapi/m-1"
    )
    patch = node_mod.node_metadata_patch(machine, inputs, None)
    assert names.BYOH_LABEL not in patch["metadata"]["labels"]
    assert patch["metadata"]["annotations"][names.MACHINE_ANNOTATION] == "mapi/m-1"
    assert names.SSH_HOST_KEY_ANNOTATION not in patch["metadata"]["annotations"]


def test_bootstrap_kubeconfig_names_the_ca_by_path_and_carries_the_token() -> None:
    endpoint = bootstrap.ClusterEndpoint(server="https://10.0.0.1:6443", ca_pem=b"CA")
    token = bootstrap.Token("wmco-bootstrap/windows-host-aaaa", "eyJhbGciOi.eyJhdWQiOl.c2lnbmF0")
    config = json.loads(bootstrap.bootstrap_kubeconfig(endpoint, "C:\\k\\ca.crt", token))
    assert config["clusters"][0]["cluster"] == {
        "server": "https://10.0.0.1:6443",
        "certificate-authority": "C:\\k\\ca.crt",
    }
    assert config["users"][0]["user"]["token"] == "eyJhbGciOi.eyJhdWQiOl.c2lnbmF0"
    assert "eyJhbGciOi" not in repr(token)
    assert "windows-host-aaaa" in repr(token)


def test_bootstrap_account_names_are_object_names_for_any_address() -> None:
    for address in ("10.0.0.5", "fd00::5", "WIN-A.example.com", "a" * 253):
        name = bootstrap.account_name(address)
        assert re.fullmatch(r"windows-host-[0-9a-f]{16}", name), name
    assert bootstrap.account_name("10.0.0.5") == bootstrap.account_name("10.0.0.5")
    assert bootstrap.account_name("10.0.0.5") != bootstrap.account_name("10.0.0.6")


# --- Files a node holds ---------------------------------------------------------------------------


def node_files(profile: settings.NetworkProfile) -> hostfiles.NodeFiles:
    return hostfiles.NodeFiles(
        profile=profile,
        sandbox_image="mcr.microsoft.com/oss/kubernetes/pause:3.10.2",
        endpoint=bootstrap.ClusterEndpoint(server="https://10.0.0.1:6443", ca_pem=b"SERVING CA"),
        token=bootstrap.Token("wmco-bootstrap/windows-host-aaaa", "eyJhbGciOi.eyJhdWQiOl.c2lnbmF0"),
        client_ca=CA,
        kubelet=kubelet.KubeletConfigInputs(cluster_dns=("172.30.0.10",)),
    )


def test_generated_files_of_each_profile() -> None:
    ovn = {
        f.destination: f
        for f in hostfiles.generated_files(node_files(settings.NetworkProfile.OVN_HYBRID))
    }
    assert set(ovn) == {
        layout.CONTAINERD_CONFIG,
        layout.KUBELET_CONFIG,
        layout.BOOTSTRAP_CA,
        layout.KUBELET_CA,
        layout.BOOTSTRAP_KUBECONFIG,
        layout.HNS_MODULE,
    }
    assert ovn[layout.KUBELET_CA].data == b"PEM\n", "the client CA, not the serving CA"
    assert ovn[layout.BOOTSTRAP_CA].data == b"SERVING CA"
    assert ovn[layout.KUBELET_CA].sha256 == CA.sha256
    assert "eyJhbGciOi" not in repr(ovn[layout.BOOTSTRAP_KUBECONFIG])
    hostprocess = hostfiles.generated_files(node_files(settings.NetworkProfile.HOSTPROCESS))
    assert layout.HNS_MODULE not in {f.destination for f in hostprocess}


def test_the_test_payload_does_not_clash_with_generated_files(
    payload: payload_manifest.Manifest, tmp_path: Path
) -> None:
    assert hostfiles.clashes(payload) == []
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "conf.toml").write_text("x")
    clashing = payload_manifest.write_manifest(
        tmp_path / "c", [("conf.toml", "C:\\k\\containerd\\CONTAINERD_CONF.toml", "1")], version="v"
    )
    assert hostfiles.clashes(clashing) == ["C:\\k\\containerd\\CONTAINERD_CONF.toml"]


# --- The overlay network and the VIP endpoint ------------------------------------------------------

OVERLAY_ID = "6A3E5C31-2B1F-4D8E-9F0A-1C2D3E4F5A6B"
OTHER_ID = "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"
OVERLAY = answers.HnsNetwork(
    id=OVERLAY_ID,
    name=names.HYBRID_OVERLAY_NETWORK,
    type="Overlay",
    management_ip="10.0.0.5",
    address_prefix="10.132.0.0/24",
    gateway_address="10.132.0.1",
)
BASE = answers.HnsNetwork(
    id=OTHER_ID,
    name=names.HYBRID_OVERLAY_BASE_NETWORK,
    type="Overlay",
    management_ip="10.0.0.5",
    address_prefix="100.64.0.0/30",
)


def test_the_overlay_network_is_found_only_for_the_node_subnet() -> None:
    assert network.find_overlay_network((BASE, OVERLAY), "10.132.0.0/24") == OVERLAY
    assert network.find_overlay_network((BASE, OVERLAY), "10.132.0.0/24") is not BASE
    assert network.find_overlay_network((BASE,), "10.132.0.0/24") is None
    # The network of a previous subnet: hybrid-overlay-node is about to re-create it.
    assert network.find_overlay_network((OVERLAY,), "10.132.1.0/24") is None
    bridge = dataclasses.replace(OVERLAY, type="L2Bridge")
    assert network.find_overlay_network((bridge,), "10.132.0.0/24") is None
    no_management = dataclasses.replace(OVERLAY, management_ip=None)
    assert network.find_overlay_network((no_management,), "10.132.0.0/24") is None


def vip(network_id: str | None = OVERLAY_ID, ip: str | None = "10.132.0.2") -> answers.HnsEndpoint:
    return answers.HnsEndpoint(
        id="C0FFEE00-1111-2222-3333-444455556666",
        name=names.VIP_ENDPOINT,
        virtual_network=network_id,
        ip_address=ip,
    )


def test_vip_endpoint_decisions() -> None:
    decide = network.decide_vip_endpoint
    good = vip(OVERLAY_ID.lower())  # GUIDs compare without case
    other = answers.HnsEndpoint(id=OTHER_ID, name="a-pod", virtual_network=OVERLAY_ID)
    assert decide((), OVERLAY) == network.VipDecision(network.VipAction.CREATE)
    assert decide((other,), OVERLAY).action is network.VipAction.CREATE
    assert decide((other, good), OVERLAY) == network.VipDecision(network.VipAction.REUSE, good)
    # On another network (the overlay was re-created), or without an address: replace.
    assert decide((vip(OTHER_ID),), OVERLAY).action is network.VipAction.REPLACE
    assert decide((vip(ip=None),), OVERLAY).action is network.VipAction.REPLACE
    assert decide((good, vip(OTHER_ID)), OVERLAY).action is network.VipAction.REPLACE
    assert decide((good, good), OVERLAY).action is network.VipAction.REPLACE
    # A creation lost its connection: its attachment is unknown.
    assert decide((good,), OVERLAY, distrust=True).action is network.VipAction.REPLACE


def test_cni_and_kube_proxy_contents_come_from_the_network_and_the_vip() -> None:
    cni = network.cni_content(OVERLAY, "172.30.0.0/16")
    assert cni.destination == "C:\\k\\cni\\config\\cni.conf"
    assert cni.data is not None
    parsed = json.loads(cni.data)
    assert parsed["ipam"]["subnet"] == "10.132.0.0/24"
    assert parsed["policies"][2]["value"]["settings"]["providerAddress"] == "10.0.0.5"
    proxy = network.kube_proxy_content("win-1", "10.132.0.0/24", vip(), debug=False)
    assert proxy.destination == "C:\\k\\kube-proxy.conf"
    assert proxy.data is not None
    assert json.loads(proxy.data)["winkernel"]["sourceVip"] == "10.132.0.2"
    with pytest.raises(ValueError):
        network.kube_proxy_content("win-1", "10.132.0.0/24", vip(ip=None), debug=False)
    with pytest.raises(ValueError):
        network.cni_content(
            answers.HnsNetwork(id=OTHER_ID, name="n", type="Overlay"), "172.30.0.0/16"
        )


# --- Deconfiguration ------------------------------------------------------------------------------


def test_ovn_removals_take_the_vip_endpoint_the_networks_and_the_cni_state() -> None:
    removals = deconfigure.removals(settings.NetworkProfile.OVN_HYBRID)
    assert [r.command for r in removals[:3]] == [
        commands.remove_hns_endpoints("VIPEndpoint"),
        commands.remove_hns_networks("BaseOVNKubernetesHybridOverlayNetwork"),
        commands.remove_hns_networks("OVNKubernetesHybridOverlayNetwork"),
    ]
    assert {r.step for r in removals[:3]} == {Step.REMOVE_NETWORK}
    removed = [r.command for r in removals[3:]]
    for path in ("C:\\k\\cni\\config\\cni.conf", "C:\\var\\lib\\cni", "C:\\Temp\\hns.psm1"):
        assert commands.remove_path(path) in removed
    assert commands.remove_path("C:\\Temp") not in removed
    # Deepest first: C:\k\cni\config before C:\k\cni before C:\k.
    order = [r.what for r in removals]
    assert order.index("removal of C:\\k\\cni\\config") < order.index("removal of C:\\k\\cni")
    assert order.index("removal of C:\\k\\cni") < order.index("removal of C:\\k")


def test_hostprocess_removals_make_no_hns_calls() -> None:
    removals = deconfigure.removals(settings.NetworkProfile.HOSTPROCESS)
    assert all("Hns" not in r.command for r in removals)
    assert commands.remove_path("C:\\var\\lib\\cni") in [r.command for r in removals]
