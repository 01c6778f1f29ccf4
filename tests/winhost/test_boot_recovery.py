"""What a host does by itself when it boots: the SCM's automatic start and kube-proxy's recovery.

At boot the SCM starts every automatic service, each after its dependencies (whatever the order
they were created in), programs wrapped in ``kube-log-runner.exe`` with their log in its
``-log-file``; a dependency that fails to start (its binary gone, or its process ending at once)
fails its dependents with 1068 and system event 7001's words, and nothing retries them.

kube-proxy (winkernel) after a reboot: its non-persistent HNS network is gone, so it waits,
logging ``Unable to find HNS Network specified`` every poll without exiting; once the network is
back it creates the missing sourceVip endpoint itself with the configured address, and does so
again whenever the endpoint disappears or the network is re-created under it. A sourceVip HNS
refuses is logged each sync (``Source Vip endpoint creation failed``) and kube-proxy keeps running.
"""

from __future__ import annotations

import json

from winhost_helpers import wait_for

from wmco_sandbox.winhost.agents import kubeproxy
from wmco_sandbox.winhost.core.scm import State
from wmco_sandbox.winhost.host import WindowsHost
from wmco_sandbox.winhost.network.hns import HnsNetwork, HnsSubnet

OVERLAY = "OVNKubernetesHybridOverlayNetwork"
PROXY_LOG = "C:\\var\\log\\kube-proxy\\kube-proxy.log"
PROXY_BIN = (
    f"C:\\k\\kube-log-runner.exe -log-file={PROXY_LOG} C:\\k\\kube-proxy.exe "
    "--config=C:\\k\\kube-proxy.conf --windows-service --v=2"
)
VIP = "10.132.0.2"
NOT_FOUND = (
    '"Unable to find HNS Network specified, please check network name and CNI deployment" '
    f'err="Network name \\"{OVERLAY}\\" not found" hnsNetworkName="{OVERLAY}"'
)


def proxy_config(vip: str) -> bytes:
    return json.dumps(
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": "C:\\k\\kubeconfig"},
            "clusterCIDR": "10.132.0.0/24",
            "featureGates": {"WinDSR": True, "WinOverlay": True},
            "hostnameOverride": "win-node",
            "mode": "kernelspace",
            "winkernel": {"enableDSR": True, "networkName": OVERLAY, "sourceVip": vip},
        }
    ).encode()


def make_overlay(host: WindowsHost, prefix: str = "10.132.0.0/24") -> HnsNetwork:
    """The network hybrid-overlay-node makes (non-persistent, as the real one)."""
    gateway = prefix.rsplit(".", 1)[0] + ".1"
    return host.machine.hns.create_network(
        OVERLAY, "Overlay", [HnsSubnet(prefix, gateway, 4097)],
        management_ip=host.address, persistent=False,
    )  # fmt: skip


async def sc(host: WindowsHost, command: str) -> str:
    result = await host.run(f"sc.exe {command}; exit $LASTEXITCODE", shell="powershell")
    assert result.code == 0, result.stdout
    return result.stdout


def logged(host: WindowsHost, text: str) -> int:
    return sum(text in line for line in host.machine.service_log("kube-proxy"))


async def install_kube_proxy(host: WindowsHost, vip: str = VIP) -> None:
    host.machine.program_factories["kube-proxy"] = kubeproxy.factory_with(
        sync_period=0.02, network_poll=0.02, overlay_settle=0.02
    )
    disk = host.machine.disk
    for directory in ("C:\\k", "C:\\var\\log\\kube-proxy"):
        disk.mkdir(directory)
    for exe in ("kube-log-runner.exe", "kube-proxy.exe"):
        disk.write_file(f"C:\\k\\{exe}", b"MZ")
    disk.write_file("C:\\k\\kube-proxy.conf", proxy_config(vip))
    await sc(host, f"create 'kube-proxy' binPath= '{PROXY_BIN}' start= auto")
    await sc(host, "failure 'kube-proxy' reset= 86400 actions= restart/20")


def proxy(host: WindowsHost) -> kubeproxy.SimulatedKubeProxy:
    process = host.machine.scm.require("kube-proxy").process
    assert isinstance(process, kubeproxy.SimulatedKubeProxy)
    return process


def source_vips(host: WindowsHost, network: HnsNetwork, vip: str = VIP) -> list[str]:
    return [e.id for e in host.machine.hns.endpoints_of(network.id) if e.ip_address == vip]


async def test_kube_proxy_waits_for_its_network_then_creates_the_source_vip(
    containers_host: WindowsHost,
) -> None:
    host = containers_host
    await install_kube_proxy(host)
    await sc(host, "start 'kube-proxy'")
    process = proxy(host)
    # No network: it says so every poll and keeps waiting, as a RUNNING service.
    await wait_for(lambda: process.network_waits >= 3)
    assert logged(host, NOT_FOUND) >= 3
    assert NOT_FOUND.encode() in (host.machine.disk.read_file(PROXY_LOG) or b"")
    assert host.machine.scm.require("kube-proxy").state is State.RUNNING
    assert not process.running and "kube-proxy exited" not in "\n".join(host.log)

    network = make_overlay(host)
    await wait_for(lambda: process.running and source_vips(host, network))
    (endpoint_id,) = source_vips(host, network)
    endpoint = host.machine.hns.endpoint(endpoint_id)
    assert endpoint is not None and endpoint.network_id == network.id
    assert process.source_vip_created == 1
    assert proxy(host) is process  # the same process: it never exited
    assert logged(host, "command failed") == 0


async def test_kube_proxy_recreates_a_vanished_source_vip_and_follows_a_new_network(
    containers_host: WindowsHost,
) -> None:
    host = containers_host
    network = make_overlay(host)
    await install_kube_proxy(host)
    await sc(host, "start 'kube-proxy'")
    process = proxy(host)
    await wait_for(lambda: process.running and source_vips(host, network))

    # The endpoint goes away under a running kube-proxy: the next sync makes it again.
    (first,) = source_vips(host, network)
    host.machine.hns.remove_endpoint(first)
    await wait_for(lambda: source_vips(host, network))
    assert source_vips(host, network) != [first] and process.source_vip_created == 2

    # The network is re-created (new ID): it notices, adopts it and ensures the sourceVip on it.
    host.machine.hns.remove_network(network.id)
    replacement = make_overlay(host)
    await wait_for(lambda: source_vips(host, replacement))
    assert logged(host, "The HNS network is not present or has changed since the last sync") >= 1
    assert proxy(host) is process and process.running


async def test_a_source_vip_hns_refuses_is_logged_each_sync_and_kube_proxy_stays(
    containers_host: WindowsHost,
) -> None:
    host = containers_host
    network = make_overlay(host)
    await install_kube_proxy(host, vip="10.200.0.9")  # outside the network's subnet
    await sc(host, "start 'kube-proxy'")
    process = proxy(host)
    text = (
        '"Source Vip endpoint creation failed" err="hcnCreateEndpoint failed in Win32: An '
        "address provided is invalid or reserved. (0x803b0002)"
    )
    await wait_for(lambda: logged(host, text) >= 3)
    assert process.running and proxy(host) is process
    assert host.machine.scm.require("kube-proxy").state is State.RUNNING
    assert host.machine.hns.endpoints_of(network.id) == []
    assert "service kube-proxy exited" not in "\n".join(host.log)


async def test_kube_proxy_comes_back_by_itself_after_a_reboot(
    containers_host: WindowsHost,
) -> None:
    host = containers_host
    network = make_overlay(host)
    await install_kube_proxy(host)
    await sc(host, "start 'kube-proxy'")
    await wait_for(lambda: proxy(host).running and source_vips(host, network))

    await host.reboot()
    # The non-persistent network and every endpoint are gone; the SCM started kube-proxy again.
    assert host.machine.hns.network_named(OVERLAY) is None and not host.machine.hns.endpoints
    after = proxy(host)
    await wait_for(lambda: after.network_waits >= 1)
    back = make_overlay(host)  # what hybrid-overlay-node does once it is running again
    await wait_for(lambda: after.running and source_vips(host, back))
    assert host.machine.scm.require("kube-proxy").state is State.RUNNING


async def plain_service(host: WindowsHost, name: str, depend: str = "") -> None:
    host.machine.disk.write_file(f"C:\\k\\{name}.exe", b"MZ")
    extra = f" depend= '{depend}'" if depend else ""
    await sc(host, f"create '{name}' binPath= 'C:\\k\\{name}.exe' start= auto{extra}")


async def test_boot_starts_automatic_services_after_their_dependencies(
    containers_host: WindowsHost,
) -> None:
    host = containers_host
    host.machine.disk.mkdir("C:\\k")
    # Created dependents first, so that creation order is not dependency order.
    await install_kube_proxy(host)
    await sc(host, "config 'kube-proxy' depend= 'middle'")
    await plain_service(host, "middle", depend="base")
    host.machine.disk.write_file("C:\\k\\base.exe", b"MZ")
    await sc(host, "create 'base' binPath= 'C:\\k\\base.exe' start= demand")
    await sc(host, "create 'idle' binPath= 'C:\\k\\base.exe' start= demand")
    scm = host.machine.scm

    await host.reboot()
    for name in ("base", "middle", "kube-proxy"):
        assert scm.require(name).state is State.RUNNING, name
    pids = [scm.require(name).pid for name in ("base", "middle", "kube-proxy")]
    assert pids == sorted(pids), "each service started after its dependencies"
    assert scm.require("idle").state is State.STOPPED  # demand and nobody needs it
    assert scm.boot_failures == {}
    # kube-proxy runs as the child of kube-log-runner: its lines land in the -log-file (it waits
    # for the overlay network, which the reboot took away).
    process = proxy(host)
    await wait_for(lambda: process.network_waits >= 1)
    log_file = host.machine.disk.read_file(PROXY_LOG) or b""
    assert b'"Using Kernelspace Proxier."' in log_file and NOT_FOUND.encode() in log_file
    query = await sc(host, "query 'kube-proxy'")
    assert "4  RUNNING" in query


async def test_a_dependency_that_fails_at_boot_fails_its_dependents_with_1068(
    containers_host: WindowsHost,
) -> None:
    host = containers_host
    host.machine.disk.mkdir("C:\\k")
    await plain_service(host, "base")
    await plain_service(host, "middle", depend="base")
    await plain_service(host, "top", depend="middle")
    # A second chain: the dependency's process ends while it starts (a bad flag: kube-proxy).
    await install_kube_proxy(host)
    await sc(host, f"config 'kube-proxy' binPath= '{PROXY_BIN} --no-such-flag'")
    await plain_service(host, "needs-proxy", depend="kube-proxy")
    host.machine.disk.remove("C:\\k\\base.exe")
    scm = host.machine.scm

    await host.reboot()
    for name in ("base", "middle", "top", "kube-proxy", "needs-proxy"):
        assert scm.require(name).state is State.STOPPED, name
    assert scm.boot_failures == {
        "base": 2,
        "middle": 1068,
        "top": 1068,
        "kube-proxy": 1067,
        "needs-proxy": 1068,
    }
    log = "\n".join(host.log)
    assert (
        "The middle service depends on the base service which failed to start because of the "
        "following error: The system cannot find the file specified."
    ) in log
    assert (
        "The needs-proxy service depends on the kube-proxy service which failed to start because "
        "of the following error: The process terminated unexpectedly."
    ) in log
    started = await host.run("sc.exe start 'top'; exit $LASTEXITCODE", shell="powershell")
    assert started.code == 1068
    assert "The dependency service or group failed to start." in started.stdout
