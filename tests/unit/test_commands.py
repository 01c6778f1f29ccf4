"""Every command form of docs/windows-surface.md, exactly, and the parsers of the answers.

The sample outputs are the shapes documented in shared/reference/windows-commands.md (CRLF kept
where the host would send it, to prove the parsers tolerate it).
"""

from __future__ import annotations

import pytest

from wmco.windows import commands, quoting

EXACT_FORMS = [
    (commands.liveness(), "Get-Help"),
    (
        commands.make_directory("C:\\k\\cni"),
        "New-Item -ItemType Directory -Force -Path 'C:\\k\\cni' | Out-Null",
    ),
    (commands.test_path("C:\\k\\x"), "Test-Path -LiteralPath 'C:\\k\\x'"),
    (
        commands.file_hash("C:\\k\\kubelet.exe"),
        "(Get-FileHash -LiteralPath 'C:\\k\\kubelet.exe' -Algorithm SHA256).Hash",
    ),
    (
        commands.remove_path("C:\\var\\lib\\cni"),
        "if (Test-Path -LiteralPath 'C:\\var\\lib\\cni') "
        "{ Remove-Item -LiteralPath 'C:\\var\\lib\\cni' -Recurse -Force }",
    ),
    (
        commands.unpack("C:\\k\\a.tar.gz", "C:\\k"),
        "tar -xzf 'C:\\k\\a.tar.gz' -C 'C:\\k'; exit $LASTEXITCODE",
    ),
    (
        commands.write_small_file("C:\\k\\t.txt", 'it\'s {"a":1}'),
        "Set-Content -LiteralPath 'C:\\k\\t.txt' -Value 'it''s {\"a\":1}' -Encoding ascii -NoNewline",
    ),
    (commands.service_exists("kubelet"), "sc.exe qc 'kubelet'; exit $LASTEXITCODE"),
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
    (commands.network_config(), "ipconfig /all"),
    (
        commands.os_build(),
        "(Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion')"
        ".CurrentBuildNumber",
    ),
    (commands.os_caption(), "(Get-CimInstance -ClassName Win32_OperatingSystem).Caption"),
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
        commands.process_listing("kubelet"),
        "Get-Process -Name 'kubelet' -ErrorAction SilentlyContinue",
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
        commands.test_path(bad_path)


def test_command_line_with_double_quote_is_refused() -> None:
    with pytest.raises(quoting.UnsafeValueError, match="double quote"):
        commands.create_service("x", 'C:\\k\\x.exe --name="a b"')


def test_file_content_errors_do_not_leak_the_content() -> None:
    secret = "token: abcdef.0123456789abcdef\nmore"
    with pytest.raises(quoting.UnsafeValueError) as info:
        commands.write_small_file("C:\\k\\bootstrap-kubeconfig", secret)
    assert "abcdef" not in str(info.value)


def test_quotes_in_paths_are_doubled() -> None:
    assert commands.test_path("C:\\it's") == "Test-Path -LiteralPath 'C:\\it''s'"


# --- Parsers -----------------------------------------------------------------------------------

SC_QUERY_RUNNING = (
    "\r\nSERVICE_NAME: kubelet \r\n"
    "        TYPE               : 10  WIN32_OWN_PROCESS  \r\n"
    "        STATE              : 4  RUNNING \r\n"
    "                                (STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)\r\n"
    "        WIN32_EXIT_CODE    : 0  (0x0)\r\n"
    "        SERVICE_EXIT_CODE  : 0  (0x0)\r\n"
    "        CHECKPOINT         : 0x0\r\n"
    "        WAIT_HINT          : 0x0\r\n"
)

SC_QUERY_STOPPED = """
SERVICE_NAME: containerd
        TYPE               : 10  WIN32_OWN_PROCESS
        STATE              : 1  STOPPED
        WIN32_EXIT_CODE    : 1077  (0x435)
        SERVICE_EXIT_CODE  : 0  (0x0)
        CHECKPOINT         : 0x0
        WAIT_HINT          : 0x0
"""

SC_QC = """[SC] QueryServiceConfig SUCCESS

SERVICE_NAME: kubelet
        TYPE               : 10  WIN32_OWN_PROCESS
        START_TYPE         : 2   AUTO_START
        ERROR_CONTROL      : 1   NORMAL
        BINARY_PATH_NAME   : C:\\k\\kubelet.exe --config=C:\\k\\kubelet.conf
        LOAD_ORDER_GROUP   :
        TAG                : 0
        DISPLAY_NAME       : kubelet
        DEPENDENCIES       : containerd
                           : otherdep
        SERVICE_START_NAME : LocalSystem
"""

SC_QC_NO_DEPS = SC_QC.replace(
    "DEPENDENCIES       : containerd\n                           : otherdep",
    "DEPENDENCIES       : ",
).replace("2   AUTO_START", "3   DEMAND_START")


def test_parse_sc_query_running_with_crlf_and_trailing_spaces() -> None:
    status = commands.parse_sc_query(SC_QUERY_RUNNING)
    assert status == commands.ServiceStatus("kubelet", commands.ServiceState.RUNNING, 0)


def test_parse_sc_query_stopped() -> None:
    status = commands.parse_sc_query(SC_QUERY_STOPPED)
    assert status.state is commands.ServiceState.STOPPED
    assert status.win32_exit_code == 1077


def test_parse_sc_qc() -> None:
    config = commands.parse_sc_qc(SC_QC)
    assert config.name == "kubelet"
    assert config.start_type is commands.StartType.AUTO
    assert config.binary_path == "C:\\k\\kubelet.exe --config=C:\\k\\kubelet.conf"
    assert config.dependencies == ("containerd", "otherdep")
    assert config.display_name == "kubelet"


def test_parse_sc_qc_without_dependencies() -> None:
    config = commands.parse_sc_qc(SC_QC_NO_DEPS)
    assert config.dependencies == ()
    assert config.start_type is commands.StartType.DEMAND


@pytest.mark.parametrize(
    "output",
    [
        "[SC] OpenService FAILED 1060:\n\nThe specified service does not exist.\n\n",
        "",
        "SERVICE_NAME: x\n        STATE              : 9  WEIRD\n",
    ],
)
def test_parse_sc_query_rejects_other_output(output: str) -> None:
    with pytest.raises(commands.CommandOutputError):
        commands.parse_sc_query(output)


def test_sc_exit_codes() -> None:
    assert commands.sc_exit_code(1060) is commands.ScExitCode.SERVICE_DOES_NOT_EXIST
    assert commands.sc_exit_code(1073) is commands.ScExitCode.SERVICE_EXISTS
    assert commands.sc_exit_code(0) is commands.ScExitCode.SUCCESS
    assert commands.sc_exit_code(4242) == 4242
    assert commands.sc_exit_code(None) is None


def test_parse_bool() -> None:
    assert commands.parse_bool("True\r\n") is True
    assert commands.parse_bool("False\n") is False
    with pytest.raises(commands.CommandOutputError):
        commands.parse_bool("Yes\n")


def test_parse_file_hash() -> None:
    upper = "EF647E7763E3F666F3A5B186F8273B7D124D3096DCEACF964C66FA7855E2E109"
    assert commands.parse_file_hash(upper + "\r\n") == upper.lower()
    assert commands.parse_file_hash("\r\n") is None
    with pytest.raises(commands.CommandOutputError):
        commands.parse_file_hash("Get-FileHash : Cannot find path\n")


def test_parse_hostname_and_build() -> None:
    assert commands.parse_hostname("WIN-FOQJI0KAEKI\r\n") == "WIN-FOQJI0KAEKI"
    assert commands.parse_node_name("WIN-FOQJI0KAEKI\r\n") == "win-foqji0kaeki"
    assert commands.parse_os_build("20348\r\n") == 20348
    assert commands.windows_build_label(20348) == "10.0.20348"
    with pytest.raises(commands.CommandOutputError):
        commands.parse_os_build("not a build")


FEATURE = """
FeatureName      : Containers
DisplayName      : Containers
Description      : Provides services and tools to create and manage Windows Server Containers.
RestartRequired  : Possible
State            : EnablePending
CustomProperties :


"""


def test_parse_feature_state_does_not_confuse_pending_with_enabled() -> None:
    assert commands.parse_feature_state(FEATURE) is commands.FeatureState.ENABLE_PENDING
    enabled = FEATURE.replace("EnablePending", "Enabled")
    assert commands.parse_feature_state(enabled) is commands.FeatureState.ENABLED


def test_parse_restart_needed() -> None:
    output = (
        "\nSuccess Restart Needed Exit Code      Feature Result\n"
        "------- -------------- ---------      --------------\n"
        "True    Yes            SuccessRest... {Containers}\n"
        "WARNING: You must restart this server to finish the installation process.\n"
    )
    assert commands.parse_restart_needed(output) is True
    assert commands.parse_restart_needed(output.replace("Yes ", "No  ")) is False


IPCONFIG = """
Windows IP Configuration

   Host Name . . . . . . . . . . . . : WINLPE-SRV01
   Primary Dns Suffix  . . . . . . . : corp.example.com
   Node Type . . . . . . . . . . . . : Hybrid
   IP Routing Enabled. . . . . . . . : No

Ethernet adapter Ethernet:

   Connection-specific DNS Suffix  . : corp.example.com
   Physical Address. . . . . . . . . : 0A-1B-2C-3D-4E-5F
   DHCP Enabled. . . . . . . . . . . : Yes
   IPv4 Address. . . . . . . . . . . : 10.0.1.23(Preferred)
   Subnet Mask . . . . . . . . . . . : 255.255.255.0
"""


def test_parse_ipconfig() -> None:
    config = commands.parse_ipconfig(IPCONFIG)
    assert config.host_name == "WINLPE-SRV01"
    assert config.fqdn == "WINLPE-SRV01.corp.example.com"
    assert config.ipv4_addresses == ("10.0.1.23",)


def test_parse_ipconfig_workgroup_host() -> None:
    text = IPCONFIG.replace(": corp.example.com\n   Node", ": \n   Node", 1)
    config = commands.parse_ipconfig(text)
    assert config.primary_dns_suffix == ""
    assert config.fqdn == "WINLPE-SRV01"


def test_parse_process_running() -> None:
    assert commands.parse_process_running("Handles  NPM(K) ...\n 1 2 kubelet\n") is True
    assert commands.parse_process_running("") is False
