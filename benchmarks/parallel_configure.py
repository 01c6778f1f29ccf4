"""Benchmark: configuring N listed hosts at once versus one at a time.

The reference operator configures Windows instances one after another; wmco configures up to
``concurrency`` hosts in parallel. This script starts the real control plane, boots N simulated
hosts with a per-command latency (to stand in for a real network and a real Windows host, whose
commands take tens to hundreds of milliseconds), lists them all in ``windows-instances`` at once and
measures the wall time until every host is a configured, Ready node: once with concurrency 1 and
once with the default 10. It reports both times, their ratio, and the simulated critical path of
one host (the time one host alone takes).

Run: ``.venv/bin/python benchmarks/parallel_configure.py --hosts 10 --latency 0.05``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import RoleRef, Subject
from lightkube.resources.core_v1 import ConfigMap, Namespace, Node, Secret
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding

from wmco import names
from wmco import operator as operator_mod
from wmco.payload import manifest as payload_manifest
from wmco.settings import NetworkProfile, Settings
from wmco_sandbox.controlplane import ControlPlane, free_port
from wmco_sandbox.netsim import ovn
from wmco_sandbox.winhost import kubelet as sim_kubelet
from wmco_sandbox.winhost.host import WindowsHost, allocate_address


async def run_once(
    kube: AsyncClient, workdir: Path, hosts: int, latency: float, concurrency: int, tag: str
) -> float:
    """Configure ``hosts`` hosts with ``concurrency``; return seconds until all are Ready."""
    operator_ns, mapi_ns, bootstrap_ns = f"bench-{tag}", f"bench-mapi-{tag}", f"bench-boot-{tag}"
    for ns in (operator_ns, mapi_ns, bootstrap_ns):
        await kube.create(Namespace(metadata=ObjectMeta(name=ns)))
    # The per-host bootstrap accounts may bootstrap kubelets (what deploy/ binds once).
    await kube.create(
        ClusterRoleBinding(
            metadata=ObjectMeta(name=f"bench-node-bootstrapper-{tag}"),
            roleRef=RoleRef(
                apiGroup="rbac.authorization.k8s.io",
                kind="ClusterRole",
                name=names.NODE_BOOTSTRAPPER_CLUSTER_ROLE,
            ),
            subjects=[
                Subject(
                    apiGroup="rbac.authorization.k8s.io",
                    kind="Group",
                    name=names.service_accounts_group(bootstrap_ns),
                )
            ],
        )
    )
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    await kube.create(
        Secret(
            metadata=ObjectMeta(name=names.PRIVATE_KEY_SECRET, namespace=operator_ns),
            data={names.PRIVATE_KEY_SECRET_KEY: base64.b64encode(key).decode()},
        )
    )
    port = free_port()
    settings = Settings(
        namespace=operator_ns,
        machine_api_namespace=mapi_ns,
        bootstrap_namespace=bootstrap_ns,
        ssh_port=port,
        ssh_retry_interval=0.3,
        concurrency=concurrency,
        leader_election=False,
        service_cidr="10.0.0.0/24",
        probe_bind_address="127.0.0.1:0",
        network_profile=NetworkProfile.OVN_HYBRID,
    )
    payload = payload_manifest.generate_test_payload(workdir / f"payload-{tag}", version=tag)
    manager = operator_mod.build_manager(kube, settings, payload, machine_api=False, port=0)
    allocator = ovn.HybridOverlaySubnetAllocator(kube, resync=1.0)
    await allocator.__aenter__()
    task = asyncio.create_task(manager.run())
    fleet: list[WindowsHost] = []
    try:
        script = ""
        while not script:
            with contextlib.suppress(Exception):
                secret = await kube.get(Secret, names.USER_DATA_SECRET, namespace=mapi_ns)
                script = base64.b64decode((secret.data or {})[names.USER_DATA_SECRET_KEY]).decode()
            await asyncio.sleep(0.2)
        for _ in range(hosts):
            host = WindowsHost(
                address=allocate_address(),
                port=port,
                kubelet_factory=sim_kubelet.factory_with(
                    lease_renew_interval=2.0, status_interval=2.0
                ),
            )
            host.faults.command_latency = latency
            fleet.append(host)
        await asyncio.gather(*(h.boot(script) for h in fleet))
        started = time.monotonic()
        await kube.create(
            ConfigMap(
                metadata=ObjectMeta(name=names.INSTANCES_CONFIGMAP, namespace=operator_ns),
                data={h.address: "username=Administrator" for h in fleet},
            )
        )
        wanted = {h.facts.hostname for h in fleet}
        while True:
            configured = set()
            async for node in kube.list(Node, labels={names.OS_LABEL: "windows"}):
                annotations = (node.metadata.annotations if node.metadata else None) or {}
                if node.metadata and names.VERSION_ANNOTATION in annotations:
                    configured.add(node.metadata.name)
            if wanted <= configured:
                return time.monotonic() - started
            if task.done():
                task.result()
            await asyncio.sleep(0.2)
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await allocator.__aexit__(None, None, None)
        await asyncio.gather(*(h.stop() for h in fleet), return_exceptions=True)
        for h in fleet:
            with contextlib.suppress(Exception):
                await kube.delete(Node, h.facts.hostname)


async def main(hosts: int, latency: float) -> None:
    """Run the three measurements and print the report."""
    with tempfile.TemporaryDirectory() as tmp, ControlPlane(state_dir=Path(tmp) / "cp") as plane:
        kube = AsyncClient(config=KubeConfig.from_file(plane.kubeconfig))
        try:
            one = await run_once(kube, Path(tmp), 1, latency, 1, "single")
            serial = await run_once(kube, Path(tmp), hosts, latency, 1, "serial")
            parallel = await run_once(kube, Path(tmp), hosts, latency, 10, "parallel")
        finally:
            await kube.close()
    print(f"hosts={hosts} command latency={latency * 1000:.0f} ms")
    print(f"one host alone (critical path): {one:6.1f} s")
    print(
        f"{hosts} hosts, concurrency 1:      {serial:6.1f} s  ({serial / one:4.1f}x critical path)"
    )
    print(
        f"{hosts} hosts, concurrency 10:     {parallel:6.1f} s  ({parallel / one:4.1f}x critical path)"
    )
    print(f"speed-up from parallel configuration: {serial / parallel:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument(
        "--latency", type=float, default=0.05, help="seconds added to every command"
    )
    args = parser.parse_args()
    asyncio.run(main(args.hosts, args.latency))
