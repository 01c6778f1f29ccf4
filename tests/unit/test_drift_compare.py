"""The drift comparison, the probe's parser and the client-certificate decision (pure parts).

The desired state is computed by the same functions as the configure flow's
(:class:`wmco.nodeconfig.probe.Planner` over :mod:`wmco.nodeconfig.desired`); a host report
built to match it exactly has no finding, and each kind of drift gives exactly its finding.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lightkube.models.core_v1 import NodeCondition, NodeStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node

from wmco import names, settings
from wmco.cluster import clientca
from wmco.nodeconfig import bootstrap, network, probe
from wmco.nodeconfig.instance import Inputs, Instance, Origin
from wmco.payload import manifest as payload_manifest
from wmco.settings import Settings
from wmco.windows import answers, commands, layout, planner, probeanswers, quoting
from wmco_sandbox import pki

CA = clientca.ClientCa(source=clientca.KUBERNETES_SOURCE, pem=b"PEM\n", certificates=1)
ENDPOINT = bootstrap.ClusterEndpoint(server="https://10.0.0.1:6443", ca_pem=b"CA\n")
OVERLAY = answers.HnsNetwork(
    id="6A3E5C31-2B1F-4D8E-9F0A-1C2D3E4F5A6B",
    name=names.HYBRID_OVERLAY_NETWORK,
    type="Overlay",
    management_ip="10.0.0.5",
    address_prefix="10.132.0.0/24",
    gateway_address="10.132.0.1",
)
VIP = answers.HnsEndpoint(
    id="C0FFEE00-1111-2222-3333-444455556666",
    name=names.VIP_ENDPOINT,
    virtual_network=OVERLAY.id,
    ip_address="10.132.0.2",
)
INSTANCE = Instance(address="10.0.0.5", username="Administrator", origin=Origin.BYOH)


def inputs(tmp_path: Path, profile: settings.NetworkProfile) -> Inputs:
    payload = payload_manifest.generate_test_payload(tmp_path / "payload", version="t")
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return Inputs.from_key(Settings(network_profile=profile), pem, payload, "1", client_ca=CA)


def node() -> Node:
    return Node(
        metadata=ObjectMeta(
            name="win-1",
            labels={names.WINDOWS_BUILD_LABEL: "10.0.20348"},
            annotations={names.HYBRID_OVERLAY_SUBNET_ANNOTATION: "10.132.0.0/24"},
        ),
        status=NodeStatus(conditions=[NodeCondition(type="Ready", status="True")]),
    )


def matching(expected: probe.Expected) -> probeanswers.ProbeReport:
    """What a host exactly as desired answers."""
    observed = {
        spec.name: planner.ObservedService(
            spec.name,
            answers.ServiceConfig(
                spec.name, answers.StartType.AUTO, spec.command_line, spec.depends_on, spec.name
            ),
            answers.ServiceState.STOPPED
            if spec.name in expected.left_stopped
            else answers.ServiceState.RUNNING,
        )
        for spec in expected.services
    }
    hashes = {path.lower(): digest for path, digest in expected.files.items()}
    if expected.network is not None:
        hashes[layout.OVN_CNI_CONFIG.lower()] = network.cni_content(
            OVERLAY, expected.network.service_cidr
        ).sha256
        hashes[layout.KUBE_PROXY_CONFIG.lower()] = network.kube_proxy_content(
            "win-1", "10.132.0.0/24", VIP, debug=False
        ).sha256
    return probeanswers.ProbeReport(
        build=20348,
        services=observed,
        hashes=hashes,
        networks=(OVERLAY,),
        endpoints=(VIP,),
    )


@pytest.fixture
def ovn(tmp_path: Path) -> probe.Expected:
    return probe.Planner(
        inputs(tmp_path, settings.NetworkProfile.OVN_HYBRID), INSTANCE, node()
    ).expected(ENDPOINT, 20348)


def messages(findings: tuple[probe.Finding, ...]) -> list[str]:
    return [finding.message for finding in findings]


def test_a_host_as_desired_has_no_finding(ovn: probe.Expected) -> None:
    assert probe.compare(ovn, matching(ovn)) == ()


def test_the_bootstrap_kubeconfig_is_not_compared_and_the_network_files_are(
    ovn: probe.Expected,
) -> None:
    lowered = [path.lower() for path in ovn.paths]
    assert layout.BOOTSTRAP_KUBECONFIG.lower() not in lowered
    assert layout.KUBE_PROXY_CONFIG.lower() in lowered
    assert layout.OVN_CNI_CONFIG.lower() in lowered
    assert layout.KUBELET_EXE.lower() in lowered
    # Without an exporter CA the flow leaves windows_exporter stopped: not a finding.
    assert ovn.left_stopped == ("windows_exporter",)


def test_each_kind_of_drift_gives_its_finding(ovn: probe.Expected) -> None:
    report = matching(ovn)
    proxy = report.services["kube-proxy"]
    assert proxy.config is not None
    services = dict(report.services)
    services["kube-proxy"] = dataclasses.replace(proxy, state=answers.ServiceState.STOPPED)
    kubelet = services["kubelet"]
    assert kubelet.config is not None
    services["kubelet"] = dataclasses.replace(
        kubelet,
        config=dataclasses.replace(
            kubelet.config, binary_path="C:\\k\\kubelet.exe", dependencies=()
        ),
    )
    del services["containerd"]
    hashes = dict(report.hashes)
    hashes[layout.KUBE_PROXY_CONFIG.lower()] = "0" * 64
    del hashes[layout.KUBELET_CONFIG.lower()]
    drifted = dataclasses.replace(report, services=services, hashes=hashes)
    assert messages(probe.compare(ovn, drifted)) == [
        "containerd was not installed",
        "kubelet had another command line, dependencies",
        "kube-proxy was Stopped",
        "C:\\k\\kubelet.conf was missing",
        "C:\\k\\kube-proxy.conf differed",
    ]
    assert probe.describe(probe.compare(ovn, drifted)).startswith(
        "containerd was not installed; kubelet had"
    )


def test_a_missing_overlay_network_or_vip_endpoint_is_a_finding(ovn: probe.Expected) -> None:
    report = matching(ovn)
    no_vip = probe.compare(ovn, dataclasses.replace(report, endpoints=()))
    # kube-proxy.conf derives from the endpoint: without one, the endpoint is the finding.
    assert messages(no_vip) == ["HNS endpoint VIPEndpoint was missing"]
    no_network = probe.compare(ovn, dataclasses.replace(report, networks=()))
    assert messages(no_network) == [
        "HNS network OVNKubernetesHybridOverlayNetwork for 10.132.0.0/24 was missing"
    ]


def test_after_a_reboot_kube_proxys_own_sourcevip_endpoint_is_not_drift(
    ovn: probe.Expected,
) -> None:
    # HNS forgot VIPEndpoint at the reboot; kube-proxy re-made its endpoint (no name) with the
    # address its configuration names: the configure flow adopts it, so the probe must too.
    remade = dataclasses.replace(VIP, id="BEEF0000-1111-2222-3333-444455556666", name="")
    report = dataclasses.replace(matching(ovn), endpoints=(remade,))
    assert messages(probe.compare(ovn, report)) == []
    # an unnamed endpoint at another address does not stand in for it
    other = dataclasses.replace(remade, ip_address="10.132.0.9")
    report = dataclasses.replace(matching(ovn), endpoints=(other,))
    assert messages(probe.compare(ovn, report)) == ["HNS endpoint VIPEndpoint was missing"]


def test_hostprocess_wants_no_network_service(tmp_path: Path) -> None:
    expected = probe.Planner(
        inputs(tmp_path, settings.NetworkProfile.HOSTPROCESS), INSTANCE, node()
    ).expected(ENDPOINT, 20348)
    assert expected.network is None
    report = matching(expected)
    assert probe.compare(expected, report) == ()
    stray = planner.ObservedService(
        "kube-proxy",
        answers.ServiceConfig("kube-proxy", answers.StartType.AUTO, "C:\\k\\x.exe", (), "x"),
        answers.ServiceState.RUNNING,
    )
    with_stray = dataclasses.replace(report, services={**report.services, "kube-proxy": stray})
    assert messages(probe.compare(expected, with_stray)) == [
        "kube-proxy was installed (not wanted)"
    ]


def test_the_probe_command_asks_for_every_service_and_path(ovn: probe.Expected) -> None:
    command = commands.drift_probe(ovn.service_names, ovn.paths, hns=True)
    for name in ovn.service_names:
        assert f"sc.exe qc '{name}'" in command and f"sc.exe query '{name}'" in command
    assert "'C:\\k\\kube-proxy.conf'" in command
    assert command.endswith("Write-Output 'wmco-probe end'")
    with pytest.raises(quoting.UnsafeValueError):
        commands.drift_probe(("kubelet",), ("k\\relative.conf",), hns=False)


QC = """[SC] QueryServiceConfig SUCCESS

SERVICE_NAME: kubelet
        TYPE               : 10  WIN32_OWN_PROCESS
        START_TYPE         : 2   AUTO_START
        ERROR_CONTROL      : 1   NORMAL
        BINARY_PATH_NAME   : C:\\k\\kubelet.exe --config=C:\\k\\kubelet.conf
        LOAD_ORDER_GROUP   :
        TAG                : 0
        DISPLAY_NAME       : kubelet
        DEPENDENCIES       : containerd
        SERVICE_START_NAME : LocalSystem
"""
QUERY = """
SERVICE_NAME: kubelet
        TYPE               : 10  WIN32_OWN_PROCESS
        STATE              : 1  STOPPED
        WIN32_EXIT_CODE    : 0  (0x0)
        SERVICE_EXIT_CODE  : 0  (0x0)
        CHECKPOINT         : 0x0
        WAIT_HINT          : 0x0
"""
MISSING = "[SC] OpenService FAILED 1060:\n\nThe specified service does not exist as an installed service.\n"


def test_the_probe_answer_is_parsed_section_by_section() -> None:
    text = (
        "wmco-probe build\n20348\n"
        f"wmco-probe qc kubelet\n{QC}wmco-probe query kubelet\n{QUERY}"
        f"wmco-probe qc kube-proxy\n{MISSING}wmco-probe query kube-proxy\n{MISSING}"
        'wmco-probe files\n[{"Algorithm":"SHA256","Hash":"AB'
        + "0"
        * 62
        + '","Path":"C:\\\\k\\\\A"}]\n'
        "wmco-probe end\n"
    )
    report = probeanswers.parse_probe(text)
    assert report.build == 20348
    kubelet = report.services["kubelet"]
    assert kubelet.config is not None and kubelet.config.dependencies == ("containerd",)
    assert kubelet.state is answers.ServiceState.STOPPED
    assert not report.services["kube-proxy"].exists
    assert report.hashes == {"c:\\k\\a": "ab" + "0" * 62}
    with pytest.raises(answers.CommandOutputError, match="cut off"):
        probeanswers.parse_probe(text.replace("wmco-probe end\n", ""))


def test_the_client_certificate_is_read_without_its_key_and_judged_by_its_dates() -> None:
    pair = pki.CertificateAuthority("drift-unit").pair
    block = (pair.cert_pem + pair.key_pem).decode().split("-----END CERTIFICATE-----")[0]
    found = probeanswers.parse_certificate(block)
    assert found is not None
    margin = datetime.timedelta(minutes=10)
    assert found.valid_for(found.not_before + margin, margin)
    assert not found.valid_for(found.not_after - margin / 2, margin)  # about to end
    assert not found.valid_for(found.not_before - margin, margin)  # not valid yet
    assert probeanswers.parse_certificate("") is None
    assert probeanswers.parse_certificate("-----BEGIN CERTIFICATE-----\nnot base64\n") is None


def test_resync_interval_setting() -> None:
    assert Settings().resync_interval == 600.0
    assert Settings.from_env({"WMCO_RESYNC_INTERVAL": "30"}).resync_interval == 30.0
    with pytest.raises(settings.SettingsError):
        Settings(resync_interval=0)
