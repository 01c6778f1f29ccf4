"""Every command form of docs/windows-surface.md and of contract §3 (HNS), exactly.

A form is the contract with the simulated host: each is compared with its literal string, and the
builders refuse values they cannot quote safely (nothing is sent then).
"""

from __future__ import annotations

import pytest

from wmco.windows import commands, quoting

EXACT_FORMS = [
    (
        commands.make_directories(["C:\\k\\cni"]),
        "New-Item -ItemType Directory -Force -Path 'C:\\k\\cni' | Out-Null",
    ),
    (
        commands.file_hash("C:\\k\\kubelet.exe"),
        "(Get-FileHash -LiteralPath 'C:\\k\\kubelet.exe' -Algorithm SHA256).Hash",
    ),
    (
        commands.remove_path("C:\\var\\lib\\cni"),
        "if (Test-Path -LiteralPath 'C:\\var\\lib\\cni') "
        "{ Remove-Item -LiteralPath 'C:\\var\\lib\\cni' -Recurse -Force }",
    ),
    (commands.service_state("kubelet"), "sc.exe query 'kubelet'; exit $LASTEXITCODE"),
    (
        commands.create_service("kubelet", "C:\\k\\kubelet.exe --v=2", ["containerd"]),
        "sc.exe create 'kubelet' binPath= 'C:\\k\\kubelet.exe --v=2' start= auto "
        "depend= 'containerd'; exit $LASTEXITCODE",
    ),
    (
        commands.create_service("containerd", "C:\\k\\containerd\\containerd.exe"),
        "sc.exe create 'containerd' binPath= 'C:\\k\\containerd\\containerd.exe' start= auto; "
        "exit $LASTEXITCODE",
    ),
    (
        commands.change_service("kube-proxy", "C:\\k\\kube-proxy.exe", ["kubelet", "x"]),
        "sc.exe config 'kube-proxy' binPath= 'C:\\k\\kube-proxy.exe' start= auto "
        "depend= 'kubelet/x'; exit $LASTEXITCODE",
    ),
    (
        commands.change_service("containerd", "C:\\k\\containerd\\containerd.exe"),
        "sc.exe config 'containerd' binPath= 'C:\\k\\containerd\\containerd.exe' start= auto "
        "depend= '/'; exit $LASTEXITCODE",
    ),
    (
        commands.set_service_description("kubelet", "wmco managed kubelet"),
        "sc.exe description 'kubelet' 'wmco managed kubelet'; exit $LASTEXITCODE",
    ),
    (
        commands.set_service_recovery("kubelet"),
        "sc.exe failure 'kubelet' reset= 86400 actions= restart/10000/restart/10000/restart/10000; "
        "exit $LASTEXITCODE",
    ),
    (commands.start_service("kubelet"), "sc.exe start 'kubelet'; exit $LASTEXITCODE"),
    (commands.stop_service("kubelet"), "sc.exe stop 'kubelet'; exit $LASTEXITCODE"),
    (commands.delete_service("kubelet"), "sc.exe delete 'kubelet'; exit $LASTEXITCODE"),
    (commands.hostname(), "hostname"),
    (
        commands.os_build(),
        "(Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion')"
        ".CurrentBuildNumber",
    ),
    (
        commands.containers_feature(),
        "Get-WindowsOptionalFeature -Online -FeatureName Containers",
    ),
    (
        commands.enable_containers_feature(),
        "$ProgressPreference = 'SilentlyContinue'; Install-WindowsFeature -Name Containers",
    ),
    (commands.reboot(), "Restart-Computer -Force"),
    (
        commands.list_hns_networks(),
        "ConvertTo-Json -InputObject @(Get-HnsNetwork) -Depth 5 -Compress",
    ),
    (
        commands.list_hns_endpoints(),
        "ConvertTo-Json -InputObject @(Get-HnsEndpoint) -Depth 5 -Compress",
    ),
    (
        commands.create_host_endpoint(
            "6A3E5C31-2B1F-4D8E-9F0A-1C2D3E4F5A6B",
            name="VIPEndpoint",
            module="C:\\Temp\\hns.psm1",
            compartment=1,
        ),
        "$ErrorActionPreference = 'Stop'; Import-Module -DisableNameChecking 'C:\\Temp\\hns.psm1'; "
        "$ep = New-HNSEndpoint -NetworkId '6A3E5C31-2B1F-4D8E-9F0A-1C2D3E4F5A6B' "
        "-Name 'VIPEndpoint'; Attach-HNSHostEndpoint -EndpointID $ep.ID -CompartmentID 1 | "
        "Out-Null; ConvertTo-Json -InputObject @($ep) -Depth 5 -Compress",
    ),
    (
        commands.remove_hns_networks("OVNKubernetesHybridOverlayNetwork"),
        "Get-HnsNetwork | Where-Object { $_.Name -eq 'OVNKubernetesHybridOverlayNetwork' } "
        "| Remove-HnsNetwork",
    ),
    (
        commands.remove_hns_endpoints("VIPEndpoint"),
        "Get-HnsEndpoint | Where-Object { $_.Name -eq 'VIPEndpoint' } | Remove-HnsEndpoint",
    ),
]


@pytest.mark.parametrize(("built", "expected"), EXACT_FORMS)
def test_command_forms_are_exactly_the_contract(built: str, expected: str) -> None:
    assert built == expected


@pytest.mark.parametrize(
    "bad_name", ["", "kube let", "a;b", "x'y", "$(x)", "a`b", "a\nb", "-x", "a/b"]
)
def test_service_names_are_an_allow_list(bad_name: str) -> None:
    with pytest.raises(quoting.UnsafeValueError):
        commands.start_service(bad_name)


@pytest.mark.parametrize("bad_path", ["k\\x", "\\k\\x", "relative", "C:\\k\n", ""])
def test_paths_must_be_absolute_and_safe(bad_path: str) -> None:
    with pytest.raises(quoting.UnsafeValueError):
        commands.file_hash(bad_path)


def test_command_line_with_double_quote_is_refused() -> None:
    with pytest.raises(quoting.UnsafeValueError, match="double quote"):
        commands.create_service("x", 'C:\\k\\x.exe --name="a b"')


def test_quotes_in_paths_are_doubled() -> None:
    assert commands.make_directories(["C:\\it's"]) == (
        "New-Item -ItemType Directory -Force -Path 'C:\\it''s' | Out-Null"
    )


@pytest.mark.parametrize(
    "bad_id",
    ["", "not-a-guid", "6A3E5C31-2B1F-4D8E-9F0A-1C2D3E4F5A6B'; Remove-Item C:\\", "{6A3E5C31}"],
)
def test_endpoint_network_id_must_be_a_guid(bad_id: str) -> None:
    with pytest.raises(quoting.UnsafeValueError, match="GUID"):
        commands.create_host_endpoint(
            bad_id, name="VIPEndpoint", module="C:\\Temp\\hns.psm1", compartment=1
        )


@pytest.mark.parametrize("bad_name", ["", "VIP Endpoint", "x'y", "a;b", "$(x)", "a\nb"])
def test_hns_names_are_an_allow_list(bad_name: str) -> None:
    with pytest.raises(quoting.UnsafeValueError):
        commands.remove_hns_networks(bad_name)
    with pytest.raises(quoting.UnsafeValueError):
        commands.remove_hns_endpoints(bad_name)


@pytest.mark.parametrize("bad", [-1, True, "1"])
def test_compartment_must_be_a_number(bad: object) -> None:
    with pytest.raises(quoting.UnsafeValueError, match="compartment"):
        commands.create_host_endpoint(
            "6A3E5C31-2B1F-4D8E-9F0A-1C2D3E4F5A6B",
            name="VIPEndpoint",
            module="C:\\Temp\\hns.psm1",
            compartment=bad,  # type: ignore[arg-type]
        )


def test_module_path_must_be_absolute() -> None:
    with pytest.raises(quoting.UnsafeValueError):
        commands.create_host_endpoint(
            "6A3E5C31-2B1F-4D8E-9F0A-1C2D3E4F5A6B",
            name="VIPEndpoint",
            module="hns.psm1",
            compartment=1,
        )
