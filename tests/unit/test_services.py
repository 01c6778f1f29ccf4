"""The declared Windows services, the kubelet's command line and config, and the service plan."""

from __future__ import annotations

import json

import pytest

from wmco import names, settings
from wmco.windows import commands, services

A = services.ActionKind


def options(**overrides: object) -> services.NodeServiceOptions:
    values: dict[str, object] = {"node_name": "win-1", "node_ip": "10.0.0.5"}
    values.update(overrides)
    return services.NodeServiceOptions(**values)  # type: ignore[arg-type]


def by_name(specs: tuple[services.ServiceSpec, ...]) -> dict[str, services.ServiceSpec]:
    return {spec.name: spec for spec in specs}


def test_default_profile_services_in_start_order() -> None:
    specs = services.node_services(options())
    assert [spec.name for spec in specs] == [
        "containerd",
        "kubelet",
        "kube-proxy",
        "windows_exporter",
    ]
    named = by_name(specs)
    assert named["kubelet"].depends_on == ("containerd",)
    assert named["kube-proxy"].depends_on == ("kubelet",)
    assert all(spec.description == f"wmco managed {spec.name}" for spec in specs)


def test_hybrid_overlay_profile_inserts_its_daemon_before_kube_proxy() -> None:
    specs = services.node_services(
        options(
            network_profile=settings.NetworkProfile.HYBRID_OVERLAY,
            api_server_url="https://api-int.example:6443",
        )
    )
    names_in_order = [spec.name for spec in specs]
    assert names_in_order.index("hybrid-overlay-node") < names_in_order.index("kube-proxy")
    named = by_name(specs)
    assert named["kube-proxy"].depends_on == ("hybrid-overlay-node",)
    assert "--k8s-apiserver=https://api-int.example:6443" in named["hybrid-overlay-node"].args
    assert named["hybrid-overlay-node"].args[:2] == ("--node", "win-1")


def test_hybrid_overlay_needs_the_api_server() -> None:
    with pytest.raises(services.ServiceSpecError, match="API server"):
        services.node_services(options(network_profile=settings.NetworkProfile.HYBRID_OVERLAY))


def test_kubelet_command_line() -> None:
    kubelet = by_name(services.node_services(options()))["kubelet"]
    assert kubelet.command_line == (
        "C:\\k\\kube-log-runner.exe -log-file=C:\\var\\log\\kubelet\\kubelet.log "
        "C:\\k\\kubelet.exe --config=C:\\k\\kubelet.conf "
        "--bootstrap-kubeconfig=C:\\k\\bootstrap-kubeconfig --kubeconfig=C:\\k\\kubeconfig "
        "--cert-dir=C:\\var\\lib\\kubelet\\pki --windows-service "
        "--node-labels=node.openshift.io/os_id=Windows "
        "--windows-priorityclass=ABOVE_NORMAL_PRIORITY_CLASS "
        "--container-runtime-endpoint=npipe://./pipe/containerd-containerd "
        "--hostname-override=win-1 --node-ip=10.0.0.5 --v=2"
    )


def test_kubelet_without_log_runner_override_or_ip_and_debug() -> None:
    kubelet = by_name(
        services.node_services(options(node_name=None, node_ip=None, log_runner=False, debug=True))
    )["kubelet"]
    assert kubelet.binary == "C:\\k\\kubelet.exe"
    assert not any(arg.startswith(("--hostname-override", "--node-ip")) for arg in kubelet.args)
    assert kubelet.args[-1] == "--v=4"


def test_every_declared_command_line_is_accepted_by_the_builder() -> None:
    for profile in settings.NetworkProfile:
        specs = services.node_services(
            options(network_profile=profile, api_server_url="https://10.0.0.1:6443")
        )
        for spec in specs:
            commands.create_service(spec.name, spec.command_line, spec.depends_on)


@pytest.mark.parametrize("bad", ["a b", 'x"y', ""])
def test_spec_arguments_must_be_single_tokens(bad: str) -> None:
    with pytest.raises(services.ServiceSpecError):
        services.ServiceSpec(name="x", binary="C:\\k\\x.exe", args=(bad,))


def test_spec_rejects_bad_names_paths_and_self_dependency() -> None:
    with pytest.raises(services.ServiceSpecError):
        services.ServiceSpec(name="x;y", binary="C:\\k\\x.exe")
    with pytest.raises(services.ServiceSpecError):
        services.ServiceSpec(name="x", binary="x.exe")
    with pytest.raises(services.ServiceSpecError, match="itself"):
        services.ServiceSpec(name="x", binary="C:\\k\\x.exe", depends_on=("x",))


def test_node_name_with_whitespace_is_refused() -> None:
    with pytest.raises(services.ServiceSpecError):
        services.node_services(options(node_name="win 1"))


def test_kubelet_config() -> None:
    config = services.kubelet_config(
        services.KubeletConfigInputs(cluster_dns=("172.30.0.10",), provider_id="aws:///x/i-1")
    )
    assert config["registerWithTaints"] == [
        {"key": "os", "value": "Windows", "effect": "NoSchedule"}
    ]
    assert config["clusterDNS"] == ["172.30.0.10"]
    assert config["authentication"]["x509"]["clientCAFile"] == "C:\\k\\kubelet-ca.crt"
    assert config["rotateCertificates"] is True
    assert config["serverTLSBootstrap"] is True
    assert config["containerRuntimeEndpoint"] == "npipe://./pipe/containerd-containerd"
    assert config["resolvConf"] == ""
    assert config["providerID"] == "aws:///x/i-1"
    assert config["kind"] == "KubeletConfiguration"


def test_kubelet_config_json_is_one_line_and_fits_a_small_file_write() -> None:
    text = services.kubelet_config_json(services.KubeletConfigInputs(cluster_dns=("10.96.0.10",)))
    assert "\n" not in text
    assert json.loads(text)["clusterDNS"] == ["10.96.0.10"]
    assert "provider" not in text
    commands.write_small_file(services.KUBELET_CONFIG, text)


def test_taint_comes_from_names() -> None:
    taint = services.kubelet_config(services.KubeletConfigInputs(cluster_dns=()))[
        "registerWithTaints"
    ][0]
    assert (taint["key"], taint["value"], taint["effect"]) == (
        names.WINDOWS_TAINT_KEY,
        names.WINDOWS_TAINT_VALUE,
        names.WINDOWS_TAINT_EFFECT,
    )


# --- Planning ----------------------------------------------------------------------------------


def spec(name: str, *deps: str, arg: str = "--v=2") -> services.ServiceSpec:
    return services.ServiceSpec(
        name=name, binary=f"C:\\k\\{name}.exe", args=(arg,), depends_on=tuple(deps)
    )


CONTAINERD = spec("containerd")
KUBELET = spec("kubelet", "containerd")
PROXY = spec("kube-proxy", "kubelet")
DESIRED = [CONTAINERD, KUBELET, PROXY]


def observed_as(
    s: services.ServiceSpec,
    state: commands.ServiceState = commands.ServiceState.RUNNING,
    *,
    binary_path: str | None = None,
    start_type: commands.StartType = commands.StartType.AUTO,
) -> services.ObservedService:
    config = commands.ServiceConfig(
        name=s.name,
        start_type=start_type,
        binary_path=s.command_line if binary_path is None else binary_path,
        dependencies=s.depends_on,
        display_name=s.name,
    )
    return services.ObservedService(name=s.name, config=config, state=state)


def kinds(plan: list[services.ServiceAction]) -> list[tuple[str, str]]:
    return [(action.kind.value, action.service) for action in plan]


def test_fresh_host_creates_then_starts_in_dependency_order() -> None:
    plan = services.plan_service_changes(list(reversed(DESIRED)), {})
    assert kinds(plan) == [
        ("create", "containerd"),
        ("describe", "containerd"),
        ("set-recovery", "containerd"),
        ("create", "kubelet"),
        ("describe", "kubelet"),
        ("set-recovery", "kubelet"),
        ("create", "kube-proxy"),
        ("describe", "kube-proxy"),
        ("set-recovery", "kube-proxy"),
        ("start", "containerd"),
        ("start", "kubelet"),
        ("start", "kube-proxy"),
    ]


def test_converged_host_needs_no_steps() -> None:
    observed = {s.name: observed_as(s) for s in DESIRED}
    assert services.plan_service_changes(DESIRED, observed) == []


def test_stopped_service_is_started_only() -> None:
    observed = {s.name: observed_as(s) for s in DESIRED}
    observed["kube-proxy"] = observed_as(PROXY, commands.ServiceState.STOPPED)
    assert kinds(services.plan_service_changes(DESIRED, observed)) == [("start", "kube-proxy")]


def test_changed_kubelet_stops_its_dependents_first_then_restarts_them() -> None:
    observed = {s.name: observed_as(s) for s in DESIRED}
    observed["kubelet"] = observed_as(KUBELET, binary_path="C:\\k\\kubelet.exe --v=9")
    plan = services.plan_service_changes(DESIRED, observed)
    assert kinds(plan) == [
        ("stop", "kube-proxy"),
        ("stop", "kubelet"),
        ("change", "kubelet"),
        ("describe", "kubelet"),
        ("start", "kubelet"),
        ("start", "kube-proxy"),
    ]
    assert plan[2].command() == commands.change_service(
        "kubelet", KUBELET.command_line, ("containerd",)
    )


def test_manual_start_type_counts_as_a_change() -> None:
    observed = {s.name: observed_as(s) for s in DESIRED}
    observed["containerd"] = observed_as(
        CONTAINERD, commands.ServiceState.STOPPED, start_type=commands.StartType.DEMAND
    )
    plan = kinds(services.plan_service_changes(DESIRED, observed))
    assert ("change", "containerd") in plan
    assert ("stop", "containerd") not in plan  # it was not running
    assert plan[-1] == ("start", "containerd")


def test_services_to_remove_are_stopped_and_deleted() -> None:
    hybrid = spec("hybrid-overlay-node", "kubelet")
    proxy_on_hybrid = spec("kube-proxy", "hybrid-overlay-node")
    observed = {s.name: observed_as(s) for s in (CONTAINERD, KUBELET, hybrid, proxy_on_hybrid)}
    plan = services.plan_service_changes(DESIRED, observed, remove=["hybrid-overlay-node"])
    assert kinds(plan) == [
        ("stop", "kube-proxy"),
        ("stop", "hybrid-overlay-node"),
        ("delete", "hybrid-overlay-node"),
        ("change", "kube-proxy"),
        ("describe", "kube-proxy"),
        ("start", "kube-proxy"),
    ]


def test_removal_plan_stops_dependents_first() -> None:
    observed = {s.name: observed_as(s) for s in DESIRED}
    observed["containerd"] = observed_as(CONTAINERD, commands.ServiceState.STOPPED)
    observed["ghost"] = services.ObservedService(name="ghost")
    plan = services.plan_service_removal(observed)
    assert kinds(plan) == [
        ("stop", "kube-proxy"),
        ("stop", "kubelet"),
        ("delete", "kube-proxy"),
        ("delete", "kubelet"),
        ("delete", "containerd"),
    ]


def test_actions_render_their_commands() -> None:
    action = services.ServiceAction(A.CREATE, "kubelet", KUBELET)
    assert action.command() == commands.create_service(
        "kubelet", KUBELET.command_line, ("containerd",)
    )
    describe = services.ServiceAction(A.DESCRIBE, "kubelet", KUBELET)
    assert describe.command() == commands.set_service_description("kubelet", "wmco managed kubelet")
    assert services.ServiceAction(A.STOP, "kubelet").command() == commands.stop_service("kubelet")
    assert services.ServiceAction(A.SET_RECOVERY, "x").command() == (
        commands.set_service_recovery("x")
    )


def test_start_order_rejects_cycles_and_duplicates() -> None:
    with pytest.raises(services.ServiceSpecError, match="cycle"):
        services.start_order([spec("a", "b"), spec("b", "a")])
    with pytest.raises(services.ServiceSpecError, match="twice"):
        services.start_order([spec("a"), spec("a")])


def test_start_order_ignores_dependencies_outside_the_list() -> None:
    assert services.start_order([spec("a", "Tcpip"), spec("b", "a")]) == ["a", "b"]
