"""deploy/ as users get it: each overlay builds, and the operator installed from it configures a host.

``kubectl kustomize`` (the control plane's kubectl, which embeds kustomize) builds both overlays;
the Deployment is checked for what the issue asks of it (non-root, read-only root filesystem, no
privilege escalation, no capabilities, seccomp RuntimeDefault, requests and limits, probes on the
port ``wmco run`` serves, leader election) and the metrics Service for pointing at that port.

Then the ``kubernetes`` overlay is applied with server-side apply to the real control plane,
Deployment included (its pod is admitted under the namespace's ``restricted`` Pod Security level;
no kubelet here runs Linux pods, so it stays Pending). The operator runs in-process with a token
of the ServiceAccount the manifests made -- never admin -- and with the Deployment's
environment, next to a second replica that must wait for the Lease. A listed simulated host
becomes a configured, Ready node through the whole path (user data in the operator's namespace,
per-host bootstrap ServiceAccount, CSR approved by the operator, kubelet client CA from
kube-system, the hostprocess profile with the sandbox's HostProcess CNI DaemonSet stand-in), and
the second replica takes over when the first stops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import ConfigMap, Event, Node, Pod, Secret, ServiceAccount

from kube_helpers import eventually
from wmco import kube as kapi
from wmco import names
from wmco import operator as operator_mod
from wmco.payload import manifest as payload_manifest
from wmco.runtime import manager as manager_mod
from wmco.settings import NetworkProfile, Settings
from wmco_sandbox import controlplane as cp
from wmco_sandbox import deploy
from wmco_sandbox.controlplane import ControlPlane, free_port
from wmco_sandbox.netsim import hostprocess
from wmco_sandbox.winhost import kubelet as sim_kubelet
from wmco_sandbox.winhost.host import WindowsHost, allocate_address

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROBE_PORT = 8081


def pod_spec(manifests: list[deploy.Manifest]) -> dict[str, Any]:
    return dict(
        deploy.find(manifests, "Deployment", deploy.OPERATOR_DEPLOYMENT)["spec"]["template"]["spec"]
    )


@pytest.mark.parametrize("overlay", deploy.OVERLAYS)
def test_each_overlay_builds_a_locked_down_deployment(overlay: str) -> None:
    manifests = deploy.build(overlay)
    kinds = {m["kind"] for m in manifests}
    assert {"Namespace", "ServiceAccount", "ClusterRole", "Role", "Deployment", "Service"} <= kinds
    assert "CustomResourceDefinition" not in kinds
    spec = pod_spec(manifests)
    assert spec["serviceAccountName"] == deploy.OPERATOR_SERVICE_ACCOUNT
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    # OpenShift's SCCs assign the user id; elsewhere the image's own non-root id is asked for.
    if overlay == deploy.OPENSHIFT:
        assert "runAsUser" not in pod_security
    else:
        assert pod_security["runAsUser"] == 65532
    container = deploy.operator_container(manifests)
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(
        resources["limits"]
    )
    assert "command" not in container and "args" not in container, "the image's entry point runs"
    env = deploy.operator_env(manifests)
    assert env["WMCO_LEADER_ELECTION"] == "true"
    assert env["WMCO_PROBE_BIND_ADDRESS"] == f"0.0.0.0:{PROBE_PORT}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": PROBE_PORT}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = deploy.find(manifests, "Service", "windows-machine-config-operator-metrics")
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == "http" and port["name"] == "metrics"
    labels = deploy.find(manifests, "Deployment", deploy.OPERATOR_DEPLOYMENT)["spec"]["template"][
        "metadata"
    ]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    # The settings the overlay gives are ones `wmco run` accepts.
    Settings.from_env({**env, "WMCO_NAMESPACE": deploy.operator_namespace(manifests)})


def test_the_overlays_differ_where_the_clusters_do() -> None:
    openshift = deploy.build(deploy.OPENSHIFT)
    kubernetes = deploy.build(deploy.KUBERNETES)

    def role_namespaces(manifests: list[deploy.Manifest]) -> set[str]:
        return {m["metadata"]["namespace"] for m in manifests if m["kind"] == "Role"}

    assert role_namespaces(openshift) - role_namespaces(kubernetes) == {
        names.MACHINE_API_NAMESPACE,
        names.OPENSHIFT_KUBE_APISERVER_OPERATOR_NAMESPACE,
    }
    assert role_namespaces(kubernetes) - role_namespaces(openshift) == {names.KUBE_SYSTEM_NAMESPACE}
    assert (
        deploy.operator_env(openshift)["WMCO_MACHINE_API_NAMESPACE"] == names.MACHINE_API_NAMESPACE
    )
    assert deploy.operator_env(kubernetes)["WMCO_MACHINE_API_NAMESPACE"] == names.OPERATOR_NAMESPACE
    assert deploy.operator_env(kubernetes)["WMCO_NETWORK_PROFILE"] == "hostprocess"
    assert "WMCO_NETWORK_PROFILE" not in deploy.operator_env(
        openshift
    )  # auto: read from the cluster


def test_the_machine_api_component_adds_the_machine_api_to_plain_kubernetes() -> None:
    manifests = deploy.build(deploy.KUBERNETES, components=(deploy.MACHINE_API_COMPONENT,))
    roles = {
        (m["metadata"]["namespace"], m["metadata"]["name"])
        for m in manifests
        if m["kind"] == "Role"
    }
    assert (names.MACHINE_API_NAMESPACE, "windows-machine-config-operator") in roles
    env = deploy.operator_env(manifests)
    assert env["WMCO_MACHINE_API_NAMESPACE"] == names.MACHINE_API_NAMESPACE
    assert env["WMCO_NETWORK_PROFILE"] == "hostprocess"


# --- Installed from the manifests, the operator configures a host ---------------------------------


@dataclasses.dataclass
class Install:
    kube: AsyncClient
    plane: ControlPlane
    manifests: list[deploy.Manifest]
    operator: kapi.Client
    settings: Settings
    payload: payload_manifest.Manifest


@pytest.fixture
async def install(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path: Path
) -> AsyncIterator[Install]:
    manifests = deploy.build(deploy.KUBERNETES)
    await asyncio.to_thread(deploy.apply, control_plane.kubeconfig, manifests)
    namespace = deploy.operator_namespace(manifests)
    key_pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    await kube.create(
        Secret(
            metadata=ObjectMeta(name=names.PRIVATE_KEY_SECRET, namespace=namespace),
            data={names.PRIVATE_KEY_SECRET_KEY: base64.b64encode(key_pem).decode()},
        )
    )
    kubeconfig = deploy.token_kubeconfig(
        control_plane, namespace, tmp_path / "operator.kubeconfig", duration="1h"
    )
    operator = kapi.make_client(kubeconfig, namespace=namespace)
    settings = Settings.from_env(
        {
            **deploy.operator_env(manifests),
            "WMCO_NAMESPACE": namespace,
            "WMCO_SSH_PORT": str(free_port()),
            "WMCO_PAYLOAD_DIR": str(tmp_path / "payload"),
            "WMCO_PROBE_BIND_ADDRESS": "127.0.0.1:0",
            "WMCO_SERVICE_CIDR": cp.SERVICE_CIDR,
            "WMCO_SSH_CONNECT_TIMEOUT": "5",
            "WMCO_SSH_RETRY_INTERVAL": "0.3",
            "WMCO_SSH_BOOT_DEADLINE": "30",
            "WMCO_NODE_READY_TIMEOUT": "90",
            "WMCO_RETRY_MAX": "5",
        }
    )
    payload = payload_manifest.generate_test_payload(tmp_path / "payload", version="deploy")
    try:
        yield Install(kube, control_plane, manifests, operator, settings, payload)
    finally:
        await operator.close()
        await asyncio.to_thread(deploy.delete, control_plane.kubeconfig, manifests)


async def start(install: Install) -> tuple[manager_mod.Manager, asyncio.Task[None]]:
    """One replica, as `wmco run` assembles it, with the ServiceAccount's client."""
    machine_api = await operator_mod.machine_api_served(
        install.operator, install.settings.machine_api_namespace
    )
    assert machine_api is False, "the kubernetes overlay grants no Machine API access"
    manager = operator_mod.build_manager(
        install.operator, install.settings, install.payload, machine_api=machine_api, port=0
    )
    return manager, asyncio.create_task(manager.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=30)
    assert done, "a cancelled replica must stop"
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


async def test_the_deployment_is_admitted_as_restricted(install: Install) -> None:
    namespace = deploy.operator_namespace(install.manifests)

    async def pod_made() -> bool:
        pods = [p async for p in install.kube.list(Pod, namespace=namespace)]
        return bool(pods)

    async def refusals() -> list[str]:
        return [
            e.message or ""
            async for e in install.kube.list(Event, namespace=namespace)
            if e.reason == "FailedCreate"
        ]

    try:
        await eventually(pod_made, "the ReplicaSet to create the operator's pod", 60)
    except BaseException:
        print(await refusals())
        raise
    assert await refusals() == []


async def test_installed_operator_configures_a_host_and_a_second_replica_waits(
    install: Install,
) -> None:
    assert install.settings.network_profile is NetworkProfile.HOSTPROCESS
    assert install.settings.leader_election
    kube = install.kube
    # The cluster's CNI: a HostProcess DaemonSet (the sandbox's flannel stand-in).
    await asyncio.to_thread(
        deploy.apply, install.plane.kubeconfig, [hostprocess.namespace(), hostprocess.daemonset()]
    )
    first, first_task = await start(install)
    second, second_task = await start(install)
    host: WindowsHost | None = None
    try:
        # The first replica leads; the second has read the Lease, sees that holder and waits.
        assert first.elector is not None and second.elector is not None
        await eventually(lambda: _now(first.elector.is_leader), "the first replica to lead", 60)
        leader = first.elector.config.identity

        async def standing_by() -> bool:
            return second.elector.leader == leader and second.readiness() == []  # type: ignore[union-attr]

        await eventually(standing_by, "the second replica to stand by, ready, behind the first", 60)
        assert not second.elector.is_leader
        lease = await kube.get(
            Lease, names.LEADER_ELECTION_LEASE, namespace=install.settings.namespace
        )
        assert lease.spec is not None and lease.spec.holderIdentity == leader

        # A listed host, booted with the user data the operator wrote next to itself.
        user_data = await _user_data(kube, install.settings)
        host = WindowsHost(
            address=allocate_address(),
            port=install.settings.ssh_port,
            kubelet_factory=sim_kubelet.factory_with(lease_renew_interval=1.0, status_interval=1.0),
        )
        host.machine.container_behaviours[hostprocess.IMAGE_NAME] = hostprocess.flannel_behaviour(
            kube, service_cidr=cp.SERVICE_CIDR
        )
        await host.boot(user_data)
        await kube.create(
            ConfigMap(
                metadata=ObjectMeta(
                    name=names.INSTANCES_CONFIGMAP, namespace=install.settings.namespace
                ),
                data={host.address: "username=Administrator"},
            )
        )
        node = await _configured(kube, host, 150)
        annotations = (node.metadata.annotations if node.metadata else None) or {}
        assert annotations[names.INSTANCE_ADDRESS_ANNOTATION] == host.address

        # The host's bootstrap ServiceAccount is gone after the join.
        async def account_gone() -> bool:
            accounts = [
                a
                async for a in kube.list(
                    ServiceAccount, namespace=install.settings.bootstrap_namespace
                )
                if a.metadata
                and a.metadata.name
                and a.metadata.name.startswith(names.BOOTSTRAP_ACCOUNT_PREFIX)
            ]
            return accounts == []

        await eventually(account_gone, "the bootstrap ServiceAccount to be deleted", 30)
        assert not second.elector.is_leader, "the standby never reconciled meanwhile"

        # The leader stops (releasing the Lease): the standby takes over.
        await stop(first_task)
        await eventually(
            lambda: _now(second.elector.is_leader), "the second replica to take over", 60
        )  # type: ignore[union-attr]
    finally:
        await stop(first_task)
        await stop(second_task)
        if host is not None:
            await host.stop()
            with contextlib.suppress(Exception):
                await kube.delete(Node, host.facts.hostname)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                deploy.delete,
                install.plane.kubeconfig,
                [hostprocess.daemonset(), hostprocess.namespace()],
            )


async def _now(value: bool) -> bool:
    return value


async def _user_data(kube: AsyncClient, settings: Settings) -> str:
    got: dict[str, str] = {}

    async def written() -> bool:
        with contextlib.suppress(Exception):
            secret = await kube.get(
                Secret, names.USER_DATA_SECRET, namespace=settings.machine_api_namespace
            )
            data = (secret.data or {}).get(names.USER_DATA_SECRET_KEY)
            if data:
                got["script"] = base64.b64decode(data).decode()
        return "script" in got

    await eventually(written, "the operator to write the user data next to itself", 60)
    return got["script"]


async def _configured(kube: AsyncClient, host: WindowsHost, timeout: float) -> Node:
    found: dict[str, Node] = {}

    async def ready() -> bool:
        with contextlib.suppress(Exception):
            node = await kube.get(Node, host.facts.hostname)
            annotations = (node.metadata.annotations if node.metadata else None) or {}
            conditions = (node.status.conditions if node.status else None) or []
            if names.VERSION_ANNOTATION in annotations and any(
                c.type == "Ready" and c.status == "True" for c in conditions
            ):
                found["node"] = node
        return "node" in found

    await eventually(ready, f"host {host.address} to become a configured Ready node", timeout)
    return found["node"]
