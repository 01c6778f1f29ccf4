"""Hyper-V isolation, the pure parts: the setting, containerd's TOML, the command forms, the
answers, and what a node records.

The containerd configuration with and without the Hyper-V runtimes is parsed back with tomllib;
the feature commands are the exact strings of ``docs/windows-surface.md``; the answers are
Windows' own shapes (the failed prerequisite check is the text of dsccommunity/HyperVDsc#184).
"""

from __future__ import annotations

import pathlib
import tomllib

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node

from wmco import names, settings
from wmco.cluster import clientca
from wmco.nodeconfig import hyperv
from wmco.nodeconfig.instance import Inputs, Step
from wmco.nodeconfig.runner import Runner
from wmco.payload import manifest as payload_manifest
from wmco.settings import HyperVMode, Settings
from wmco.windows import answers, commands, configfiles, quoting, ssh, sshkeys

CA = clientca.ClientCa(source=clientca.KUBERNETES_SOURCE, pem=b"PEM\n", certificates=1)

CRI = "io.containerd.grpc.v1.cri"
PAUSE = "mcr.microsoft.com/oss/kubernetes/pause:3.10.2"
HYPERV_OPTIONS = {
    "SandboxIsolation": 1,
    "SandboxPlatform": "windows/amd64",
    "ScaleCpuLimitsToSandbox": True,
}


def runtimes(text: str) -> dict[str, object]:
    doc = tomllib.loads(text)
    containerd = doc["plugins"][CRI]["containerd"]
    assert containerd["default_runtime_name"] == "runhcs-wcow-process"
    return dict(containerd["runtimes"])


def test_the_setting_is_off_by_default_and_read_from_wmco_hyperv() -> None:
    assert Settings().hyperv is HyperVMode.OFF
    assert Settings.from_env({"WMCO_HYPERV": "install"}).hyperv is HyperVMode.INSTALL
    assert Settings.from_env({"WMCO_HYPERV": "ON"}).hyperv is HyperVMode.ON
    with pytest.raises(settings.SettingsError, match="WMCO_HYPERV"):
        Settings.from_env({"WMCO_HYPERV": "yes"})


def test_without_hyperv_containerd_has_the_process_runtime_only() -> None:
    text = configfiles.containerd_config(settings.NetworkProfile.OVN_HYBRID, PAUSE)
    assert runtimes(text) == {"runhcs-wcow-process": {"runtime_type": "io.containerd.runhcs.v1"}}


def test_with_hyperv_containerd_gets_runhcs_runtimes_with_sandbox_isolation_1() -> None:
    text = configfiles.containerd_config(
        settings.NetworkProfile.HOSTPROCESS,
        PAUSE,
        ("runhcs-wcow-hypervisor", "runhcs-wcow-hypervisor-17763", "runhcs-wcow-hypervisor"),
    )
    assert runtimes(text) == {
        "runhcs-wcow-process": {"runtime_type": "io.containerd.runhcs.v1"},
        "runhcs-wcow-hypervisor": {
            "runtime_type": "io.containerd.runhcs.v1",
            "options": HYPERV_OPTIONS,
        },
        "runhcs-wcow-hypervisor-17763": {
            "runtime_type": "io.containerd.runhcs.v1",
            "options": HYPERV_OPTIONS,
        },
    }
    # Nothing else moved: the rest of the file is the process-only file's.
    plain = tomllib.loads(configfiles.containerd_config(settings.NetworkProfile.HOSTPROCESS, PAUSE))
    hyper = tomllib.loads(text)
    for doc in (plain, hyper):
        del doc["plugins"][CRI]["containerd"]["runtimes"]
    assert plain == hyper


def test_a_handler_that_is_not_a_dns_label_is_refused() -> None:
    with pytest.raises(ValueError, match="DNS label"):
        configfiles.containerd_config(
            settings.NetworkProfile.OVN_HYBRID, PAUSE, ("evil]\n[plugins",)
        )


def test_the_feature_command_forms_are_quoted() -> None:
    assert (
        commands.windows_feature_state("Hyper-V")
        == "(Get-WindowsFeature -Name 'Hyper-V').InstallState"
    )
    assert commands.install_windows_feature("Hyper-V") == (
        "$ProgressPreference = 'SilentlyContinue'; Install-WindowsFeature -Name 'Hyper-V'"
    )
    for bad in ("Hyper-V'; Restart-Computer", "Hyper V", "", "Hyper-V\n"):
        with pytest.raises(quoting.UnsafeValueError):
            commands.windows_feature_state(bad)


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        ("Installed\r\n", answers.InstallState.INSTALLED),
        ("Available\n", answers.InstallState.AVAILABLE),
        ("InstallPending\r\n", answers.InstallState.INSTALL_PENDING),
        ("Removed", answers.InstallState.REMOVED),
    ],
)
def test_install_state_answers(answer: str, state: answers.InstallState) -> None:
    assert answers.parse_install_state(answer) is state


def test_an_empty_or_odd_install_state_is_a_shape_error() -> None:
    with pytest.raises(answers.CommandOutputError, match="no such feature"):
        answers.parse_install_state("\r\n")
    with pytest.raises(answers.CommandOutputError, match="unknown InstallState"):
        answers.parse_install_state("Enabled\r\n")


SUCCESS = (
    "\r\nSuccess Restart Needed Exit Code      Feature Result\r\n"
    "------- -------------- ---------      --------------\r\n"
    "True    Yes            SuccessRest... {Hyper-V}\r\n"
    "WARNING: You must restart this server to finish the installation process.\r\n"
)
PREREQUISITE = (
    "\r\nSuccess Restart Needed Exit Code      Feature Result\r\n"
    "------- -------------- ---------      --------------\r\n"
    "False   Maybe          Failed         {}\r\n"
)
PREREQUISITE_ERROR = (
    "Install-WindowsFeature : A prerequisite check for the Hyper-V feature failed.\r\n"
    "1. Hyper-V cannot be installed: The processor does not have required virtualization "
    "capabilities.\r\n"
    "At line:1 char:42\r\n"
    "+ $ProgressPreference = 'SilentlyContinue'; Install-WindowsFeature -Name ...\r\n"
    "+                                           ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\r\n"
    "    + CategoryInfo          : InvalidOperation: (Hyper-V:ServerComponentWrapper) "
    "[Install-WindowsFeature], Exception\r\n"
    "    + FullyQualifiedErrorId : Alteration_PrerequisiteCheck_Failed,Microsoft.Windows.Serve"
    "rManager.Commands.AddWindowsFeatureCommand\r\n \r\n"
)


def test_install_result_rows() -> None:
    assert answers.parse_install_result(SUCCESS) == answers.InstallResult(
        True, "Yes", "SuccessRest..."
    )
    assert answers.parse_install_result(PREREQUISITE) == answers.InstallResult(
        False, "Maybe", "Failed"
    )
    with pytest.raises(answers.CommandOutputError, match="no result row"):
        answers.parse_install_result("WARNING: x\r\n")


def test_the_error_record_message_is_kept_whole_and_on_one_line() -> None:
    assert answers.error_message(PREREQUISITE_ERROR) == (
        "A prerequisite check for the Hyper-V feature failed. 1. Hyper-V cannot be installed: "
        "The processor does not have required virtualization capabilities."
    )
    assert answers.error_message("") == ""


def node(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> Node:
    return Node(metadata=ObjectMeta(name="n", labels=labels, annotations=annotations))


LABELLED = {names.HYPERV_LABEL: "true"}


def test_settled_per_mode() -> None:
    plain, labelled = node(), node(LABELLED)
    checked_on = node(annotations={names.HYPERV_CHECKED_ANNOTATION: "on"})
    assert hyperv.settled(plain, HyperVMode.OFF) and not hyperv.settled(labelled, HyperVMode.OFF)
    assert hyperv.settled(labelled, HyperVMode.ON) and hyperv.settled(labelled, HyperVMode.INSTALL)
    assert not hyperv.settled(plain, HyperVMode.ON)
    assert hyperv.settled(checked_on, HyperVMode.ON)
    # Switching on -> install asks an unable host again (now it may be installed).
    assert not hyperv.settled(checked_on, HyperVMode.INSTALL)
    assert not hyperv.settled(None, HyperVMode.ON) and hyperv.settled(None, HyperVMode.OFF)


def test_what_a_node_records() -> None:
    available = hyperv.HyperV(HyperVMode.ON, handlers=("runhcs-wcow-hypervisor",))
    unable = hyperv.HyperV(HyperVMode.INSTALL, problem="no nested virtualisation")
    off = hyperv.HyperV(HyperVMode.OFF)
    assert available.metadata_patch() == {
        "metadata": {
            "labels": {names.HYPERV_LABEL: "true"},
            "annotations": {names.HYPERV_CHECKED_ANNOTATION: None},
        }
    }
    assert unable.metadata_patch()["metadata"] == {
        "labels": {names.HYPERV_LABEL: None},
        "annotations": {names.HYPERV_CHECKED_ANNOTATION: "install"},
    }
    assert off.metadata_patch()["metadata"] == {
        "labels": {names.HYPERV_LABEL: None},
        "annotations": {names.HYPERV_CHECKED_ANNOTATION: None},
    }
    merged = hyperv.merge_metadata(
        {"metadata": {"labels": {"a": "1"}, "annotations": {"b": "2"}}}, available
    )
    assert merged["metadata"]["labels"] == {"a": "1", names.HYPERV_LABEL: "true"}
    assert merged["metadata"]["annotations"] == {"b": "2", names.HYPERV_CHECKED_ANNOTATION: None}
    # Each patch records exactly what settled() reads back under its mode.
    for result in (available, unable, off):
        patch = result.metadata_patch()["metadata"]
        recorded = node(
            {k: v for k, v in patch["labels"].items() if v},
            {k: v for k, v in patch["annotations"].items() if v},
        )
        assert hyperv.settled(recorded, result.mode)


# --- The step's flow, against a fake connection answering the exact forms ------------------------


class Answers:
    """A connection that answers the Hyper-V forms from a table and records what was sent."""

    address = "10.0.0.5"
    connected = True
    host_key = None

    def __init__(self, table: dict[str, ssh.Result]) -> None:
        self.table = table
        self.sent: list[str] = []

    async def run(
        self, command: str, *, timeout: float | None = None, what: str = "command"
    ) -> ssh.Result:
        self.sent.append(command)
        return self.table[command]

    async def put_file(self, source: object, destination: str) -> None:
        raise AssertionError("the hyperv step writes no file")

    async def put_bytes(self, data: bytes, destination: str, *, what: str = "file") -> None:
        raise AssertionError("the hyperv step writes no file")

    async def reconnect(self, *, within: float | None = None) -> sshkeys.HostKey:
        raise AssertionError("no reboot expected")

    async def close(self) -> None:
        return None


STATE = commands.windows_feature_state("Hyper-V")
INSTALL = commands.install_windows_feature("Hyper-V")


async def step(mode: HyperVMode, table: dict[str, ssh.Result]) -> tuple[hyperv.HyperV, list[str]]:
    connection = Answers(table)
    runner = Runner(connection, connection.address, reconnect_within=1.0)
    inputs = Inputs(
        Settings(hyperv=mode),
        b"",
        payload_manifest.Manifest(pathlib.Path("/payload"), "v", ()),
        "1",
        "h",
        CA,
    )

    async def progress(step: Step, detail: str) -> None:
        return None

    result = await hyperv.ensure_hyperv(runner, inputs, 20348, progress)
    return result, connection.sent


async def test_off_sends_nothing() -> None:
    result, sent = await step(HyperVMode.OFF, {})
    assert (result, sent) == (hyperv.HyperV(HyperVMode.OFF), [])


async def test_an_installed_role_gives_the_hyperv_runtimes() -> None:
    result, sent = await step(HyperVMode.ON, {STATE: ssh.Result(0, "Installed\r\n", "")})
    assert result.handlers == ("runhcs-wcow-hypervisor", "runhcs-wcow-hypervisor-17763")
    assert result.problem is None and sent == [STATE]


async def test_on_never_installs_and_says_how_to_get_hyperv() -> None:
    result, sent = await step(HyperVMode.ON, {STATE: ssh.Result(0, "Available\r\n", "")})
    assert not result.available and sent == [STATE]
    assert result.problem == (
        "no Hyper-V isolation on this node: the Hyper-V role is Available, not Installed; "
        "install it (Install-WindowsFeature -Name Hyper-V, then restart) or set "
        "WMCO_HYPERV=install; it stays a process-isolation node"
    )


async def test_a_failed_prerequisite_check_is_a_problem_not_an_error() -> None:
    table = {
        STATE: ssh.Result(0, "Available\r\n", ""),
        INSTALL: ssh.Result(1, PREREQUISITE, PREREQUISITE_ERROR),
    }
    result, sent = await step(HyperVMode.INSTALL, table)
    assert sent == [STATE, INSTALL] and not result.available
    assert result.problem is not None
    assert "The processor does not have required virtualization capabilities." in result.problem


async def test_a_host_without_server_manager_is_a_problem_not_an_error() -> None:
    missing = (
        "Get-WindowsFeature : The term 'Get-WindowsFeature' is not recognized as the name of a "
        "cmdlet, function, script file, or operable program.\r\nAt line:1 char:2\r\n"
    )
    for answer in (ssh.Result(1, "", missing), ssh.Result(0, "\r\n", "")):
        result, sent = await step(HyperVMode.INSTALL, {STATE: answer})
        assert sent == [STATE] and not result.available and result.problem
    assert "Get-WindowsFeature Hyper-V failed: The term 'Get-WindowsFeature' is not recognized" in (
        (await step(HyperVMode.ON, {STATE: ssh.Result(1, "", missing)}))[0].problem or ""
    )
