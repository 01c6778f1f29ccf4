"""The declared Windows services per network profile, their held files, the kubelet's flags/config."""

from __future__ import annotations

import json

import pytest

from wmco import names, settings
from wmco.windows import commands, kubelet, layout, services

OVN = settings.NetworkProfile.OVN_HYBRID
HOSTPROCESS = settings.NetworkProfile.HOSTPROCESS


def options(**overrides: object) -> services.NodeServiceOptions:
    values: dict[str, object] = {
        "network_profile": OVN,
        "node_name": "win-1",
        "node_ip": "10.0.0.5",
        "api_server_url": "https://api-int.example:6443",
    }
    values.update(overrides)
    return services.NodeServiceOptions(**values)  # type: ignore[arg-type]


def by_name(specs: tuple[services.ServiceSpec, ...]) -> dict[str, services.ServiceSpec]:
    return {spec.name: spec for spec in specs}


def test_ovn_hybrid_runs_hybrid_overlay_and_kube_proxy_in_dependency_order() -> None:
    specs = services.node_services(options())
    assert [spec.name for spec in specs] == [
        "containerd",
        "kubelet",
        "hybrid-overlay-node",
        "kube-proxy",
        "windows_exporter",
    ]
    named = by_name(specs)
    assert named["kubelet"].depends_on == ("containerd",)
    assert named["hybrid-overlay-node"].depends_on == ("kubelet",)
    assert named["kube-proxy"].depends_on == ("hybrid-overlay-node",)
    assert all(spec.description == f"wmco managed {spec.name}" for spec in specs)


def test_hostprocess_runs_neither_network_service() -> None:
    specs = services.node_services(options(network_profile=HOSTPROCESS, api_server_url=None))
    assert [spec.name for spec in specs] == ["containerd", "kubelet", "windows_exporter"]
    assert services.foreign_services(HOSTPROCESS) == ("hybrid-overlay-node", "kube-proxy")
    assert services.foreign_services(OVN) == ()


def test_auto_is_refused_below_start_up() -> None:
    with pytest.raises(services.ServiceSpecError, match="resolved"):
        services.node_services(options(network_profile=settings.NetworkProfile.AUTO))


def test_contract_command_lines() -> None:
    named = by_name(services.node_services(options()))
    assert named["kube-proxy"].command_line == (
        "C:\\k\\kube-log-runner.exe -log-file=C:\\var\\log\\kube-proxy\\kube-proxy.log "
        "C:\\k\\kube-proxy.exe --config=C:\\k\\kube-proxy.conf --windows-service --v=2"
    )
    assert named["hybrid-overlay-node"].command_line == (
        "C:\\k\\hybrid-overlay-node.exe --node win-1 --bootstrap-kubeconfig=C:\\k\\kubeconfig "
        "--cert-dir=C:\\k\\cni\\config --cert-duration=24h --windows-service "
        "--logfile C:\\var\\log\\hybrid-overlay\\hybrid-overlay.log "
        "--k8s-apiserver=https://api-int.example:6443 --k8s-cacert C:\\k\\bootstrap-ca.crt"
    )
    assert named["windows_exporter"].command_line == (
        "C:\\k\\windows_exporter.exe --collectors.enabled "
        "cpu,logical_disk,net,os,service,system,container,memory,cpu_info "
        "--web.listen-address=:9182 --log.file C:\\var\\log\\windows_exporter\\windows_exporter.log "
        "--web.config.file C:\\k\\windows_exporter\\web-config.yml"
    )
    assert named["containerd"].command_line == (
        "C:\\k\\containerd\\containerd.exe --config C:\\k\\containerd\\containerd_conf.toml "
        "--log-file C:\\var\\log\\containerd\\containerd.log --run-service --log-level info"
    )


def test_held_files_are_the_contract_table() -> None:
    named = by_name(services.node_services(options()))
    held = {name: {p.lower() for p in spec.held_files} for name, spec in named.items()}
    assert held == {
        "containerd": {
            "c:\\k\\containerd\\containerd.exe",
            "c:\\k\\containerd\\containerd-shim-runhcs-v1.exe",
            "c:\\k\\containerd\\containerd_conf.toml",
        },
        "kubelet": {
            "c:\\k\\kubelet.exe",
            "c:\\k\\kube-log-runner.exe",
            "c:\\k\\kubelet.conf",
            "c:\\k\\bootstrap-ca.crt",
        },
        "hybrid-overlay-node": {"c:\\k\\hybrid-overlay-node.exe"},
        "kube-proxy": {
            "c:\\k\\kube-proxy.exe",
            "c:\\k\\kube-log-runner.exe",
            "c:\\k\\kube-proxy.conf",
        },
        "windows_exporter": {
            "c:\\k\\windows_exporter.exe",
            "c:\\k\\windows_exporter\\web-config.yml",
            "c:\\k\\windows_exporter\\tls.crt",
            "c:\\k\\windows_exporter\\tls.key",
        },
    }
    live = (
        layout.KUBELET_CA,
        layout.BOOTSTRAP_KUBECONFIG,
        layout.OVN_CNI_CONFIG,
        layout.HNS_MODULE,
    )
    assert not any(path.lower() in paths for path in live for paths in held.values())


def test_hybrid_overlay_needs_the_api_server_and_node_name() -> None:
    with pytest.raises(services.ServiceSpecError, match="API server"):
        services.node_services(options(api_server_url=None))
    with pytest.raises(services.ServiceSpecError, match="node name"):
        services.node_services(options(node_name=None))


def test_kubelet_command_line() -> None:
    kubelet_spec = by_name(services.node_services(options()))["kubelet"]
    assert kubelet_spec.command_line == (
        "C:\\k\\kube-log-runner.exe -log-file=C:\\var\\log\\kubelet\\kubelet.log "
        "C:\\k\\kubelet.exe --config=C:\\k\\kubelet.conf "
        "--bootstrap-kubeconfig=C:\\k\\bootstrap-kubeconfig --kubeconfig=C:\\k\\kubeconfig "
        "--cert-dir=C:\\var\\lib\\kubelet\\pki --windows-service "
        "--node-labels=node.openshift.io/os_id=Windows "
        "--windows-priorityclass=ABOVE_NORMAL_PRIORITY_CLASS "
        "--container-runtime-endpoint=npipe://./pipe/containerd-containerd "
        "--hostname-override=win-1 --node-ip=10.0.0.5 --v=2"
    )
    assert kubelet_spec.wrapped_binary == "C:\\k\\kubelet.exe"


def test_kubelet_without_log_runner_override_or_ip_and_debug() -> None:
    kubelet_spec = by_name(
        services.node_services(
            options(
                network_profile=HOSTPROCESS,
                node_name=None,
                node_ip=None,
                log_runner=False,
                debug=True,
            )
        )
    )["kubelet"]
    assert kubelet_spec.binary == "C:\\k\\kubelet.exe"
    assert kubelet_spec.wrapped_binary is None
    assert not any(
        arg.startswith(("--hostname-override", "--node-ip")) for arg in kubelet_spec.args
    )
    assert kubelet_spec.args[-1] == "--v=4"


def test_every_declared_command_line_is_accepted_by_the_builder() -> None:
    for profile in (OVN, HOSTPROCESS):
        for spec in services.node_services(options(network_profile=profile)):
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


def spec(name: str, *deps: str) -> services.ServiceSpec:
    return services.ServiceSpec(name=name, binary=f"C:\\k\\{name}.exe", depends_on=tuple(deps))


def test_start_order_rejects_cycles_and_duplicates() -> None:
    with pytest.raises(services.ServiceSpecError, match="cycle"):
        services.start_order([spec("a", "b"), spec("b", "a")])
    with pytest.raises(services.ServiceSpecError, match="twice"):
        services.start_order([spec("a"), spec("a")])


def test_start_order_ignores_dependencies_outside_the_list() -> None:
    assert services.start_order([spec("a", "Tcpip"), spec("b", "a")]) == ["a", "b"]


# --- Kubelet configuration ----------------------------------------------------------------------


def test_kubelet_config() -> None:
    config = kubelet.kubelet_config(
        kubelet.KubeletConfigInputs(cluster_dns=("172.30.0.10",), provider_id="aws:///x/i-1")
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


def test_kubelet_config_json_is_one_line() -> None:
    text = kubelet.kubelet_config_json(kubelet.KubeletConfigInputs(cluster_dns=("10.96.0.10",)))
    assert "\n" not in text
    assert json.loads(text)["clusterDNS"] == ["10.96.0.10"]
    assert "provider" not in text


def test_taint_comes_from_names() -> None:
    taint = kubelet.kubelet_config(kubelet.KubeletConfigInputs(cluster_dns=()))[
        "registerWithTaints"
    ][0]
    assert (taint["key"], taint["value"], taint["effect"]) == (
        names.WINDOWS_TAINT_KEY,
        names.WINDOWS_TAINT_VALUE,
        names.WINDOWS_TAINT_EFFECT,
    )


def test_profile_directories_and_cni_dirs() -> None:
    assert layout.cni_dirs(OVN) == layout.CniDirs("C:\\k\\cni", "C:\\k\\cni\\config")
    assert layout.cni_dirs(HOSTPROCESS) == layout.CniDirs(
        "C:\\opt\\cni\\bin", "C:\\etc\\cni\\net.d"
    )
    with pytest.raises(ValueError, match="resolved"):
        layout.cni_dirs(settings.NetworkProfile.AUTO)
    assert "C:\\k\\cni\\config" in layout.required_directories(OVN)
    assert "C:\\Temp" in layout.required_directories(OVN)
    assert "C:\\etc\\cni\\net.d" in layout.required_directories(HOSTPROCESS)
    assert "C:\\k\\cni\\config" not in layout.required_directories(HOSTPROCESS)
    assert "C:\\Temp" not in layout.REMOVABLE_DIRECTORIES
