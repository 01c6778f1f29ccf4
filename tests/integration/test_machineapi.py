"""The simulated Machine API against the real control plane: CRDs, MachineSet scaling, the machine
lifecycle (phases, addresses, providerID, user data), nodelink, drain, and failure on missing user data.

Each test runs its own :class:`MachineAPI` in its own namespace (the Machine API namespace of that
test) with an in-memory host provider; the CRDs are cluster-scoped and installed idempotently. The
Nodes a test needs are created directly as admin, standing in for kubelets.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from lightkube import ApiError, AsyncClient
from lightkube.models.core_v1 import Container, NodeSpec, PodSpec, Toleration
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.models.policy_v1 import PodDisruptionBudgetSpec
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Event, Namespace, Node, NodeStatus, Pod, PodStatus, Secret
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

import kube_helpers
from wmco_sandbox.controlplane import ControlPlane
from wmco_sandbox.machineapi import (
    BootedHost,
    InMemoryHostProvider,
    Machine,
    MachineAPI,
    MachineSet,
    conditions,
    install_crds,
    machineset,
    selectors,
    windows_build,
)
from wmco_sandbox.machineapi.resources import as_json, machine_resource, machineset_resource

pytestmark = pytest.mark.integration

INFRA_ID = "sandbox-x7k2q"
USER_DATA = "<powershell>\nAdd-Content C:\\ProgramData\\ssh\\administrators_authorized_keys 'ssh-ed25519 AAAA test'\n</powershell>\n<persist>true</persist>\n"

# Modelled on the WMCO docs' AWS Windows MachineSet (machine-api.md §7.1), with a template taint.
MACHINESET_YAML = """
apiVersion: machine.openshift.io/v1beta1
kind: MachineSet
metadata:
  labels: {machine.openshift.io/cluster-api-cluster: <infrastructureID>}
  name: <name>
  namespace: <namespace>
spec:
  replicas: 0
  selector:
    matchLabels:
      machine.openshift.io/cluster-api-cluster: <infrastructureID>
      machine.openshift.io/cluster-api-machineset: <name>
  template:
    metadata:
      labels:
        machine.openshift.io/cluster-api-cluster: <infrastructureID>
        machine.openshift.io/cluster-api-machine-role: worker
        machine.openshift.io/cluster-api-machine-type: worker
        machine.openshift.io/cluster-api-machineset: <name>
        machine.openshift.io/os-id: Windows
    spec:
      metadata:
        labels: {node-role.kubernetes.io/worker: ""}
      taints:
      - {key: example.com/windows-only, value: "true", effect: NoSchedule}
      providerSpec:
        value:
          apiVersion: awsproviderconfig.openshift.io/v1beta1
          kind: AWSMachineProviderConfig
          ami:
            filters:
            - {name: name, values: [Windows_Server-2019-English-Core-Base-2026.08.13]}
          blockDevices: [{ebs: {iops: 0, volumeSize: 120, volumeType: gp2}}]
          credentialsSecret: {name: aws-cloud-credentials}
          deviceIndex: 0
          iamInstanceProfile: {id: <infrastructureID>-worker-profile}
          instanceType: m5a.large
          metadataServiceOptions: {authentication: Optional}
          placement: {availabilityZone: us-east-1a, region: us-east-1}
          securityGroups: [{filters: [{name: "tag:Name", values: [<infrastructureID>-node]}]}]
          subnet: {filters: [{name: "tag:Name", values: [<infrastructureID>-subnet-private-us-east-1a]}]}
          tags: [{name: kubernetes.io/cluster/<infrastructureID>, value: owned}]
          userDataSecret: {name: windows-user-data, namespace: openshift-machine-api}
"""

eventually = functools.partial(kube_helpers.eventually, timeout=20, poll=0.1)


def machineset_body(name: str, namespace: str) -> dict[str, Any]:
    text = (
        MACHINESET_YAML.replace("<infrastructureID>", INFRA_ID)
        .replace("<name>", name)
        .replace("<namespace>", namespace)
    )
    body: dict[str, Any] = yaml.safe_load(text)
    return body


@dataclass
class Cluster:
    """One test's Machine API: the client, its namespace, the running API and the fake cloud."""

    kube: AsyncClient
    namespace: str
    provider: InMemoryHostProvider
    api: MachineAPI
    nodes: list[str] = field(default_factory=list)

    async def machines(self) -> list[dict[str, Any]]:
        return [as_json(m) async for m in self.kube.list(Machine, namespace=self.namespace)]

    async def machine(self, name: str) -> dict[str, Any]:
        return as_json(await self.kube.get(Machine, name, namespace=self.namespace))

    async def machineset(self, name: str) -> dict[str, Any]:
        return as_json(await self.kube.get(MachineSet, name, namespace=self.namespace))

    async def create_machineset(self, name: str, **spec: Any) -> dict[str, Any]:
        body = machineset_body(name, self.namespace)
        body["spec"].update(spec)
        return as_json(await self.kube.create(machineset_resource(body)))

    async def scale(self, name: str, replicas: int) -> None:
        # Through the scale subresource, as `kubectl scale` does.
        await self.kube.patch(
            MachineSet.Scale,
            name,
            {"spec": {"replicas": replicas}},
            namespace=self.namespace,
            patch_type=PatchType.MERGE,
        )

    async def create_user_data(self) -> None:
        await self.kube.create(
            Secret(
                metadata=ObjectMeta(name="windows-user-data", namespace=self.namespace),
                data={"userData": base64.b64encode(USER_DATA.encode()).decode()},
            )
        )

    async def create_node(
        self,
        *,
        address: str | None = None,
        provider_id: str | None = None,
        ready: str = "True",
    ) -> str:
        name = f"win-{secrets.token_hex(4)}"
        self.nodes.append(name)
        await self.kube.create(
            Node(
                metadata=ObjectMeta(name=name, labels={"kubernetes.io/os": "windows"}),
                spec=NodeSpec(providerID=provider_id),
            )
        )
        status: dict[str, Any] = {
            "conditions": [{"type": "Ready", "status": ready, "reason": "Test", "message": "test"}]
        }
        if address:
            status["addresses"] = [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": name},
            ]
        await self.kube.patch(NodeStatus, name, {"status": status}, patch_type=PatchType.MERGE)
        return name

    async def wait_for_machines(self, count: int, what: str, **kwargs: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        async def check() -> bool:
            nonlocal found
            found = await self.machines()
            return len(found) == count

        await eventually(check, what, **kwargs)
        return found

    async def wait_for_phase(self, name: str, phase: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def check() -> bool:
            nonlocal found
            found = await self.machine(name)
            return (found.get("status") or {}).get("phase") == phase

        await eventually(check, f"Machine {name} to reach phase {phase}")
        return found


@pytest.fixture
async def cluster(kube: AsyncClient, namespace: str) -> AsyncIterator[Cluster]:
    provider = InMemoryHostProvider()
    async with MachineAPI(kube, provider, namespace, resync=2.0) as api:
        here = Cluster(kube, namespace, provider, api)
        try:
            yield here
        finally:
            # Let the running controllers release the finalizers, so the namespace can go.
            async for ms in kube.list(MachineSet, namespace=namespace):
                await kube.delete(MachineSet, as_json(ms)["metadata"]["name"], namespace=namespace)
            for machine in await here.machines():
                await kube.delete(Machine, machine["metadata"]["name"], namespace=namespace)
            await here.wait_for_machines(0, "every Machine to be finalized")
            for node in here.nodes:
                try:
                    await kube.delete(Node, node)
                except ApiError as err:
                    assert err.status.code == 404


def internal_ip(machine: dict[str, Any]) -> str:
    return next(
        str(a["address"]) for a in machine["status"]["addresses"] if a["type"] == "InternalIP"
    )


# --- Pure decisions ---------------------------------------------------------------------------


def test_windows_build_comes_from_the_image_name() -> None:
    assert windows_build({"ami": {"id": "ami-0abc"}}) == "10.0.20348"  # the default: 2022
    assert windows_build({"image": {"sku": "2019-datacenter-smalldisk"}}) == "10.0.17763"
    assert windows_build({"image": {"sku": "2025-datacenter-smalldisk"}}) == "10.0.26100"
    assert windows_build({"template": "windows-server-2022-template"}) == "10.0.20348"
    filters = {"ami": {"filters": [{"name": "name", "values": ["Windows_Server-2025-English"]}]}}
    assert windows_build(filters) == "10.0.26100"


def test_label_selector_string_is_kubernetes_canonical_form() -> None:
    selector = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [
            {"key": "c", "operator": "In", "values": ["y", "x"]},
            {"key": "d", "operator": "NotIn", "values": ["z"]},
            {"key": "e", "operator": "Exists"},
            {"key": "f", "operator": "DoesNotExist"},
        ],
    }
    assert selectors.format_selector(selector) == "a=1,b=2,c in (x,y),d notin (z),e,!f"
    assert selectors.matches(selector, {"a": "1", "b": "2", "c": "x", "e": ""})
    assert not selectors.matches(selector, {"a": "1", "b": "2", "c": "x", "e": "", "f": "1"})


def test_scale_down_picks_marked_then_failed_then_unlinked_then_newest() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def machine(name: str, age_s: int, **extra: Any) -> dict[str, Any]:
        created = (now - datetime.timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "metadata": {"name": name, "creationTimestamp": created, **extra.get("meta", {})},
            "status": extra.get("status", {}),
        }

    linked = {"nodeRef": {"name": "n"}}
    machines = [
        machine("old-linked", 500, status=linked),
        machine("new-linked", 100, status=linked),
        machine("unlinked", 600),
        machine("failed", 700, status={"errorReason": "InvalidConfiguration", **linked}),
        machine(
            "marked",
            800,
            status=linked,
            meta={"annotations": {"machine.openshift.io/delete-machine": "yes"}},
        ),
    ]
    order = [
        m["metadata"]["name"] for m in machineset.pick_for_deletion("Random", machines, 5, now)
    ]
    assert order[2:] == ["unlinked", "new-linked", "old-linked"]
    assert set(order[:2]) == {"marked", "failed"}
    newest = machineset.pick_for_deletion("Newest", machines[:3], 1, now)
    assert newest[0]["metadata"]["name"] == "new-linked"
    oldest = machineset.pick_for_deletion("Oldest", machines[:3], 1, now)
    assert oldest[0]["metadata"]["name"] == "unlinked"


def test_condition_transition_time_moves_only_on_change() -> None:
    first = conditions.set_condition(None, conditions.make("Drained", "True", message="ok"))
    stamped = dict(first[0], lastTransitionTime="2020-01-01T00:00:00Z")
    again = conditions.set_condition([stamped], conditions.make("Drained", "True", message="ok"))
    assert again == [stamped]
    changed = conditions.set_condition([stamped], conditions.make("Drained", "False", reason="X"))
    assert changed[0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    both = conditions.set_condition(changed, conditions.make("Alpha", "True"))
    assert [c["type"] for c in both] == ["Alpha", "Drained"]


# --- CRDs -------------------------------------------------------------------------------------


async def test_crds_accept_the_reference_windows_machineset(
    control_plane: ControlPlane, kube: AsyncClient, namespace: str
) -> None:
    await install_crds(kube)
    await install_crds(kube)  # idempotent
    crd = await kube.get(CustomResourceDefinition, "machinesets.machine.openshift.io")
    assert crd.spec.versions[0].subresources.scale.labelSelectorPath == ".status.labelSelector"  # type: ignore[union-attr]

    body = machineset_body("winworker", namespace)
    body["spec"]["replicas"] = 3
    created = await kube.create(machineset_resource(body))
    template = created["spec"]["template"]
    value = template["spec"]["providerSpec"]["value"]
    assert value["userDataSecret"] == {
        "name": "windows-user-data",
        "namespace": "openshift-machine-api",
    }
    assert value["blockDevices"] == [{"ebs": {"iops": 0, "volumeSize": 120, "volumeType": "gp2"}}]
    assert template["metadata"]["labels"]["machine.openshift.io/os-id"] == "Windows"
    assert template["spec"]["metadata"]["labels"] == {"node-role.kubernetes.io/worker": ""}
    assert template["spec"]["taints"][0]["effect"] == "NoSchedule"
    assert (
        created["spec"]["selector"]["matchLabels"]["machine.openshift.io/cluster-api-machineset"]
        == "winworker"
    )

    # The scale subresource reads spec.replicas; kubectl prints the real columns.
    scale = await kube.get(MachineSet.Scale, "winworker", namespace=namespace)
    assert scale.spec.replicas == 3  # type: ignore[union-attr]
    header = control_plane.kubectl("get", "machinesets", "-n", namespace).splitlines()[0].split()
    assert header == ["NAME", "DESIRED", "CURRENT", "READY", "AVAILABLE", "AGE"]

    # A Machine accepts every status field the controllers write.
    await kube.create(
        machine_resource(
            {
                "metadata": {"name": "m1", "namespace": namespace},
                "spec": {
                    "providerID": "wmco-sandbox:///zone-a/i-1",
                    "providerSpec": {"value": value},
                },
            }
        )
    )
    status = {
        "phase": "Running",
        "providerID": "wmco-sandbox:///zone-a/i-1",
        "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
        "nodeRef": {"kind": "Node", "name": "n1", "uid": "u-1"},
        "errorReason": "InvalidConfiguration",
        "errorMessage": "boom",
        "conditions": [
            {
                "type": "InstanceExists",
                "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    await kube.patch(
        Machine.Status, "m1", {"status": status}, namespace=namespace, patch_type=PatchType.MERGE
    )
    got = await kube.get(Machine, "m1", namespace=namespace)
    assert got["status"] == status
    wide = control_plane.kubectl("get", "machines", "-n", namespace, "-o", "wide")
    assert "Running" in wide and "n1" in wide and "wmco-sandbox:///zone-a/i-1" in wide

    # Nested required keys are enforced: a taint needs an effect.
    bad = machineset_body("bad", namespace)
    bad["spec"]["template"]["spec"]["taints"] = [{"key": "os"}]
    with pytest.raises(ApiError) as refused:
        await kube.create(machineset_resource(bad))
    assert refused.value.status.code == 422
    await kube.delete(Machine, "m1", namespace=namespace)
    await kube.delete(MachineSet, "winworker", namespace=namespace)


# --- MachineSet controller and simulated cloud ------------------------------------------------


async def test_scaling_creates_and_deletes_machines_and_hosts(cluster: Cluster) -> None:
    await cluster.create_user_data()
    ms = await cluster.create_machineset("winworker")
    await cluster.scale("winworker", 2)
    machines = await cluster.wait_for_machines(2, "two Machines")
    for machine in machines:
        meta = machine["metadata"]
        assert meta["generateName"] == "winworker-"
        assert meta["name"].startswith("winworker-") and len(meta["name"]) == len("winworker-") + 5
        assert meta["labels"]["machine.openshift.io/os-id"] == "Windows"
        owner = meta["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "MachineSet",
            "winworker",
            ms["metadata"]["uid"],
        )
        assert owner["controller"] is True and owner["blockOwnerDeletion"] is True
        assert machine["spec"]["providerSpec"] == ms["spec"]["template"]["spec"]["providerSpec"]

    names = sorted(m["metadata"]["name"] for m in machines)
    for name in names:
        machine = await cluster.wait_for_phase(name, "Provisioned")
        assert "machine.machine.openshift.io" in machine["metadata"]["finalizers"]
        record = cluster.provider.running[name]
        assert record.user_data == USER_DATA
        assert record.windows_build == "10.0.17763"  # the 2019 AMI
        pid = f"wmco-sandbox:///us-east-1a/{record.host.instance_id}"
        assert machine["spec"]["providerID"] == pid
        status = machine["status"]
        assert status["providerID"] == pid
        assert status["addresses"] == [
            {"type": "InternalIP", "address": record.host.address},
            {"type": "InternalDNS", "address": name},
            {"type": "Hostname", "address": name},
        ]
        labels = machine["metadata"]["labels"]
        assert labels["machine.openshift.io/instance-type"] == "m5a.large"
        assert labels["machine.openshift.io/zone"] == "us-east-1a"
        exists = next(c for c in status["conditions"] if c["type"] == "InstanceExists")
        assert exists["status"] == "True"

    async def status_counts() -> bool:
        status = (await cluster.machineset("winworker")).get("status") or {}
        return (
            status.get("replicas") == 2
            and status.get("fullyLabeledReplicas") == 2
            and status.get("readyReplicas") == 0
            and status.get("observedGeneration") == 2
        )

    await eventually(status_counts, "the MachineSet status to count two Machines")
    status = (await cluster.machineset("winworker"))["status"]
    assert status["labelSelector"] == (
        f"machine.openshift.io/cluster-api-cluster={INFRA_ID},"
        "machine.openshift.io/cluster-api-machineset=winworker"
    )
    scale = await cluster.kube.get(MachineSet.Scale, "winworker", namespace=cluster.namespace)
    assert scale.status.selector == status["labelSelector"]  # type: ignore[union-attr]

    # Scale down: the Machine marked for deletion goes first.
    marked = names[0]
    await cluster.kube.patch(
        Machine,
        marked,
        {"metadata": {"annotations": {"machine.openshift.io/delete-machine": "true"}}},
        namespace=cluster.namespace,
        patch_type=PatchType.MERGE,
    )
    await cluster.scale("winworker", 1)
    (left,) = await cluster.wait_for_machines(1, "one Machine left")
    assert left["metadata"]["name"] == names[1]
    assert cluster.provider.destroyed == [marked]
    assert set(cluster.provider.running) == {names[1]}

    await cluster.scale("winworker", 0)
    await cluster.wait_for_machines(0, "no Machine left")
    assert sorted(cluster.provider.destroyed) == names
    assert cluster.provider.running == {}

    async def zero() -> bool:
        return ((await cluster.machineset("winworker")).get("status") or {}).get("replicas") == 0

    await eventually(zero, "status.replicas to drop to 0")


async def test_a_deleted_machine_is_replaced(cluster: Cluster) -> None:
    await cluster.create_user_data()
    await cluster.create_machineset("winworker", replicas=1)
    (first,) = await cluster.wait_for_machines(1, "the first Machine")
    old = first["metadata"]["name"]
    await cluster.wait_for_phase(old, "Provisioned")
    await cluster.kube.delete(Machine, old, namespace=cluster.namespace)

    replacement: list[str] = []

    async def replaced() -> bool:
        names = [m["metadata"]["name"] for m in await cluster.machines()]
        replacement[:] = [n for n in names if n != old]
        return names == replacement and len(replacement) == 1

    await eventually(replaced, "a replacement Machine, and the old one gone")
    await cluster.wait_for_phase(replacement[0], "Provisioned")
    assert cluster.provider.destroyed == [old]
    assert cluster.provider.booted == [old, replacement[0]]


async def test_machines_run_once_their_nodes_exist_and_take_their_nodes_along(
    cluster: Cluster,
) -> None:
    await cluster.create_user_data()
    await cluster.create_machineset("winworker", replicas=2)
    machines = await cluster.wait_for_machines(2, "two Machines")
    by_ip, by_pid = [
        await cluster.wait_for_phase(m["metadata"]["name"], "Provisioned") for m in machines
    ]
    # One Node matches by InternalIP, the other by providerID (as with a cloud provider).
    node_a = await cluster.create_node(address=internal_ip(by_ip))
    node_b = await cluster.create_node(provider_id=by_pid["spec"]["providerID"])

    for machine, node_name in ((by_ip, node_a), (by_pid, node_b)):
        running = await cluster.wait_for_phase(machine["metadata"]["name"], "Running")
        node = await cluster.kube.get(Node, node_name)
        assert running["status"]["nodeRef"] == {
            "kind": "Node",
            "name": node_name,
            "uid": node.metadata.uid,  # type: ignore[union-attr]
        }

        async def node_labelled(
            node_name: str = node_name, machine: dict[str, Any] = machine
        ) -> bool:
            node = await cluster.kube.get(Node, node_name)
            meta = node.metadata
            taints = {(t.key, t.effect) for t in (node.spec.taints or [])}  # type: ignore[union-attr]
            return (
                (meta.annotations or {}).get("machine.openshift.io/machine")  # type: ignore[union-attr]
                == f"{cluster.namespace}/{machine['metadata']['name']}"
                and (meta.labels or {}).get("node-role.kubernetes.io/worker") == ""  # type: ignore[union-attr]
                and ("example.com/windows-only", "NoSchedule") in taints
            )

        await eventually(node_labelled, f"nodelink to label, annotate and taint Node {node_name}")

    async def ready_counts() -> bool:
        status = (await cluster.machineset("winworker")).get("status") or {}
        return status.get("readyReplicas") == 2 and status.get("availableReplicas") == 2

    await eventually(ready_counts, "two ready and available replicas")

    # Scaling down deletes the Machine's Node once the host is destroyed.
    await cluster.scale("winworker", 0)
    await cluster.wait_for_machines(0, "the Machines to be deleted")
    for node_name in (node_a, node_b):
        with pytest.raises(ApiError) as gone:
            await cluster.kube.get(Node, node_name)
        assert gone.value.status.code == 404
    assert cluster.provider.running == {}


async def test_missing_user_data_secret_fails_the_machine(cluster: Cluster) -> None:
    await cluster.create_machineset("winworker", replicas=1)
    (machine,) = await cluster.wait_for_machines(1, "one Machine")
    name = machine["metadata"]["name"]
    failed = await cluster.wait_for_phase(name, "Failed")
    assert failed["status"]["errorReason"] == "InvalidConfiguration"
    assert failed["status"]["errorMessage"] == (
        f"user data secret {cluster.namespace}/windows-user-data not found"
    )
    assert failed["metadata"]["annotations"]["machine.openshift.io/instance-state"] == "Unknown"
    assert cluster.provider.booted == []

    async def warned() -> bool:
        async for event in cluster.kube.list(Event, namespace=cluster.namespace):
            if event.involvedObject.name == name and event.reason == "FailedCreate":
                assert event.type == "Warning"
                assert "windows-user-data not found" in (event.message or "")
                return True
        return False

    await eventually(warned, "a FailedCreate event on the Machine")

    # Once the Secret exists, new Machines work; the failed one stays failed (and counts).
    await cluster.create_user_data()
    await cluster.scale("winworker", 2)
    machines = await cluster.wait_for_machines(2, "a second Machine")
    (fresh,) = [m["metadata"]["name"] for m in machines if m["metadata"]["name"] != name]
    await cluster.wait_for_phase(fresh, "Provisioned")
    assert (await cluster.machine(name))["status"]["phase"] == "Failed"
    assert cluster.provider.booted == [fresh]


async def test_deletion_drains_the_node_through_the_eviction_api(cluster: Cluster) -> None:
    await cluster.create_user_data()
    await cluster.create_machineset("winworker", replicas=1)
    (machine,) = await cluster.wait_for_machines(1, "one Machine")
    name = machine["metadata"]["name"]
    provisioned = await cluster.wait_for_phase(name, "Provisioned")
    # An unreachable Node (its kubelet stopped reporting) with a pod a PDB protects. The pod
    # tolerates the unreachable taint, so only the drain can take it off the Node.
    node = await cluster.create_node(address=internal_ip(provisioned), ready="Unknown")
    await cluster.wait_for_phase(name, "Running")
    ns = cluster.namespace
    tolerate = [
        Toleration(key=f"node.kubernetes.io/{t}", operator="Exists", effect="NoExecute")
        for t in ("unreachable", "not-ready")
    ]
    await cluster.kube.create(
        Pod(
            metadata=ObjectMeta(name="app", namespace=ns, labels={"app": "web"}),
            spec=PodSpec(
                nodeName=node,
                tolerations=tolerate,
                containers=[Container(name="c", image="iis")],
            ),
        )
    )
    await cluster.kube.patch(
        PodStatus,
        "app",
        {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
        namespace=ns,
        patch_type=PatchType.MERGE,
    )
    await cluster.kube.create(
        PodDisruptionBudget(
            metadata=ObjectMeta(name="web", namespace=ns),
            spec=PodDisruptionBudgetSpec(
                minAvailable=1, selector=LabelSelector(matchLabels={"app": "web"})
            ),
        )
    )

    async def budget_observed() -> bool:
        pdb = await cluster.kube.get(PodDisruptionBudget, "web", namespace=ns)
        return bool(
            pdb.status
            and pdb.status.observedGeneration == pdb.metadata.generation  # type: ignore[union-attr]
            and pdb.status.disruptionsAllowed == 0
        )

    await eventually(budget_observed, "the disruption controller to process the PDB")

    await cluster.scale("winworker", 0)

    async def blocked() -> bool:
        status = (await cluster.machine(name)).get("status") or {}
        drained = [c for c in status.get("conditions") or [] if c["type"] == "Drained"]
        return (
            status.get("phase") == "Deleting"
            and bool(drained)
            and drained[0]["status"] == "False"
            and drained[0]["reason"] == "DrainError"
            and drained[0]["message"].startswith(f"cannot evict pod {ns}/app")
        )

    await eventually(blocked, "the drain to be refused by the PodDisruptionBudget")
    assert (await cluster.kube.get(Node, node)).spec.unschedulable is True  # type: ignore[union-attr]
    pod = await cluster.kube.get(Pod, "app", namespace=ns)
    assert pod.metadata.deletionTimestamp is None  # type: ignore[union-attr]
    assert name in cluster.provider.running  # nothing destroyed while the drain is refused

    await cluster.kube.delete(PodDisruptionBudget, "web", namespace=ns)
    await cluster.wait_for_machines(0, "the Machine to be finalized after the drain")
    assert cluster.provider.destroyed == [name]
    with pytest.raises(ApiError) as gone:
        await cluster.kube.get(Node, node)
    assert gone.value.status.code == 404
    # Evicted with the 1 s grace period of an unreachable Node (a plain delete would use 30 s).
    try:
        pod = await cluster.kube.get(Pod, "app", namespace=ns)
    except ApiError as err:
        assert err.status.code == 404
    else:
        assert pod.metadata.deletionTimestamp is not None  # type: ignore[union-attr]
        assert pod.metadata.deletionGracePeriodSeconds == 1  # type: ignore[union-attr]


@dataclass
class FlakyProvider(InMemoryHostProvider):
    """Refuses the first boots, as a cloud out of capacity would."""

    failures_left: int = 1

    async def boot(self, name: str, *, user_data: str, windows_build: str) -> BootedHost:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise RuntimeError("InsufficientInstanceCapacity: try again later")
        return await super().boot(name, user_data=user_data, windows_build=windows_build)


async def test_boot_errors_are_retried_and_the_api_stops_cleanly(kube: AsyncClient) -> None:
    namespace = f"t-mapi-{secrets.token_hex(4)}"  # MachineAPI creates it
    provider = FlakyProvider()
    async with MachineAPI(kube, provider, namespace, resync=1.0) as api:
        assert (await kube.get(Namespace, namespace)).metadata.name == namespace  # type: ignore[union-attr]
        cluster = Cluster(kube, namespace, provider, api)
        await cluster.create_user_data()
        await cluster.create_machineset("winworker", replicas=1)
        (machine,) = await cluster.wait_for_machines(1, "one Machine")
        name = machine["metadata"]["name"]
        await cluster.wait_for_phase(name, "Provisioned")
        assert provider.booted == [name]
        events = [
            e async for e in kube.list(Event, namespace=namespace) if e.reason == "FailedCreate"
        ]
        assert [e.involvedObject.name for e in events] == [name]
        assert "InsufficientInstanceCapacity" in (events[0].message or "")
        await cluster.scale("winworker", 0)
        await cluster.wait_for_machines(0, "the Machine to be deleted")
    leftovers = [t for t in asyncio.all_tasks() if (t.get_name() or "").startswith("machine")]
    assert leftovers == []
    await kube.delete(Namespace, namespace)


async def test_an_orphan_machine_matching_the_selector_is_adopted(cluster: Cluster) -> None:
    await cluster.create_user_data()
    body = machineset_body("winworker", cluster.namespace)
    orphan = {
        "metadata": {
            "name": "winworker-orphn",
            "namespace": cluster.namespace,
            "labels": body["spec"]["template"]["metadata"]["labels"],
        },
        "spec": body["spec"]["template"]["spec"],
    }
    await cluster.kube.create(machine_resource(orphan))
    ms = await cluster.create_machineset("winworker", replicas=1)

    async def adopted() -> bool:
        refs = (await cluster.machine("winworker-orphn"))["metadata"].get("ownerReferences") or []
        return [(r["uid"], r.get("controller")) for r in refs] == [(ms["metadata"]["uid"], True)]

    await eventually(adopted, "the MachineSet to adopt the orphan")
    await cluster.wait_for_phase("winworker-orphn", "Provisioned")
    # Adopted, it counts: no second Machine is created.
    machines = await cluster.machines()
    assert [m["metadata"]["name"] for m in machines] == ["winworker-orphn"]
