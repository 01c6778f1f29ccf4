"""Which RuntimeClasses the operator keeps for a set of nodes, and the diff against what exists.

Pure decisions of ``wmco.cluster.runtimeclasses``: the managed nodes and their builds, the wanted
RuntimeClasses with and without Hyper-V (and which older builds a Hyper-V host may run), what to
do about an existing object (create, restore, recreate, delete, leave a foreign one alone), and
that every name it can produce is one RBAC lets it write.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lightkube.models.core_v1 import Toleration
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.node_v1 import Overhead, Scheduling
from lightkube.resources.core_v1 import Node
from lightkube.resources.node_v1 import RuntimeClass

from wmco import names
from wmco.cluster import runtimeclasses as rc

MANAGED = {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE}
TOLERATION = ("os", "Equal", "Windows", "NoSchedule")


def windows_node(
    name: str,
    build: str | None = "10.0.20348",
    *,
    managed: bool = True,
    hyperv: bool = False,
    os: str = "windows",
) -> Node:
    labels = {names.OS_LABEL: os}
    if build is not None:
        labels[names.WINDOWS_BUILD_LABEL] = build
    if hyperv:
        labels[names.HYPERV_LABEL] = "true"
    annotations = {names.VERSION_ANNOTATION: "1.0+payload.x"} if managed else {}
    return Node(metadata=ObjectMeta(name=name, labels=labels, annotations=annotations))


def facts(*nodes: Node) -> list[rc.ManagedNode]:
    return rc.managed_nodes(nodes)


def test_parse_build_reads_the_kubelet_label() -> None:
    assert rc.parse_build("10.0.17763") == 17763
    assert rc.parse_build("10.0.26100") == 26100
    for bad in (None, "", "20348", "10.0", "10.0.x", "10.0.20348.1"):
        assert rc.parse_build(bad) is None


def test_only_windows_nodes_the_operator_configured_count() -> None:
    upgrading = windows_node("c", managed=False)
    assert upgrading.metadata is not None and upgrading.metadata.annotations is not None
    upgrading.metadata.annotations[names.DESIRED_VERSION_ANNOTATION] = "2.0"
    found = facts(
        windows_node("a"),
        windows_node("b", managed=False),
        upgrading,
        windows_node("d", os="linux"),
        windows_node("e", "10.0.17763", hyperv=True),
    )
    assert found == [
        rc.ManagedNode("a", 20348, False),
        rc.ManagedNode("c", 20348, False),
        rc.ManagedNode("e", 17763, True),
    ]


def test_one_process_runtime_class_per_build_present() -> None:
    wanted = rc.desired(
        facts(windows_node("a"), windows_node("b"), windows_node("c", "10.0.17763")),
        hyperv=False,
    )
    assert sorted(wanted) == ["windows-2019", "windows-2022"]
    assert wanted["windows-2022"] == rc.Desired(
        name="windows-2022",
        handler="runhcs-wcow-process",
        node_selector=(
            ("kubernetes.io/os", "windows"),
            ("node.kubernetes.io/windows-build", "10.0.20348"),
        ),
        tolerations=(TOLERATION,),
        overhead=(),
    )
    assert dict(wanted["windows-2019"].node_selector)[names.WINDOWS_BUILD_LABEL] == "10.0.17763"


def test_no_nodes_no_runtime_classes_and_unknown_builds_get_none() -> None:
    assert rc.desired([], hyperv=True) == {}
    assert rc.desired(facts(windows_node("a", "10.0.25398", hyperv=True)), hyperv=True) == {}
    assert rc.desired(facts(windows_node("a", None)), hyperv=False) == {}


def test_hyperv_runtime_classes_follow_the_labelled_nodes_and_the_build_rules() -> None:
    nodes = facts(
        windows_node("p", "10.0.17763"),
        windows_node("h22", "10.0.20348", hyperv=True),
        windows_node("h25", "10.0.26100", hyperv=True),
    )
    wanted = rc.desired(nodes, hyperv=True)
    assert sorted(wanted) == [
        "windows-2019",
        "windows-2019-hyperv-on-2022",
        "windows-2019-hyperv-on-2025",
        "windows-2022",
        "windows-2022-hyperv",
        "windows-2022-hyperv-on-2025",
        "windows-2025",
        "windows-2025-hyperv",
    ]
    same = wanted["windows-2022-hyperv"]
    assert same.handler == "runhcs-wcow-hypervisor"
    assert dict(same.node_selector) == {
        "kubernetes.io/os": "windows",
        "node.kubernetes.io/windows-build": "10.0.20348",
        names.HYPERV_LABEL: "true",
    }
    assert same.overhead == (("memory", "1Gi"),)
    assert same.tolerations == (TOLERATION,)
    older = wanted["windows-2019-hyperv-on-2025"]
    assert older.handler == "runhcs-wcow-hypervisor-17763"
    assert dict(older.node_selector)["node.kubernetes.io/windows-build"] == "10.0.26100"
    assert older.overhead == rc.HYPERV_OVERHEAD
    # A 2019 host runs nothing older, and no class lets a newer container onto an older host.
    assert "windows-2019-hyperv" not in wanted
    assert not any(name.startswith("windows-2025-hyperv-on") for name in wanted)


def test_hyperv_off_means_no_hyperv_runtime_classes_whatever_the_labels() -> None:
    wanted = rc.desired(facts(windows_node("h", hyperv=True)), hyperv=False)
    assert sorted(wanted) == ["windows-2022"]


def test_the_handlers_a_hyperv_host_defines() -> None:
    assert rc.older_builds(17763) == ()
    assert rc.older_builds(26100) == (17763, 20348)
    assert rc.hyperv_handlers(17763) == ("runhcs-wcow-hypervisor",)
    assert rc.hyperv_handlers(20348) == ("runhcs-wcow-hypervisor", "runhcs-wcow-hypervisor-17763")
    # Every handler a Hyper-V RuntimeClass names exists on the hosts it selects.
    nodes = facts(
        windows_node("h19", "10.0.17763", hyperv=True),
        windows_node("h22", "10.0.20348", hyperv=True),
        windows_node("h25", "10.0.26100", hyperv=True),
    )
    for want in rc.desired(nodes, hyperv=True).values():
        build = rc.parse_build(dict(want.node_selector)[names.WINDOWS_BUILD_LABEL])
        assert build is not None
        handlers = rc.hyperv_handlers(build) if want.overhead else (names.PROCESS_HANDLER,)
        assert want.handler in handlers, want.name


def test_every_possible_name_is_one_rbac_lets_the_operator_write() -> None:
    deploy = Path(__file__).resolve().parents[2] / "deploy" / "base" / "rbac-runtimeclasses.yaml"
    granted: set[str] = set()
    for document in yaml.safe_load_all(deploy.read_text()):
        for rule in (document or {}).get("rules", []):
            if "runtimeclasses" in rule.get("resources", []) and "delete" in rule["verbs"]:
                granted |= set(rule.get("resourceNames", []))
    assert set(rc.all_names()) == granted
    every = facts(
        windows_node("a", "10.0.17763", hyperv=True),
        windows_node("b", "10.0.20348", hyperv=True),
        windows_node("c", "10.0.26100", hyperv=True),
    )
    assert set(rc.desired(every, hyperv=True)) | {"windows-2019-hyperv"} == set(rc.all_names())


# --- The diff against what exists -----------------------------------------------------------------


def existing(want: rc.Desired, *, managed: bool = True, **changes: object) -> RuntimeClass:
    obj = rc.manifest(want)
    assert obj.metadata is not None
    obj.metadata.labels = dict(MANAGED) if managed else {"team": "windows"}
    obj.metadata.resourceVersion = "42"
    for key, value in changes.items():
        setattr(obj, key, value)
    return obj


WANT = rc.Desired(
    name="windows-2022-hyperv",
    handler="runhcs-wcow-hypervisor",
    node_selector=(
        ("kubernetes.io/os", "windows"),
        ("node.kubernetes.io/windows-build", "10.0.20348"),
    ),
    overhead=rc.HYPERV_OVERHEAD,
)


def test_manifest_round_trips_and_is_labelled_as_the_operators() -> None:
    obj = rc.manifest(WANT)
    assert obj.metadata is not None and obj.metadata.labels == MANAGED
    assert rc.is_managed(obj)
    assert rc.observed(obj) == WANT
    assert obj.overhead is not None and obj.overhead.podFixed == {"memory": "1Gi"}
    assert rc.manifest(rc.Desired("windows-2022", "runhcs-wcow-process", ())).overhead is None


def test_missing_is_created_and_unwanted_absent_is_left() -> None:
    assert rc.decide(WANT, None) == rc.Decision(rc.Action.CREATE)
    assert rc.decide(None, None) == rc.Decision(rc.Action.NONE)


def test_ours_and_unchanged_is_left_ours_and_unwanted_is_deleted() -> None:
    assert rc.decide(WANT, existing(WANT)) == rc.Decision(rc.Action.NONE)
    assert rc.decide(None, existing(WANT)) == rc.Decision(rc.Action.DELETE)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scheduling": Scheduling(nodeSelector={"kubernetes.io/os": "windows"})}, "scheduling"),
        ({"overhead": Overhead(podFixed={"memory": "64Mi"})}, "overhead"),
        ({"overhead": None}, "overhead"),
    ],
)
def test_ours_and_edited_is_restored(change: dict[str, object], field: str) -> None:
    decision = rc.decide(WANT, existing(WANT, **change))
    assert decision.action is rc.Action.RESTORE
    assert decision.changed and all(name.startswith(field) for name in decision.changed)


def test_a_changed_toleration_is_an_edit_too() -> None:
    edited = existing(
        WANT,
        scheduling=Scheduling(
            nodeSelector=dict(WANT.node_selector),
            tolerations=[Toleration(key="os", operator="Exists", effect="NoSchedule")],
        ),
    )
    assert rc.decide(WANT, edited) == rc.Decision(rc.Action.RESTORE, ("scheduling.tolerations",))


def test_ours_with_another_handler_is_recreated() -> None:
    decision = rc.decide(WANT, existing(WANT, handler="runhcs-wcow-process"))
    assert decision == rc.Decision(rc.Action.RECREATE, ("handler",))


def test_a_foreign_runtime_class_is_never_changed() -> None:
    mine = existing(WANT, managed=False, handler="somebody-elses")
    assert rc.decide(WANT, mine) == rc.Decision(rc.Action.CONFLICT)
    assert rc.decide(None, mine) == rc.Decision(rc.Action.NONE)
    assert not rc.is_managed(RuntimeClass(metadata=ObjectMeta(name="x"), handler="h"))


def test_the_restoring_object_keeps_what_others_added_and_is_conditional() -> None:
    edited = existing(WANT, overhead=None)
    assert edited.metadata is not None
    edited.metadata.labels = {**MANAGED, "team": "windows"}
    edited.metadata.annotations = {"note": "kept"}
    restored = rc.manifest(WANT, edited)
    assert restored.metadata is not None
    assert restored.metadata.resourceVersion == "42"
    assert restored.metadata.labels == {**MANAGED, "team": "windows"}
    assert restored.metadata.annotations == {"note": "kept"}
    assert rc.observed(restored) == WANT
