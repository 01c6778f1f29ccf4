"""The node agents as services: kube-proxy's preconditions and hybrid-overlay-node's start.

kube-proxy (winkernel) runs only when its --config parses as a KubeProxyConfiguration in
kernelspace mode, names a network, and (on an Overlay network) has the WinOverlay gate on and a
sourceVip; otherwise it exits with kube-proxy's words in its service log and in kube-log-runner's
-log-file, and SCM recovery restarts it (waiting for a missing network and creating the sourceVip
endpoint are in test_boot_recovery.py). A rewritten config
file ends a running kube-proxy. hybrid-overlay-node refuses to run without the Containers
feature and creates the persistent base network shortly after it starts (dropping SSH), not
again after a reboot. Its Node handling against a real API server is in
tests/integration/test_hybrid_overlay.py.
"""

from __future__ import annotations

import json
from typing import Any

import asyncssh
import pytest
from winhost_helpers import connect, run_dropped, wait_for

from wmco_sandbox.winhost.agents import hybridoverlay, kubeproxy
from wmco_sandbox.winhost.core.scm import State
from wmco_sandbox.winhost.host import WindowsHost
from wmco_sandbox.winhost.network.hns import HnsNetwork, HnsSubnet

OVERLAY = "OVNKubernetesHybridOverlayNetwork"
PROXY_LOG = "C:\\var\\log\\kube-proxy\\kube-proxy.log"
PROXY_BIN = (
    f"C:\\k\\kube-log-runner.exe -log-file={PROXY_LOG} C:\\k\\kube-proxy.exe "
    "--config=C:\\k\\kube-proxy.conf --windows-service --v=2"
)
HO_LOG = "C:\\var\\log\\hybrid-overlay\\hybrid-overlay.log"


def proxy_config(vip: str, **changes: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": "C:\\k\\kubeconfig"},
        "clusterCIDR": "10.132.0.0/24",
        "featureGates": {"WinDSR": True, "WinOverlay": True},
        "hostnameOverride": "win-node",
        "mode": "kernelspace",
        "winkernel": {"enableDSR": True, "networkName": OVERLAY, "sourceVip": vip},
        "logging": {"verbosity": 2},
    }
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            conf[outer][inner] = value
        else:
            conf[key] = value
    return conf


def overlay_with_vip(host: WindowsHost) -> tuple[HnsNetwork, str]:
    hns = host.machine.hns
    network = hns.create_network(
        OVERLAY, "Overlay", [HnsSubnet("10.132.0.0/24", "10.132.0.1", 4097)],
        management_ip=host.address, persistent=False,
    )  # fmt: skip
    vip = hns.create_endpoint(network.id, "VIPEndpoint")
    hns.attach_endpoint(vip.id, 1)
    return network, vip.ip_address


async def install_kube_proxy(
    host: WindowsHost, config: bytes | None
) -> asyncssh.SSHClientConnection:
    host.machine.program_factories["kube-proxy"] = kubeproxy.factory_with(
        sync_period=0.02, network_poll=0.02, overlay_settle=0.02
    )
    disk = host.machine.disk
    for directory in ("C:\\k", "C:\\var\\log\\kube-proxy"):
        disk.mkdir(directory)
    for exe in ("kube-log-runner.exe", "kube-proxy.exe"):
        disk.write_file(f"C:\\k\\{exe}", b"MZ")
    if config is not None:
        disk.write_file("C:\\k\\kube-proxy.conf", config)
    conn = await connect(host, host.test_key)  # type: ignore[attr-defined]
    for command in (
        f"sc.exe create 'kube-proxy' binPath= '{PROXY_BIN}' start= auto",
        "sc.exe failure 'kube-proxy' reset= 86400 actions= restart/20",
        "sc.exe start 'kube-proxy'",
    ):
        result = await conn.run(command + "; exit $LASTEXITCODE", check=False)
        assert result.exit_status == 0, result.stdout
    return conn


@pytest.fixture
def keyed(containers_host: WindowsHost, client_key: asyncssh.SSHKey) -> WindowsHost:
    containers_host.test_key = client_key  # type: ignore[attr-defined]
    return containers_host


def logged(host: WindowsHost, text: str) -> int:
    return sum(text in line for line in host.machine.service_log("kube-proxy"))


FAILURES = [
    (None, 'err="failed complete: open C:\\\\k\\\\kube-proxy.conf: The system cannot find the file specified."'),
    ({"kind": "KubeletConfiguration"}, 'failed to decode: no kind \\"KubeletConfiguration\\" is registered'),
    ({"mode": "iptables"}, 'ProxyMode: Invalid value: \\"iptables\\": must be kernelspace or blank'),
    ({"featureGates": {"NoSuchGate": True}}, "failed complete: unrecognized feature gate: NoSuchGate"),
    ({"winkernel.networkName": ""}, "Environment variable KUBE_NETWORK and network-flag not initialized"),
    ({"featureGates": {"WinDSR": True, "WinOverlay": False}}, 'err="WinOverlay feature gate not enabled"'),
    ({"featureGates": {"WinDSR": False}}, 'err="WinDSR feature gate not enabled"'),
    ({"winkernel.sourceVip": ""}, 'err="source-vip flag not set"'),
]  # fmt: skip


@pytest.mark.parametrize(("change", "text"), FAILURES)
async def test_kube_proxy_exits_with_the_real_message_and_is_restarted(
    keyed: WindowsHost, change: dict[str, Any] | None, text: str
) -> None:
    host = keyed
    _, vip = overlay_with_vip(host)
    config = None if change is None else json.dumps(proxy_config(vip, **change)).encode()
    conn = await install_kube_proxy(host, config)
    # It fails, is restarted by the recovery action, and fails again with the same words.
    await wait_for(lambda: logged(host, text) >= 2)
    assert any(text in line for line in host.machine.service_log("kube-proxy"))
    log_file = host.machine.disk.read_file(PROXY_LOG) or b""
    assert text.encode() in log_file
    assert "exited with 1: " in "\n".join(host.log)
    conn.close()


async def test_kube_proxy_without_containers(
    host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    host.test_key = client_key  # type: ignore[attr-defined]
    conn = await install_kube_proxy(host, json.dumps(proxy_config("10.132.0.2")).encode())
    await wait_for(lambda: logged(host, "Windows kernel is not compatible for Kernel mode") >= 1)
    conn.close()


async def test_kube_proxy_runs_until_its_config_changes(keyed: WindowsHost) -> None:
    host = keyed
    _, vip = overlay_with_vip(host)
    config = json.dumps(proxy_config(vip), separators=(",", ":")).encode()
    conn = await install_kube_proxy(host, config)
    svc = host.machine.scm.require("kube-proxy")
    process = svc.process
    assert isinstance(process, kubeproxy.SimulatedKubeProxy)
    await wait_for(lambda: process.syncs >= 3)
    assert svc.state is State.RUNNING and process.running
    assert logged(host, "command failed") == 0
    query = await conn.run("sc.exe query 'kube-proxy'; exit $LASTEXITCODE", check=False)
    assert "4  RUNNING" in str(query.stdout)
    rewritten = await conn.run(
        "Set-Content -LiteralPath 'C:\\k\\kube-proxy.conf' -Value 'x' -NoNewline", check=False
    )
    assert rewritten.exit_status == 0  # the config file is not held
    text = "content of the proxy server's configuration file was updated"
    await wait_for(lambda: logged(host, text) >= 1)
    conn.close()


async def install_hybrid_overlay(host: WindowsHost, conn: asyncssh.SSHClientConnection) -> None:
    host.machine.program_factories["hybrid-overlay-node"] = hybridoverlay.factory_with(
        base_delay=0.05, retry_interval=0.05
    )
    host.machine.disk.mkdir("C:\\k")
    host.machine.disk.write_file("C:\\k\\hybrid-overlay-node.exe", b"MZ")
    bin_path = (
        "C:\\k\\hybrid-overlay-node.exe --node win-node --bootstrap-kubeconfig=C:\\k\\kubeconfig "
        "--cert-dir=C:\\k\\cni\\config --cert-duration=24h --windows-service "
        f"--logfile {HO_LOG} --k8s-apiserver=https://127.0.0.1:6443 "
        "--k8s-cacert C:\\k\\bootstrap-ca.crt"
    )
    for command in (
        f"sc.exe create 'hybrid-overlay-node' binPath= '{bin_path}' start= auto",
        "sc.exe start 'hybrid-overlay-node'",
    ):
        result = await conn.run(command + "; exit $LASTEXITCODE", check=False)
        assert result.exit_status == 0, result.stdout


async def test_hybrid_overlay_needs_containers(
    host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    conn = await connect(host, client_key)
    await install_hybrid_overlay(host, conn)
    text = "this version of Windows does not support HostRoute policies;"
    await wait_for(
        lambda: any(text in line for line in host.machine.service_log("hybrid-overlay-node"))
    )
    assert text.encode() in (host.machine.disk.read_file(HO_LOG) or b"")
    assert host.machine.scm.require("hybrid-overlay-node").state is State.STOPPED
    assert host.machine.hns.networks == {}
    conn.close()


async def test_hybrid_overlay_creates_the_base_network_once(
    containers_host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    host = containers_host
    conn = await connect(host, client_key)
    await install_hybrid_overlay(host, conn)
    hns = host.machine.hns
    await wait_for(lambda: hns.network_named(hybridoverlay.BASE_NETWORK) is not None)
    base = hns.network_named(hybridoverlay.BASE_NETWORK)
    assert base is not None and base.persistent and base.type == "Overlay"
    assert (base.subnets[0].address_prefix, base.subnets[0].gateway_address) == (
        "100.64.0.0/30",
        "100.64.0.2",
    )
    assert base.subnets[0].vsid == 4098 and base.management_ip == host.address
    # Creating the first overlay network bound the virtual switch: the connection is gone.
    assert await run_dropped(conn, "hostname")
    lines = host.machine.service_log("hybrid-overlay-node")
    assert any(
        "Creating the base overlay network 'BaseOVNKubernetesHybridOverlayNetwork' (VXLAN port = 4789)."
        in line for line in lines
    )  # fmt: skip
    blips = hns.blips
    await host.reboot()
    # After the reboot it runs again (and waits for credentials) but the base network survived.
    process = host.machine.scm.require("hybrid-overlay-node").process
    assert process is not None
    await wait_for(
        lambda: any(
            "failed to create a client" in line
            for line in host.machine.service_log("hybrid-overlay-node")
        )
    )
    assert hns.blips == blips and hns.network_named(hybridoverlay.BASE_NETWORK) is base
    again = await connect(host, client_key)
    assert (await again.run("hostname", check=False)).exit_status == 0
    again.close()
