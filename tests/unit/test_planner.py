"""The service planner: which services stop for which changed file or definition, and the order.

The declared services are the real ones of each profile (``services.node_services``), so these
tests prove the contract's table (§5) end to end: a changed file stops exactly its holders and
the running dependents sc.exe would otherwise refuse to stop them before (1051).
"""

from __future__ import annotations

import pytest

from wmco import settings
from wmco.windows import answers, commands, layout, planner, services

A = planner.ActionKind
OVN = settings.NetworkProfile.OVN_HYBRID
HOSTPROCESS = settings.NetworkProfile.HOSTPROCESS


def declared(profile: settings.NetworkProfile = OVN) -> tuple[services.ServiceSpec, ...]:
    return services.node_services(
        services.NodeServiceOptions(
            network_profile=profile,
            node_name="win-1",
            node_ip="10.0.0.5",
            api_server_url="https://10.0.0.1:6443",
        )
    )


def observed_as(
    s: services.ServiceSpec,
    state: answers.ServiceState = answers.ServiceState.RUNNING,
    *,
    binary_path: str | None = None,
    start_type: answers.StartType = answers.StartType.AUTO,
) -> planner.ObservedService:
    config = answers.ServiceConfig(
        name=s.name,
        start_type=start_type,
        binary_path=s.command_line if binary_path is None else binary_path,
        dependencies=s.depends_on,
        display_name=s.name,
    )
    return planner.ObservedService(name=s.name, config=config, state=state)


def running(specs: tuple[services.ServiceSpec, ...]) -> dict[str, planner.ObservedService]:
    return {s.name: observed_as(s) for s in specs}


def kinds(actions: tuple[planner.ServiceAction, ...]) -> list[tuple[str, str]]:
    return [(action.kind.value, action.service) for action in actions]


def restarted(plan: planner.ServicePlan) -> set[str]:
    started = {action.service for action in plan.start}
    return {name for name in plan.stopped if name in started}


# --- Changed files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changed", "stops"),
    [
        # Leaves: only their own service.
        (layout.WINDOWS_EXPORTER_EXE, ["windows_exporter"]),
        (layout.KUBE_PROXY_EXE, ["kube-proxy"]),
        (layout.KUBE_PROXY_CONFIG, ["kube-proxy"]),
        # hybrid-overlay-node: kube-proxy depends on it, so it stops first.
        (layout.HYBRID_OVERLAY_EXE, ["kube-proxy", "hybrid-overlay-node"]),
        # The kubelet's files: its dependents (hybrid-overlay-node, then kube-proxy) stop first.
        (layout.KUBELET_EXE, ["kube-proxy", "hybrid-overlay-node", "kubelet"]),
        (layout.KUBELET_CONFIG, ["kube-proxy", "hybrid-overlay-node", "kubelet"]),
        (layout.BOOTSTRAP_CA, ["kube-proxy", "hybrid-overlay-node", "kubelet"]),
        # kube-log-runner is the image of both kubelet and kube-proxy.
        (layout.KUBE_LOG_RUNNER_EXE, ["kube-proxy", "hybrid-overlay-node", "kubelet"]),
        # containerd: everything that depends on it, not windows_exporter.
        (
            layout.CONTAINERD_SHIM_EXE,
            ["kube-proxy", "hybrid-overlay-node", "kubelet", "containerd"],
        ),
        (
            layout.CONTAINERD_CONFIG,
            ["kube-proxy", "hybrid-overlay-node", "kubelet", "containerd"],
        ),
    ],
)
def test_a_changed_file_stops_exactly_its_holders_and_their_dependents(
    changed: str, stops: list[str]
) -> None:
    specs = declared()
    plan = planner.plan_services(specs, running(specs), changed_files=[changed])
    assert list(plan.stopped) == stops
    assert restarted(plan) == set(stops)
    assert plan.apply == ()


@pytest.mark.parametrize(
    "live",
    [
        layout.KUBELET_CA,
        layout.BOOTSTRAP_KUBECONFIG,
        layout.OVN_CNI_CONFIG,
        layout.HNS_MODULE,
        "C:\\k\\cni\\win-overlay.exe",
        "C:\\k\\cni\\host-local.exe",
    ],
)
def test_live_files_stop_nothing(live: str) -> None:
    specs = declared()
    assert len(planner.plan_services(specs, running(specs), changed_files=[live])) == 0


def test_only_the_client_ca_differs_nothing_restarts() -> None:
    specs = declared()
    plan = planner.plan_services(
        specs, running(specs), changed_files=[layout.KUBELET_CA, layout.BOOTSTRAP_KUBECONFIG]
    )
    assert plan == planner.ServicePlan()


def test_paths_compare_without_case() -> None:
    specs = declared()
    plan = planner.plan_services(
        specs, running(specs), changed_files=["c:\\K\\WINDOWS_EXPORTER.EXE"]
    )
    assert plan.stopped == ("windows_exporter",)


def test_a_stopped_holder_is_not_stopped_but_started_after() -> None:
    specs = declared(HOSTPROCESS)
    observed = running(specs)
    observed["windows_exporter"] = observed_as(specs[-1], answers.ServiceState.STOPPED)
    plan = planner.plan_services(specs, observed, changed_files=[layout.WINDOWS_EXPORTER_EXE])
    assert plan.stop == ()
    assert kinds(plan.start) == [("start", "windows_exporter")]


def test_deferred_kube_proxy_is_stopped_for_its_files_but_not_started() -> None:
    specs = declared()
    plan = planner.plan_services(
        specs, running(specs), changed_files=[layout.KUBELET_EXE], deferred=["kube-proxy"]
    )
    assert list(plan.stopped) == ["kube-proxy", "hybrid-overlay-node", "kubelet"]
    assert kinds(plan.start) == [("start", "kubelet"), ("start", "hybrid-overlay-node")]


# --- Definitions ----------------------------------------------------------------------------------


def test_fresh_host_creates_then_starts_in_dependency_order() -> None:
    specs = declared(HOSTPROCESS)
    plan = planner.plan_services(list(reversed(specs)), {})
    assert plan.stop == ()
    # The given (reversed) order is kept where dependencies allow: kubelet after containerd.
    assert kinds(plan.apply) == [
        ("create", "windows_exporter"),
        ("describe", "windows_exporter"),
        ("set-recovery", "windows_exporter"),
        ("create", "containerd"),
        ("describe", "containerd"),
        ("set-recovery", "containerd"),
        ("create", "kubelet"),
        ("describe", "kubelet"),
        ("set-recovery", "kubelet"),
    ]
    assert kinds(plan.start) == [
        ("start", "windows_exporter"),
        ("start", "containerd"),
        ("start", "kubelet"),
    ]


def test_fresh_ovn_host_defers_kube_proxy() -> None:
    plan = planner.plan_services(declared(), {}, deferred=["kube-proxy"])
    assert ("create", "kube-proxy") not in kinds(plan.apply)
    assert [s for _, s in kinds(plan.start)] == [
        "containerd",
        "kubelet",
        "hybrid-overlay-node",
        "windows_exporter",
    ]


def test_converged_host_needs_no_steps() -> None:
    specs = declared()
    assert len(planner.plan_services(specs, running(specs))) == 0


def test_stopped_service_is_started_only() -> None:
    specs = declared()
    observed = running(specs)
    observed["kube-proxy"] = observed_as(specs[3], answers.ServiceState.STOPPED)
    assert kinds(planner.plan_services(specs, observed).actions) == [("start", "kube-proxy")]


def test_changed_kubelet_definition_stops_its_dependents_first_then_restarts_them() -> None:
    specs = declared()
    kubelet = specs[1]
    observed = running(specs)
    observed["kubelet"] = observed_as(kubelet, binary_path="C:\\k\\kubelet.exe --v=9")
    plan = planner.plan_services(specs, observed)
    assert kinds(plan.stop) == [
        ("stop", "kube-proxy"),
        ("stop", "hybrid-overlay-node"),
        ("stop", "kubelet"),
    ]
    assert kinds(plan.apply) == [("change", "kubelet"), ("describe", "kubelet")]
    assert kinds(plan.start) == [
        ("start", "kubelet"),
        ("start", "hybrid-overlay-node"),
        ("start", "kube-proxy"),
    ]
    assert plan.apply[0].command() == commands.change_service(
        "kubelet", kubelet.command_line, ("containerd",)
    )


def test_manual_start_type_counts_as_a_change() -> None:
    specs = declared(HOSTPROCESS)
    observed = running(specs)
    observed["containerd"] = observed_as(
        specs[0], answers.ServiceState.STOPPED, start_type=answers.StartType.DEMAND
    )
    plan = planner.plan_services(specs, observed)
    assert ("change", "containerd") in kinds(plan.apply)
    assert plan.stop == ()
    assert kinds(plan.start) == [("start", "containerd")]


def test_switching_to_hostprocess_removes_the_network_services() -> None:
    ovn = declared()
    plan = planner.plan_services(
        declared(HOSTPROCESS), running(ovn), remove=services.foreign_services(HOSTPROCESS)
    )
    assert kinds(plan.stop) == [("stop", "kube-proxy"), ("stop", "hybrid-overlay-node")]
    assert kinds(plan.apply) == [("delete", "hybrid-overlay-node"), ("delete", "kube-proxy")]
    assert plan.start == ()


def test_removal_plan_stops_dependents_first() -> None:
    specs = declared(HOSTPROCESS)
    observed = running(specs)
    observed["containerd"] = observed_as(specs[0], answers.ServiceState.STOPPED)
    observed["ghost"] = planner.ObservedService(name="ghost")
    assert kinds(tuple(planner.plan_service_removal(observed))) == [
        ("stop", "windows_exporter"),
        ("stop", "kubelet"),
        ("delete", "windows_exporter"),
        ("delete", "kubelet"),
        ("delete", "containerd"),
    ]


def test_actions_render_their_commands() -> None:
    kubelet = declared()[1]
    action = planner.ServiceAction(A.CREATE, "kubelet", kubelet)
    assert action.command() == commands.create_service(
        "kubelet", kubelet.command_line, ("containerd",)
    )
    describe = planner.ServiceAction(A.DESCRIBE, "kubelet", kubelet)
    assert describe.command() == commands.set_service_description("kubelet", "wmco managed kubelet")
    assert planner.ServiceAction(A.STOP, "kubelet").command() == commands.stop_service("kubelet")
    assert planner.ServiceAction(A.SET_RECOVERY, "x").command() == (
        commands.set_service_recovery("x")
    )
