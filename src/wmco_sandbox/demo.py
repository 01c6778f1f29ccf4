"""``wmco sandbox demo``: the seed's story from start to finish, every step checked.

The story: the private key Secret makes the operator write the user data; a Windows MachineSet
scaled to 2 gives two Ready Windows nodes tainted ``os=Windows:NoSchedule``; the RuntimeClass the
operator keeps for their Windows build steers a Windows Deployment onto them, its pods get
addresses of their node's pod network and ``kubectl logs`` reads one of them through the kubelet's API, while a Linux pod stays
off the Windows nodes; scaling the MachineSet to 1 drains and removes one node. A summary table
closes it. The command exits 0 only if every step held.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from lightkube import ApiError
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Node, Pod
from lightkube.resources.node_v1 import RuntimeClass

from wmco import names, userdata
from wmco_sandbox import payloads
from wmco_sandbox import progress as progress_mod
from wmco_sandbox.sandbox import Sandbox, SandboxError

REAL = "the control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler), the operator, SSH/SFTP"
SIMULATED = "the Windows Server hosts (strict simulated PowerShell, sc.exe, HNS, containerd, kube-proxy, hybrid-overlay-node and kubelet), the cloud behind the Machine API, and the cluster side of the network plugin"
DEMO_NAMESPACE = "windows-demo"
HELLO = "Hello from a Windows container"
SUBNET_ANNOTATION = "k8s.ovn.org/hybrid-overlay-node-subnet"
BUILDS = {"2019": "10.0.17763", "2022": "10.0.20348", "2025": "10.0.26100"}


class DemoFailure(RuntimeError):
    """A step of the story did not hold."""


def _taint_ok(node: Node) -> bool:
    taints = (node.spec.taints if node.spec else None) or []
    return any(
        t.key == names.WINDOWS_TAINT_KEY
        and t.value == names.WINDOWS_TAINT_VALUE
        and t.effect == names.WINDOWS_TAINT_EFFECT
        for t in taints
    )


class Story:
    """Runs the demo steps, printing each with its duration."""

    def __init__(self, sandbox: Sandbox, out: TextIO) -> None:
        self.sandbox = sandbox
        self.out = out
        self.view = progress_mod.ProgressView(out)
        self.ready_at: dict[str, float] = {}
        self.builds: dict[str, str] = {}
        self.scaled_at = time.monotonic()

    def say(self, text: str) -> None:
        """Print one line of the story (above the live progress screen on a terminal)."""
        self.view.say(text)

    async def step(self, title: str, action: Callable[[], Awaitable[str]]) -> None:
        """Run one step; its result line says what was checked."""
        started = time.monotonic()
        self.say(f"==> {title}")
        try:
            detail = await action()
        except (SandboxError, AssertionError) as exc:
            raise DemoFailure(f"{title}: {exc}") from exc
        self.say(f"    ok ({time.monotonic() - started:.1f}s): {detail}")

    async def tick(self) -> None:
        """Refresh the progress view and note when nodes became Ready."""
        nodes = await self.sandbox.windows_nodes()
        for node in nodes:
            name = node.metadata.name if node.metadata else None
            if name and progress_mod.node_ready(node) and name not in self.ready_at:
                self.ready_at[name] = time.monotonic() - self.scaled_at
                labels = (node.metadata.labels if node.metadata else None) or {}
                self.builds[name] = labels.get(names.WINDOWS_BUILD_LABEL, "-")
        problems = progress_mod.failures(await self.sandbox.operator_events())
        self.view.show(progress_mod.rows(self.sandbox.cloud.hosts.values(), nodes, problems))

    async def ready_windows_nodes(self) -> list[Node]:
        """Windows nodes that are Ready and carry the taint."""
        return [
            n
            for n in await self.sandbox.windows_nodes()
            if progress_mod.node_ready(n) and _taint_ok(n)
        ]

    # ---------------------------------------------------------------------------- the steps

    async def user_data(self) -> str:
        """The operator turned the private key Secret into user data with the matching key."""
        script = await self.sandbox.user_data()
        expected = userdata.public_key(userdata.load_private_key(self.sandbox.private_key_pem))
        authorised = userdata.authorized_keys_in(script)
        assert expected in authorised, (
            "the user data does not authorise the private key's public key"
        )
        return (
            f"Secret {names.MACHINE_API_NAMESPACE}/{names.USER_DATA_SECRET} authorises "
            f"{expected.key_type} key (pub-key-hash {expected.pub_key_hash[:12]}...)"
        )

    async def scale_to(self, replicas: int) -> str:
        """Scale the MachineSet and wait until exactly ``replicas`` tainted Windows nodes are Ready."""
        self.scaled_at = time.monotonic()
        await self.sandbox.apply_machineset(replicas)

        async def converged() -> bool:
            nodes = await self.sandbox.windows_nodes()
            ready = await self.ready_windows_nodes()
            return len(nodes) == replicas and len(ready) == replicas

        await self.sandbox.wait_for(converged, f"{replicas} Ready Windows nodes", 240, self.tick)
        await self.tick()
        names_ = sorted(
            n.metadata.name
            for n in await self.ready_windows_nodes()
            if n.metadata and n.metadata.name
        )
        return f"{replicas} Windows node(s) Ready with taint os=Windows:NoSchedule: {', '.join(names_)}"

    async def runtime_class(self) -> str:
        """The operator keeps a RuntimeClass for the Windows build of its nodes."""
        name = f"windows-{self.sandbox.windows_year}"
        build = BUILDS[self.sandbox.windows_year]
        found: dict[str, RuntimeClass] = {}

        async def kept() -> bool:
            try:
                found["rc"] = await self.sandbox.kube.get(RuntimeClass, name)
            except ApiError:
                return False
            return True

        await self.sandbox.wait_for(kept, f"the operator's RuntimeClass {name}", 60)
        managed = found["rc"]
        labels = (managed.metadata.labels if managed.metadata else None) or {}
        assert labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE, (
            f"RuntimeClass {name} is not labelled as the operator's"
        )
        selector = (managed.scheduling.nodeSelector if managed.scheduling else None) or {}
        assert selector.get(names.WINDOWS_BUILD_LABEL) == build, (
            f"RuntimeClass {name} does not select windows-build {build}: {selector}"
        )
        tolerations = (managed.scheduling.tolerations if managed.scheduling else None) or []
        assert any(
            t.key == names.WINDOWS_TAINT_KEY
            and t.value == names.WINDOWS_TAINT_VALUE
            and t.effect == names.WINDOWS_TAINT_EFFECT
            for t in tolerations
        ), f"RuntimeClass {name} does not tolerate os=Windows:NoSchedule"
        return (
            f"RuntimeClass {name} (handler {managed.handler}) kept by the operator: selects "
            f"windows-build {build}, tolerates os=Windows:NoSchedule"
        )

    async def windows_deployment(self) -> str:
        """A 2-replica Windows Deployment lands on Windows nodes only and runs."""
        kube = self.sandbox.kube
        await kube.create(Namespace(metadata=ObjectMeta(name=DEMO_NAMESPACE)))
        labels: dict[str, Any] = {"app": "iis"}
        await kube.create(
            Deployment(
                metadata=ObjectMeta(name="iis", namespace=DEMO_NAMESPACE),
                spec=DeploymentSpec(
                    replicas=2,
                    selector=LabelSelector(matchLabels=labels),
                    template=PodTemplateSpec(
                        metadata=ObjectMeta(labels=labels),
                        spec=PodSpec(
                            runtimeClassName=f"windows-{self.sandbox.windows_year}",
                            containers=[
                                Container(
                                    name="iis",
                                    image="mcr.microsoft.com/windows/servercore/iis:windowsservercore-ltsc2022",
                                    command=[
                                        "powershell.exe",
                                        "-Command",
                                        f"Write-Output '{HELLO}'; C:\\ServiceMonitor.exe w3svc",
                                    ],
                                )
                            ],
                        ),
                    ),
                ),
            )
        )
        windows = {n.metadata.name for n in await self.sandbox.windows_nodes() if n.metadata}

        async def running() -> bool:
            pods = [p async for p in kube.list(Pod, namespace=DEMO_NAMESPACE, labels=labels)]
            return len(pods) == 2 and all(
                p.spec and p.spec.nodeName in windows and p.status and p.status.phase == "Running"
                for p in pods
            )

        await self.sandbox.wait_for(running, "2 IIS pods Running on Windows nodes", 120, self.tick)
        pods = [p async for p in kube.list(Pod, namespace=DEMO_NAMESPACE, labels=labels)]
        placed = []
        for pod in pods:
            assert pod.metadata and pod.spec and pod.spec.nodeName and pod.status
            network = await self.pod_network(pod.spec.nodeName)
            ip = pod.status.podIP or ""
            assert ip and ipaddress.ip_address(ip) in ipaddress.ip_network(network), (
                f"pod {pod.metadata.name} has address {ip!r}, not one of its node's pod network "
                f"{network}"
            )
            placed.append(f"{pod.metadata.name}->{pod.spec.nodeName} {ip}")
        return (
            "Deployment iis: 2 pods bound by the scheduler to Windows nodes, Running with "
            f"addresses of their node's pod network ({', '.join(placed)})"
        )

    async def pod_network(self, node_name: str) -> str:
        """The pod network of a Windows node: its hybrid-overlay subnet, or its pod CIDR."""
        node = await self.sandbox.kube.get(Node, node_name)
        annotations = (node.metadata.annotations if node.metadata else None) or {}
        if self.sandbox.network_profile == "ovn-hybrid":
            return str(annotations[SUBNET_ANNOTATION])
        assert node.spec is not None and node.spec.podCIDR, f"node {node_name} has no pod CIDR"
        return node.spec.podCIDR

    async def pod_log(self) -> str:
        """``kubectl logs`` of a Windows pod: the API server reads it from the node's kubelet."""
        pods = [
            p
            async for p in self.sandbox.kube.list(
                Pod, namespace=DEMO_NAMESPACE, labels={"app": "iis"}
            )
        ]
        name = pods[0].metadata.name if pods and pods[0].metadata else None
        assert name, "no IIS pod to read"
        try:
            text = await asyncio.to_thread(
                self.sandbox.plane.kubectl, "logs", "-n", DEMO_NAMESPACE, name
            )
        except Exception as exc:
            raise AssertionError(f"kubectl logs {name} failed: {exc}") from exc
        assert HELLO in text, f"the log of {name} does not say {HELLO!r}: {text!r}"
        return (
            f"kubectl logs {name}: {HELLO!r} (served by its kubelet on :10250, client CA checked)"
        )

    async def linux_pod(self) -> str:
        """A pod without the RuntimeClass is kept off the Windows nodes."""
        kube = self.sandbox.kube
        await kube.create(
            Pod(
                metadata=ObjectMeta(name="linux-nginx", namespace=DEMO_NAMESPACE),
                spec=PodSpec(containers=[Container(name="nginx", image="nginx")]),
            )
        )
        windows = {n.metadata.name for n in await self.sandbox.windows_nodes() if n.metadata}

        async def kept_off() -> bool:
            pod = await kube.get(Pod, "linux-nginx", namespace=DEMO_NAMESPACE)
            conditions = (pod.status.conditions if pod.status else None) or []
            refused = any(
                c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
                for c in conditions
            )
            node = pod.spec.nodeName if pod.spec else None
            return refused or (node is not None and node not in windows)

        await self.sandbox.wait_for(
            kept_off, "the scheduler to keep the Linux pod off Windows nodes", 60
        )
        return "the Linux pod does not tolerate os=Windows:NoSchedule: the scheduler keeps it off the Windows nodes"

    async def scale_down(self) -> str:
        """Scale to 1: one node drained and removed, the Deployment's pods rescheduled."""
        before = {n.metadata.name or "" for n in await self.sandbox.windows_nodes() if n.metadata}
        detail = await self.scale_to(1)
        after = {n.metadata.name or "" for n in await self.sandbox.windows_nodes() if n.metadata}
        removed = before - after
        assert len(removed) == 1, f"expected one node removed, got {sorted(removed)}"
        kube = self.sandbox.kube

        async def rescheduled() -> bool:
            pods = [
                p async for p in kube.list(Pod, namespace=DEMO_NAMESPACE, labels={"app": "iis"})
            ]
            live = [p for p in pods if p.metadata and p.metadata.deletionTimestamp is None]
            return len(live) == 2 and all(
                p.spec and p.spec.nodeName in after and p.status and p.status.phase == "Running"
                for p in live
            )

        await self.sandbox.wait_for(
            rescheduled, "the IIS pods to run on the remaining node", 120, self.tick
        )
        return f"node {removed.pop()} drained and removed; {detail}; IIS pods rescheduled"

    async def run(self, started: float) -> None:
        """Every step of the story, then the summary."""
        sandbox = self.sandbox
        await self.step("start the sandbox", _started(sandbox, started))
        await self.step("private key Secret -> user-data Secret", self.user_data)
        await self.step("scale the Windows MachineSet to 2", lambda: self.scale_to(2))
        await self.step("the operator's RuntimeClass for the Windows build", self.runtime_class)
        await self.step("Windows Deployment (2 replicas) on Windows nodes", self.windows_deployment)
        await self.step("read a Windows pod's log with kubectl logs", self.pod_log)
        await self.step("a Linux pod stays off the Windows nodes", self.linux_pod)
        await self.step("scale the MachineSet to 1", self.scale_down)
        self.summary()

    def summary(self) -> None:
        """Print the closing table (after the live progress screen)."""
        self.view.close()
        self.say("")
        self.say("Summary")
        self.say(f"  {'NODE':<24} {'BUILD':<12} {'FROM':<10} {'READY AFTER':<12} STATUS")
        hostnames = {sim.host.facts.hostname: sim for sim in self.sandbox.cloud.hosts.values()}
        for node, seconds in sorted(self.ready_at.items(), key=lambda kv: kv[1]):
            sim = hostnames.get(node)
            build = self.builds.get(node, "-")
            origin = sim.origin.value if sim else "machine"
            status = "running" if sim else "removed"
            self.say(f"  {node:<24} {build:<12} {origin:<10} {seconds:>9.1f}s   {status}")
        self.say(f"  real:      {REAL}")
        self.say(f"  simulated: {SIMULATED}")


async def run_demo(
    state_dir: Path,
    year: str,
    network_profile: str = "ovn-hybrid",
    out: TextIO = sys.stdout,
    payload: payloads.Resolved | None = None,
) -> None:
    """Run the whole story; raise :class:`DemoFailure` at the first step that does not hold."""
    payload = payload or payloads.resolve(payloads.Choice.GENERATED)
    out.write(f"Real:      {REAL}\nSimulated: {SIMULATED}\nNetwork:   {network_profile}\n")
    out.write(f"Payload:   {payload.reason}\n\n")
    started = time.monotonic()
    async with Sandbox(
        state_dir,
        windows_year=year,
        network_profile=network_profile,
        payload_dir=payload.directory,
    ) as sandbox:
        story = Story(sandbox, out)
        try:
            await story.run(started)
        finally:
            story.view.close()
        story.say("stopping the sandbox")
    out.write(f"demo finished in {time.monotonic() - started:.0f}s: every step held\n")


def _started(sandbox: Sandbox, started: float) -> Callable[[], Awaitable[str]]:
    async def check() -> str:
        return f"control plane at {sandbox.plane.server}, operator pid {sandbox.operator.proc.pid if sandbox.operator and sandbox.operator.proc else '?'} ({time.monotonic() - started:.1f}s)"

    return check


def main(
    state_dir: Path,
    year: str,
    network_profile: str = "ovn-hybrid",
    payload: payloads.Choice = payloads.Choice.AUTO,
) -> int:
    """Entry point of ``wmco sandbox demo``; the exit status."""
    try:
        resolved = payloads.resolve(payload)
    except payloads.PayloadError as exc:
        sys.stderr.write(f"demo FAILED: {exc}\n")
        return 1
    try:
        asyncio.run(run_demo(state_dir, year, network_profile, payload=resolved))
    except DemoFailure as exc:
        sys.stderr.write(
            f"demo FAILED: {exc}\n(logs: {state_dir}/operator.log, {state_dir}/controlplane/logs)\n"
        )
        return 1
    return 0
