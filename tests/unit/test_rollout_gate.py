"""The roll-out's pure parts: ``maxUnavailable`` as a number or a percentage, the gate's rules."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from lightkube.models.core_v1 import NodeCondition, NodeSpec, NodeStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node

from wmco import kube, names
from wmco.controllers import rollout
from wmco.controllers.rollout import NodeView, Verdict, decide
from wmco.runtime import informer as informer_mod
from wmco.settings import Settings, SettingsError

V1, V2 = "1.0+payload.a", "1.0+payload.b"


@pytest.mark.parametrize(
    ("raw", "total", "expected"),
    [
        ("1", 10, 1),
        ("3", 2, 3),
        ("25%", 8, 2),
        ("25%", 10, 2),  # rounded down, as the Deployment controller rounds maxUnavailable
        ("25%", 3, 1),  # never below 1: a roll-out always moves
        ("25%", 0, 1),
        ("100%", 7, 7),
        (" 50% ", 5, 2),
    ],
)
def test_max_unavailable_number_or_percentage(raw: str, total: int, expected: int) -> None:
    settings = Settings.from_env({"WMCO_MAX_UNAVAILABLE": raw})
    assert settings.max_unavailable_of(total) == expected


def test_max_unavailable_defaults_to_one() -> None:
    assert Settings().max_unavailable == 1
    assert Settings().max_unavailable_of(50) == 1


@pytest.mark.parametrize("raw", ["0", "-1", "0%", "101%", "x", "2.5", "25 %", "%", "1000%"])
def test_bad_max_unavailable_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="max_unavailable"):
        Settings.from_env({"WMCO_MAX_UNAVAILABLE": raw})


def test_max_unavailable_checked_when_built_directly() -> None:
    assert Settings(max_unavailable="30%").max_unavailable_of(10) == 3
    with pytest.raises(SettingsError, match="max_unavailable"):
        Settings(max_unavailable="thirty")
    with pytest.raises(SettingsError, match="max_unavailable"):
        Settings(max_unavailable=0)


def view(name: str, *, unavailable: bool = False, upgrading: bool = False) -> NodeView:
    return NodeView(name=name, managed=True, unavailable=unavailable, upgrading=upgrading)


ONE = Settings()
TWO = Settings(max_unavailable=2)


def test_first_node_goes_within_the_budget() -> None:
    assert decide("a", [view("a"), view("b"), view("c")], ONE).verdict is Verdict.GO


def test_a_node_in_flight_uses_the_budget() -> None:
    decision = decide("b", [view("a"), view("b"), view("c")], ONE, in_flight={"a"})
    assert decision.verdict is Verdict.WAIT
    assert decision.unavailable == ("a",)
    assert "1 of at most 1" in decision.describe("b")


def test_a_cordoned_or_not_ready_node_counts_against_the_budget() -> None:
    nodes = [view("a", unavailable=True), view("b"), view("c")]
    assert decide("b", nodes, ONE).verdict is Verdict.WAIT
    assert decide("b", nodes, TWO).verdict is Verdict.GO


def test_an_unavailable_node_itself_may_go() -> None:
    nodes = [view("a", unavailable=True), view("b", unavailable=True), view("c")]
    assert decide("a", nodes, ONE).verdict is Verdict.GO


def test_percentage_budget_of_the_managed_nodes() -> None:
    nodes = [view(n) for n in "abcdefgh"]
    unmanaged = NodeView(name="x", managed=False, unavailable=True, upgrading=False)
    quarter = Settings(max_unavailable="25%")  # 2 of 8
    assert decide("c", [*nodes, unmanaged], quarter, in_flight={"a"}).verdict is Verdict.GO
    assert decide("c", nodes, quarter, in_flight={"a", "b"}).verdict is Verdict.WAIT


def test_a_failed_node_halts_everyone_else_but_may_retry() -> None:
    nodes = [view("a", unavailable=True, upgrading=True), view("b"), view("c")]
    halted = decide("b", nodes, TWO)
    assert halted.verdict is Verdict.HALTED and halted.halted_at == "a"
    assert "stopped at node a" in halted.describe("b")
    assert decide("a", nodes, TWO).verdict is Verdict.GO


def test_a_failure_the_cache_does_not_show_yet_halts_too() -> None:
    nodes = [view("a"), view("b"), view("c")]
    assert decide("b", nodes, TWO, failed={"a"}).verdict is Verdict.HALTED
    assert decide("a", nodes, TWO, failed={"a"}).verdict is Verdict.GO


def test_a_labelled_node_in_flight_is_not_a_failure() -> None:
    nodes = [view("a", unavailable=True, upgrading=True), view("b"), view("c")]
    assert decide("b", nodes, TWO, in_flight={"a"}).verdict is Verdict.GO
    assert decide("b", nodes, ONE, in_flight={"a"}).verdict is Verdict.WAIT


def test_a_node_in_flight_is_not_taken_twice() -> None:
    assert decide("a", [view("a")], TWO, in_flight={"a"}).verdict is Verdict.WAIT


def node(
    *,
    version: str | None = V1,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    unschedulable: bool = False,
    ready: bool = True,
) -> Node:
    notes = dict(annotations or {})
    if version is not None:
        notes[names.VERSION_ANNOTATION] = version
    return Node(
        metadata=ObjectMeta(name="win-a", labels=labels or {}, annotations=notes),
        spec=NodeSpec(unschedulable=unschedulable),
        status=NodeStatus(
            conditions=[NodeCondition(type="Ready", status="True" if ready else "False")]
        ),
    )


def test_work_for_a_changed_version_configures() -> None:
    work = rollout.work_for(node(version=V1), V2)
    assert work == rollout.Work(reboot=False, configure=True, from_version=V1)


def test_no_work_for_an_up_to_date_or_new_node() -> None:
    assert rollout.work_for(node(version=V2), V2) is None
    assert rollout.work_for(None, V2) is None
    # A node that never finished its first configuration is not an upgrade.
    assert rollout.work_for(node(version=None), V2) is None


def test_reboot_required_reboots_without_reconfiguring() -> None:
    asked = node(version=V2, annotations={names.REBOOT_REQUIRED_ANNOTATION: "true"})
    assert rollout.work_for(asked, V2) == rollout.Work(True, False, V2)
    assert rollout.pending(asked)
    both = node(version=V1, annotations={names.REBOOT_REQUIRED_ANNOTATION: "true"})
    assert rollout.work_for(both, V2) == rollout.Work(True, True, V1)


def test_a_labelled_node_resumes_even_at_the_new_version() -> None:
    cut = node(version=V2, labels={names.UPGRADING_LABEL: names.TRUE}, unschedulable=True)
    assert rollout.pending(cut)
    assert rollout.work_for(cut, V2) == rollout.Work(False, True, V2)


def test_node_view_reads_cordon_readiness_and_label() -> None:
    assert NodeView.of(node()) == NodeView("win-a", True, False, False)
    assert NodeView.of(node(unschedulable=True)).unavailable
    assert NodeView.of(node(ready=False)).unavailable
    labelled = NodeView.of(node(labels={names.UPGRADING_LABEL: names.TRUE}))
    assert labelled.upgrading
    assert not NodeView.of(node(version=None)).managed


def named(name: str) -> Node:
    built = node()
    assert built.metadata is not None
    built.metadata.name = name
    return built


def gate_over(*nodes: Node, settings: Settings = TWO) -> rollout.Gate:
    informer: informer_mod.Informer[Node] = informer_mod.Informer(cast(kube.Client, None), Node)
    for item in nodes:
        informer.store.upsert(item)
    return rollout.Gate(cast(kube.Client, None), cast(kube.EventRecorder, None), settings, informer)


async def test_concurrent_claims_never_exceed_the_budget() -> None:
    gate = gate_over(*(named(f"win-{i}") for i in range(6)))
    decisions = await asyncio.gather(*(gate.claim(f"win-{i}") for i in range(6)))
    going = [d for d in decisions if d.verdict is Verdict.GO]
    assert len(going) == 2
    assert len(gate.in_flight) == 2


async def test_release_after_a_failure_halts_the_others_until_the_node_is_fixed() -> None:
    gate = gate_over(named("win-0"), named("win-1"))
    assert (await gate.claim("win-0")).verdict is Verdict.GO
    await gate.release("win-0", ok=False)
    assert (await gate.claim("win-1")).verdict is Verdict.HALTED
    assert (await gate.claim("win-0")).verdict is Verdict.GO  # its retry
    await gate.release("win-0", ok=True)
    assert (await gate.claim("win-1")).verdict is Verdict.GO


async def test_a_deleted_failed_node_no_longer_halts() -> None:
    gone = named("win-0")
    gate = gate_over(gone, named("win-1"))
    await gate.claim("win-0")
    await gate.release("win-0", ok=False)
    gate.nodes.store.remove(gone)
    assert (await gate.claim("win-1")).verdict is Verdict.GO
