"""The simulated kubelet's HTTPS API (port 10250) against the real control plane.

Covers: no listener while the firewall blocks 10250; handshakes fail until the serving
certificate is issued through the serving CSR; a client without a certificate or with one from
a CA not in ``clientCAFile`` gets 401 ``Unauthorized``; a trusted client the SubjectAccessReview
(created as the node) denies gets 403 with the kubelet's text; ``kubectl logs`` through the API
server returns the pod's log, and stops working (the API server relays the 401) once
``clientCAFile`` holds another CA, without a restart; a port already taken is the kubelet's
fatal error.

The node is named after its address (``--hostname-override=<ip>``) so that the API server,
which prefers the ``Hostname`` address, dials the simulated host's own loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from pathlib import Path

import pytest
from lightkube import ApiError, AsyncClient
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import RoleRef, Subject
from lightkube.resources.core_v1 import Node, Pod
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding

import kubelet_helpers
from kubelet_helpers import (
    KUBELET_CA,
    SERVING_SIGNER,
    Started,
    approve,
    bootstrapped,
    eventually,
    find_csr,
    kubelet_client_ca,
    make_host,
)
from wmco_sandbox import pki
from wmco_sandbox.controlplane import ControlPlane, ControlPlaneError
from wmco_sandbox.winhost import kubelet
from wmco_sandbox.winhost.core.machine import FirewallRule
from wmco_sandbox.winhost.host import allocate_address

pytestmark = pytest.mark.integration

PORT = 10250


async def https_get(
    address: str, path: str, cert: tuple[Path, Path] | None = None
) -> tuple[int, str]:
    """One HTTPS GET to the kubelet (server certificate not verified: the test is the client)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    reader, writer = await asyncio.open_connection(address, PORT, ssl=context)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode()


@pytest.fixture
async def apiserver_may_proxy(kube: AsyncClient) -> None:
    """What kubeadm does: the API server's kubelet client may use the kubelet API."""
    binding = ClusterRoleBinding(
        metadata=ObjectMeta(name="wmco-tests:kube-apiserver-kubelet-api-admin"),
        roleRef=RoleRef(
            apiGroup="rbac.authorization.k8s.io",
            kind="ClusterRole",
            name="system:kubelet-api-admin",
        ),
        subjects=[
            Subject(
                apiGroup="rbac.authorization.k8s.io",
                kind="User",
                name="kube-apiserver-kubelet-client",
            )
        ],
    )
    with contextlib.suppress(ApiError):
        await kube.create(binding)


async def serving_node(
    kube: AsyncClient, plane: ControlPlane, token: str, cleanup: list[kubelet.SimulatedKubelet]
) -> Started:
    address = allocate_address()
    host = await make_host(plane, token, address=address, serverTLSBootstrap=True)
    host.machine.firewall.append(
        FirewallRule("ContainerLogsPort", "ContainerLogsPort", local_port="10250")
    )
    return await bootstrapped(kube, host, cleanup, "--hostname-override", address)


async def test_kubelet_api_authenticates_authorizes_and_serves_logs(
    kube: AsyncClient,
    control_plane: ControlPlane,
    token: str,
    namespace: str,
    cleanup: list[kubelet.SimulatedKubelet],
    apiserver_may_proxy: None,
    tmp_path: Path,
) -> None:
    started = await serving_node(kube, control_plane, token, cleanup)
    host, address, server = started.host, started.host.facts.address, started.kubelet.server
    assert server is not None
    await eventually(lambda: _true(server.listening), "the kubelet to listen on 10250")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await https_get(address, "/containerLogs/x/y/z")  # no serving certificate yet

    csr = await find_csr(kube, SERVING_SIGNER, started.node_name)
    assert csr.metadata is not None and csr.metadata.name
    await approve(kube, csr.metadata.name)
    await asyncio.wait_for(started.kubelet.serving_certificate_ready.wait(), 30)

    await kubelet_helpers.default_service_account(kube, namespace)
    await kube.create(
        Pod(
            metadata=ObjectMeta(name="greeter", namespace=namespace),
            spec=PodSpec(
                nodeName=started.node_name,
                containers=[
                    Container(
                        name="main",
                        image="mcr.microsoft.com/windows/nanoserver:ltsc2022",
                        command=[
                            "cmd",
                            "/c",
                            "echo hello from the windows node & ping -t localhost",
                        ],
                    )
                ],
            ),
        )
    )

    async def running() -> bool:
        pod = await kube.get(Pod, "greeter", namespace=namespace)
        return bool(pod.status and pod.status.phase == "Running")

    await eventually(running, "the pod to run")
    logs = await asyncio.to_thread(control_plane.kubectl, "logs", "-n", namespace, "greeter")
    assert "hello from the windows node" in logs.splitlines()

    # (kubectl runs in a thread: the simulated kubelet answers on this test's event loop.)
    # Straight to the kubelet: no certificate, an untrusted one, a trusted one denied.
    path = f"/containerLogs/{namespace}/greeter/main"
    assert await https_get(address, path) == (401, "Unauthorized")
    other_ca = pki.CertificateAuthority("not-the-kubelet-client-ca")
    someone = other_ca.issue("someone", organizations=["testers"], client=True)
    someone_files = someone.write(tmp_path, "someone")
    assert await https_get(address, path, someone_files) == (401, "Unauthorized")
    assert host.logged("x509: certificate signed by unknown authority")
    host.write_file(KUBELET_CA, kubelet_client_ca(control_plane) + other_ca.pair.cert_pem)
    status, body = await https_get(address, path, someone_files)
    assert (status, body) == (
        403,
        "Forbidden (user=someone, verb=get, resource=nodes, subresource(s)=[proxy])",
    )

    # The wrong client CA: the API server's certificate no longer verifies, kubectl is refused.
    host.write_file(KUBELET_CA, other_ca.pair.cert_pem)
    with pytest.raises(ControlPlaneError) as refused:
        await asyncio.to_thread(control_plane.kubectl, "logs", "-n", namespace, "greeter")
    assert "provide credentials" in str(refused.value) or "Unauthorized" in str(refused.value)
    host.write_file(KUBELET_CA, kubelet_client_ca(control_plane))
    assert "hello from the windows node" in await asyncio.to_thread(
        control_plane.kubectl, "logs", "-n", namespace, "greeter"
    )


async def _true(value: bool) -> bool:
    return value


async def test_no_listener_without_the_firewall_rule_and_a_taken_port_is_fatal(
    kube: AsyncClient,
    control_plane: ControlPlane,
    token: str,
    cleanup: list[kubelet.SimulatedKubelet],
) -> None:
    address = allocate_address()
    host = await make_host(control_plane, token, address=address)
    started = await bootstrapped(kube, host, cleanup, "--hostname-override", address)

    async def reported_port() -> bool:
        node = await kube.get(Node, started.node_name)
        endpoints = node.status.daemonEndpoints if node.status else None
        endpoint = endpoints.kubeletEndpoint if endpoints else None
        return endpoint is not None and endpoint.Port == PORT

    await eventually(reported_port, "daemonEndpoints.kubeletEndpoint.Port = 10250")
    server = started.kubelet.server
    assert server is not None and not server.listening
    with pytest.raises(OSError):
        await asyncio.open_connection(address, PORT)

    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind((address, PORT))
    blocker.listen()
    try:
        host.machine.firewall.append(
            FirewallRule("ContainerLogsPort", "ContainerLogsPort", local_port="10250")
        )
        await eventually(lambda: _true(bool(host.exits)), "the kubelet to exit")
    finally:
        blocker.close()
    code, reason = host.exits[0]
    assert code == 1
    assert reason == (
        "Failed to listen and serve: listen tcp 0.0.0.0:10250: bind: Only one usage of each "
        "socket address (protocol/network address/port) is normally permitted."
    )
    assert started.kubelet.phase is kubelet.KubeletPhase.EXITED
