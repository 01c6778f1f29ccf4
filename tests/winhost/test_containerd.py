"""The simulated containerd as the SCM runs it: configuration refusal, CRI network readiness,
pod sandboxes (CNI ADD/DEL with host-local and HNS endpoints) and container logs.

Each test boots no SSH: it writes files on the machine's disk, creates the containerd service
with the operator's command line and drives the CRI the kubelet would use.
"""

from __future__ import annotations

import json

import pytest

from containerd_helpers import (
    BIN_PATH,
    CNI_CONF,
    CONF,
    LOG_FILE,
    OVERLAY,
    WMCO_TOML,
    cni_conf,
    make_overlay,
    new_machine,
    start_containerd,
)
from wmco_sandbox.winhost.core.machine import Machine
from wmco_sandbox.winhost.core.processes import (
    ContainerRequest,
    CriError,
    CriRuntime,
    PodSandboxRequest,
    ProgramEnvironment,
)
from wmco_sandbox.winhost.core.scm import State

NOT_INITIALIZED = "Network plugin returns error: cni plugin not initialized"


def cri_of(host: Machine) -> CriRuntime:
    cri = host.cri()
    assert cri is not None
    return cri


def log_text(host: Machine) -> str:
    return (host.disk.read_file(LOG_FILE) or b"").decode()


# ---------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            b'version = 2\n[plugins."io.containerd.grpc.v1.cri"\n',
            f"containerd: failed to load TOML: {CONF}: (2, ",
        ),
        (
            b"version = 3\n",
            f"containerd: failed to load TOML from {CONF}: unsupported config version `3`",
        ),
        (
            b'version = "2"\n',
            "containerd: failed to unmarshal TOML: (1, 11): Can't convert 2(string) to int",
        ),
    ],
    ids=["unparseable", "unknown-version", "wrong-type"],
)
async def test_a_refused_config_stops_the_service_with_containerds_error(
    toml: bytes, expected: str
) -> None:
    host = new_machine()
    host.disk.write_file(CONF, toml)
    await start_containerd(host)
    svc = host.scm.require("containerd")
    assert svc.state is State.STOPPED and svc.exit_code == 1067
    assert expected in log_text(host)
    assert host.cri() is None


async def test_a_containerd_2_binary_reads_version_3_and_migrates_version_2() -> None:
    host = new_machine(containerd_version="v2.1.4")
    v3 = (
        "version = 3\n"
        '[plugins."io.containerd.cri.v1.images".pinned_images]\n'
        '  sandbox = "mcr.microsoft.com/oss/kubernetes/pause:3.10.2"\n'
        '[plugins."io.containerd.cri.v1.runtime".cni]\n'
        "  bin_dirs = ['C:\\k\\cni']\n"
        "  conf_dir = 'C:\\k\\cni\\config'\n"
    )
    host.disk.write_file(CONF, v3.encode())
    make_overlay(host)
    host.disk.write_file(CNI_CONF, cni_conf())
    await start_containerd(host)
    status = cri_of(host).status()
    assert (status.runtime_ready, status.network_ready) == (True, True)

    await host.scm.stop("containerd")
    host.disk.write_file(CONF, WMCO_TOML)
    await start_containerd(host)
    assert cri_of(host).status().network_ready
    assert "Configuration migrated from version 2" in log_text(host)


async def test_a_cri_table_error_leaves_containerd_running_without_cri() -> None:
    host = new_machine()
    host.disk.write_file(
        CONF,
        WMCO_TOML.replace(
            b'default_runtime_name = "runhcs-wcow-process"', b'default_runtime_name = "nope"'
        ),
    )
    await start_containerd(host)
    assert host.scm.running("containerd")
    assert "failed to load plugin io.containerd.grpc.v1.cri" in log_text(host)
    assert not cri_of(host).status().runtime_ready


# ------------------------------------------------------------------------- network readiness


async def test_network_is_ready_only_with_a_loadable_config_and_its_hns_network() -> None:
    host = new_machine()
    await start_containerd(host)
    cri = cri_of(host)
    status = cri.status()
    assert status.runtime_ready and not status.network_ready
    assert (status.network_reason, status.network_message) == (
        "NetworkPluginNotReady",
        NOT_INITIALIZED,
    )
    assert "failed to load cni during init" in log_text(host)

    host.disk.write_file(CNI_CONF, cni_conf())
    assert not cri.status().network_ready  # the HNS network does not exist yet
    make_overlay(host)
    assert cri.status().network_ready

    # Files go-cni never reads do not matter; an earlier broken one does.
    host.disk.write_file("C:\\k\\cni\\config\\ovnkube-client-current.pem", b"PEM")
    assert cri.status().network_ready
    host.disk.write_file("C:\\k\\cni\\config\\00-broken.conf", b"{not json")
    assert not cri.status().network_ready
    host.disk.remove("C:\\k\\cni\\config\\00-broken.conf")
    assert cri.status().network_ready

    host.disk.remove(CNI_CONF)
    assert cri.status().network_message == NOT_INITIALIZED
    host.disk.write_file(CNI_CONF, cni_conf())
    assert cri.status().network_ready


async def test_a_missing_plugin_binary_or_wrong_network_type_is_not_ready() -> None:
    host = new_machine()
    await start_containerd(host)
    cri = cri_of(host)
    host.hns.create_network(
        OVERLAY, "L2Bridge", [], management_ip=host.facts.address, created_by="test"
    )
    host.disk.write_file(CNI_CONF, cni_conf())
    assert not cri.status().network_ready  # win-overlay needs an Overlay network
    network = host.hns.network_named(OVERLAY)
    assert network is not None
    host.hns.remove_network(network.id)
    make_overlay(host)
    assert cri.status().network_ready
    host.disk.remove("C:\\k\\cni\\win-overlay.exe")
    assert not cri.status().network_ready


# ---------------------------------------------------------------------------------- sandboxes


def request(name: str = "web", **extra: object) -> PodSandboxRequest:
    return PodSandboxRequest(namespace="default", name=name, uid=f"uid-{name}", **extra)  # type: ignore[arg-type]


async def test_a_pod_gets_an_address_a_host_local_record_and_an_endpoint() -> None:
    host = new_machine()
    network = make_overlay(host)
    host.disk.write_file(CNI_CONF, cni_conf())
    await start_containerd(host)
    cri = cri_of(host)
    first = await cri.run_pod_sandbox(request("a"))
    second = await cri.run_pod_sandbox(request("b"))
    assert (first.ip, second.ip) == ("10.132.0.2", "10.132.0.3")
    record = host.disk.read_file(f"C:\\var\\lib\\cni\\networks\\{OVERLAY}\\10.132.0.2")
    assert record is not None and record.decode().startswith(first.sandbox_id)
    endpoints = {e.ip_address: e for e in host.hns.endpoints_of(network.id)}
    assert endpoints["10.132.0.2"].name == f"{first.sandbox_id}_{OVERLAY}"

    await cri.remove_pod_sandbox("uid-a")
    assert host.disk.get(f"C:\\var\\lib\\cni\\networks\\{OVERLAY}\\10.132.0.2") is None
    assert "10.132.0.2" not in {e.ip_address for e in host.hns.endpoints_of(network.id)}
    third = await cri.run_pod_sandbox(request("c"))
    assert third.ip == "10.132.0.4"  # host-local goes on after the last address it reserved

    host_pod = await cri.run_pod_sandbox(request("hp", host_network=True))
    assert host_pod.ip == host.facts.address


async def test_sandbox_failures_carry_containerds_messages() -> None:
    host = new_machine()
    make_overlay(host)
    host.disk.write_file(CNI_CONF, cni_conf())
    await start_containerd(host)
    cri = cri_of(host)
    with pytest.raises(CriError) as unknown:
        await cri.run_pod_sandbox(request(runtime_handler="runhcs-wcow-hypervisor-17763"))
    assert str(unknown.value) == (
        "rpc error: code = Unknown desc = failed to get sandbox runtime: "
        'no runtime for "runhcs-wcow-hypervisor-17763" is configured'
    )
    host.disk.remove("C:\\k\\cni\\host-local.exe")
    with pytest.raises(CriError) as no_ipam:
        await cri.run_pod_sandbox(request())
    message = str(no_ipam.value)
    assert message.startswith(
        'rpc error: code = Unknown desc = failed to setup network for sandbox "'
    )
    assert message.endswith(
        f'plugin type="win-overlay" name="{OVERLAY}" failed (add): '
        'failed to find plugin "host-local" in path [C:\\k\\cni]'
    )


async def test_an_old_pause_image_fails_every_sandbox_on_2025() -> None:
    host = new_machine(image="2025")
    host.disk.write_file(CONF, WMCO_TOML.replace(b"pause:3.10.2", b"pause:3.9"))
    await start_containerd(host)
    with pytest.raises(CriError, match="no match for platform in manifest: not found"):
        await cri_of(host).run_pod_sandbox(request(host_network=True))

    await host.scm.stop("containerd")
    host.disk.write_file(CONF, WMCO_TOML)
    await start_containerd(host)
    assert (await cri_of(host).run_pod_sandbox(request(host_network=True))).ip == host.facts.address


# ---------------------------------------------------------------------------------- containers


async def test_containers_log_what_they_echo_or_what_their_behaviour_returns() -> None:
    host = new_machine()
    await start_containerd(host)

    async def daemon(req: ContainerRequest, env: ProgramEnvironment) -> list[str]:
        env.write_file("C:\\etc\\cni\\net.d\\10-test.conf", json.dumps({"n": 1}).encode())
        return [f"installed on {req.node_name}"]

    host.container_behaviours["example.com/cni-installer"] = daemon
    cri = cri_of(host)
    sandbox = await cri.run_pod_sandbox(request(host_network=True))

    def container(name: str, image: str, *args: str) -> ContainerRequest:
        return ContainerRequest("default", "web", "uid-web", "node-1", name, image, args=args)

    await cri.start_container(
        sandbox.sandbox_id,
        container(
            "shell",
            "mcr.microsoft.com/windows/servercore:ltsc2022",
            "cmd",
            "/c",
            "echo hello from windows & ping -t localhost",
        ),
    )
    await cri.start_container(sandbox.sandbox_id, container("cni", "example.com/cni-installer:v1"))
    shell_log = cri.container_log("uid-web", "shell")
    assert shell_log is not None and "hello from windows" in shell_log.splitlines()
    assert cri.container_log("uid-web", "cni") == "installed on node-1\n"
    assert host.disk.read_file("C:\\etc\\cni\\net.d\\10-test.conf") is not None
    assert cri.container_log("uid-web", "missing") is None
    assert cri.container_log("uid-other", "shell") is None
    assert BIN_PATH.startswith("C:\\k\\containerd\\containerd.exe")
