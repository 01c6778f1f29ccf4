"""A simulated host joins the real cluster driven by a script that only uses SSH and the API server.

No operator code is involved: the script sends literal PowerShell/sc.exe text (the forms of
docs/windows-surface.md), copies files over SFTP, mints a bootstrap token and approves the
kubelet's CSRs as cluster admin. This proves the simulated host and its kubelet on their own,
so the operator's tests cannot pass merely because the two agree with each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets

import asyncssh
import pytest
from lightkube import AsyncClient
from lightkube.models.certificates_v1 import (
    CertificateSigningRequestCondition,
    CertificateSigningRequestStatus,
)
from lightkube.resources.certificates_v1 import (
    CertificateSigningRequest,
    CertificateSigningRequestApproval,
)
from lightkube.resources.core_v1 import Node, Secret

from kube_helpers import bootstrap_token_secret, eventually
from wmco_sandbox.controlplane import ControlPlane, free_port
from wmco_sandbox.winhost import kubelet as sim_kubelet
from wmco_sandbox.winhost.host import WindowsHost, allocate_address

pytestmark = pytest.mark.integration

ADMIN_KEYS = "C:\\ProgramData\\ssh\\administrators_authorized_keys"


def user_data(public_key: str) -> str:
    return (
        "<powershell>\n"
        "Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0'\n"
        "New-ItemProperty -Path 'HKLM:\\SOFTWARE\\OpenSSH' -Name 'DefaultShell' -Value "
        "'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe' -PropertyType String -Force\n"
        "New-NetFirewallRule -DisplayName 'ContainerLogsPort' -Direction Inbound -Action Allow "
        "-Protocol TCP -LocalPort 10250 -EdgeTraversalPolicy Allow\n"
        "Set-Service -Name 'sshd' -StartupType 'Automatic'\n"
        "Start-Service -Name 'sshd'\n"
        f"Set-Content -LiteralPath '{ADMIN_KEYS}' -Value '{public_key}' -Encoding ascii\n"
        f"icacls.exe '{ADMIN_KEYS}' /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'\n"
        "Restart-Service -Name 'sshd'\n"
        "</powershell>\n"
    )


async def run(conn: asyncssh.SSHClientConnection, command: str) -> str:
    result = await conn.run(command, check=False)
    assert result.exit_status == 0, f"{command!r}: {result.stderr!r}"
    return str(result.stdout)


async def approve_pending(kube: AsyncClient, node: str) -> int:
    """Approve, as admin, every pending CSR that names ``system:node:<node>``."""
    approved = 0
    async for csr in kube.list(CertificateSigningRequest):
        conditions = (csr.status.conditions if csr.status else None) or []
        if conditions or csr.metadata is None or csr.metadata.name is None:
            continue
        if csr.spec.username not in (f"system:node:{node}",) and not csr.spec.username.startswith(
            "system:bootstrap:"
        ):
            continue
        csr.status = CertificateSigningRequestStatus(
            conditions=[
                CertificateSigningRequestCondition(
                    type="Approved",
                    status="True",
                    reason="TestScript",
                    message="approved by the script",
                )
            ]
        )
        await kube.replace(
            CertificateSigningRequestApproval.from_dict(csr.to_dict()), csr.metadata.name
        )
        approved += 1
    return approved


async def test_a_script_gets_a_host_to_a_ready_node(
    control_plane: ControlPlane, kube: AsyncClient
) -> None:
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    public = client_key.export_public_key("openssh").decode().strip()
    host = WindowsHost(
        address=allocate_address(),
        port=free_port(),
        kubelet_factory=sim_kubelet.factory_with(lease_renew_interval=1.0, status_interval=1.0),
    )
    await host.boot(user_data(public))
    token_id, token_secret = secrets.token_hex(3), secrets.token_hex(8)
    await kube.create(bootstrap_token_secret(token_id, token_secret, "system:bootstrappers:script"))
    try:
        async with asyncssh.connect(
            host.address,
            host.port,
            username="Administrator",
            client_keys=[client_key],
            known_hosts=([host.host_public_key], [], []),
            agent_path=None,
            config=None,
        ) as conn:
            node = (await run(conn, "hostname")).strip().lower()
            for directory in (
                "C:\\k",
                "C:\\k\\containerd",
                "C:\\var\\lib\\kubelet\\pki",
                "C:\\var\\log\\kubelet",
            ):
                await run(
                    conn, f"New-Item -ItemType Directory -Force -Path '{directory}' | Out-Null"
                )
            kubeconfig = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {
                            "server": control_plane.server,
                            "certificate-authority": "C:\\k\\ca.crt",
                        },
                    }
                ],
                "users": [{"name": "kubelet", "user": {"token": f"{token_id}.{token_secret}"}}],
                "contexts": [
                    {"name": "kubelet", "context": {"cluster": "local", "user": "kubelet"}}
                ],
                "current-context": "kubelet",
            }
            config = {
                "kind": "KubeletConfiguration",
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "rotateCertificates": True,
                "serverTLSBootstrap": True,
                "containerRuntimeEndpoint": "npipe://./pipe/containerd-containerd",
                "registerWithTaints": [{"key": "os", "value": "Windows", "effect": "NoSchedule"}],
                "authentication": {"x509": {"clientCAFile": "C:\\k\\ca.crt"}},
            }
            async with conn.start_sftp_client() as sftp:
                for path, data in {
                    "/C:/k/ca.crt": control_plane.ca_pem,
                    "/C:/k/bootstrap-kubeconfig": json.dumps(kubeconfig).encode(),
                    "/C:/k/kubelet.conf": json.dumps(config).encode(),
                    "/C:/k/kubelet.exe": b"MZ kubelet",
                    "/C:/k/containerd/containerd.exe": b"MZ containerd",
                }.items():
                    async with sftp.open(path, "wb") as handle:
                        await handle.write(data)
            digest = (
                await run(
                    conn, "(Get-FileHash -LiteralPath 'C:\\k\\kubelet.exe' -Algorithm SHA256).Hash"
                )
            ).strip()
            assert digest == hashlib.sha256(b"MZ kubelet").hexdigest().upper()
            await run(
                conn,
                "sc.exe create 'containerd' binPath= 'C:\\k\\containerd\\containerd.exe --run-service' start= auto; exit $LASTEXITCODE",
            )
            kubelet_cmd = (
                "C:\\k\\kubelet.exe --config=C:\\k\\kubelet.conf --bootstrap-kubeconfig=C:\\k\\bootstrap-kubeconfig "
                "--kubeconfig=C:\\k\\kubeconfig --cert-dir=C:\\var\\lib\\kubelet\\pki --windows-service "
                f"--node-ip={host.address}"
            )
            await run(
                conn,
                f"sc.exe create 'kubelet' binPath= '{kubelet_cmd}' start= auto depend= 'containerd'; exit $LASTEXITCODE",
            )
            # Starting the kubelet starts containerd first (its dependency).
            await run(conn, "sc.exe start 'kubelet'; exit $LASTEXITCODE")
            assert "4  RUNNING" in await run(conn, "sc.exe query 'containerd'; exit $LASTEXITCODE")

        async def ready() -> bool:
            await approve_pending(kube, node)
            try:
                got = await kube.get(Node, node)
            except Exception:
                return False
            return any(
                c.type == "Ready" and c.status == "True"
                for c in (got.status.conditions if got.status else None) or []
            )

        await eventually(ready, f"node {node} to register and become Ready", 90)
        got = await kube.get(Node, node)
        labels = (got.metadata.labels if got.metadata else None) or {}
        assert labels["kubernetes.io/os"] == "windows"
        assert labels["node.kubernetes.io/windows-build"] == host.facts.windows_build
        assert any(
            t.key == "os" and t.effect == "NoSchedule"
            for t in (got.spec.taints if got.spec else None) or []
        )
    finally:
        await host.stop()
        await kube.delete(Secret, f"bootstrap-token-{token_id}", namespace="kube-system")
        with contextlib.suppress(Exception):
            await kube.delete(Node, host.facts.hostname)
