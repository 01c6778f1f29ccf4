"""The Dockerfile against the repository and the Deployment (no container engine runs here).

A small parser reads the Dockerfile's instructions per stage. Then: every file or folder it copies
from the build context exists in the repository and is not excluded by ``.dockerignore``; every
``COPY --from`` names an earlier stage and a path that stage's commands produce; every repository
script it runs was copied into that stage first and is executable; every ``wmco`` command it runs
is a real subcommand; and the image agrees with ``deploy/base/deployment.yaml`` and the operator's
defaults: entry point ``wmco run`` (the Deployment sets no command), payload at ``/payload`` with
``manifest.json`` (``WMCO_PAYLOAD_DIR`` and its default), user id 65532, the probe/metrics port.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
import shlex
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from wmco import cli, instances, names
from wmco.payload import manifest as payload_manifest
from wmco.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DEPLOYMENT = ROOT / "deploy" / "base" / "deployment.yaml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

COREUTILS = {"test", "mkdir", "cp", "chmod", "tail", "python", "true"}
"""Commands of the base images (coreutils, the image's Python) the Dockerfile may run."""


@dataclasses.dataclass
class Instruction:
    keyword: str
    args: str


@dataclasses.dataclass
class Stage:
    name: str
    image: str
    instructions: list[Instruction] = dataclasses.field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(name, image))
        else:
            assert stages, f"{keyword} before any FROM"
            stages[-1].instructions.append(Instruction(keyword, rest))
    return args, stages


ARGS, STAGES = parse(DOCKERFILE.read_text())
BY_NAME = {stage.name: stage for stage in STAGES if stage.name}
FINAL = STAGES[-1]


@dataclasses.dataclass
class Copy:
    sources: list[str]
    dest: str
    stage: str | None


def copies(stage: Stage) -> list[Copy]:
    result = []
    for instruction in stage.all("COPY"):
        words = shlex.split(instruction.args)
        origin = None
        while words[0].startswith("--"):
            flag = words.pop(0)
            if flag.startswith("--from="):
                origin = flag.removeprefix("--from=")
        result.append(Copy(words[:-1], words[-1], origin))
    return result


def dockerignore_excludes(path: str) -> bool:
    """Whether ``.dockerignore`` keeps ``path`` out of the build context (last match wins)."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parts = Path(path).parts
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(c, pattern)
            or fnmatch.fnmatch(c, f"**/{pattern}".removeprefix("**/**/"))
            for c in candidates
        ):
            excluded = not negate
    return excluded


def run_commands(stage: Stage) -> list[list[str]]:
    """Every simple command of the stage's RUN lines: split on ``&&``, ``;`` and pipes, with each
    command substitution ``$(...)`` taken out as commands of its own."""
    commands = []
    for instruction in stage.all("RUN"):
        substituted: list[str] = []

        def take(match: re.Match[str], into: list[str] = substituted) -> str:
            into.append(match.group(1))
            return "SUBSTITUTED"

        text = re.sub(r'"?\$\(([^()]*)\)"?', take, instruction.args)
        for piece in (text, *substituted):
            for part in re.split(r"&&|;|\|", piece):
                words = shlex.split(part)
                while words and re.fullmatch(r"\w+=.*", words[0]):
                    words.pop(0)  # an assignment, or an environment prefix
                if words:
                    commands.append(words)
    return commands


def deployment_container() -> dict[str, Any]:
    deployment = yaml.safe_load(DEPLOYMENT.read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def deployment_pod_security() -> dict[str, Any]:
    return dict(
        yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]["securityContext"]
    )


# --- Structure ----------------------------------------------------------------------------------


def test_three_stages_go_python_final() -> None:
    assert [s.name for s in STAGES] == ["payload", "wheel", ""]
    assert BY_NAME["payload"].image.split("/")[-1].startswith("golang:")
    assert BY_NAME["wheel"].image == FINAL.image, "the virtualenv is used where it was made"
    assert "slim" in FINAL.image


def test_the_go_stage_is_new_enough_for_the_pinned_modules() -> None:
    go_version = BY_NAME["payload"].image.split(":")[1].split("-")[0]
    wanted = [int(n) for n in go_version.split(".")]
    for go_mod in ROOT.glob("hack/**/go.mod"):
        match = re.search(r"^go (\d+)\.(\d+)", go_mod.read_text(), re.MULTILINE)
        assert match, go_mod
        assert [int(match.group(1)), int(match.group(2))] <= wanted, (
            f"{go_mod} needs Go {match.group(0)}"
        )


def test_the_python_stage_is_the_supported_python() -> None:
    python = FINAL.image.split(":")[1].split("-")[0]
    assert PYPROJECT["project"]["requires-python"] == f">={python}"
    assert PYPROJECT["tool"]["mypy"]["python_version"] == python


# --- Every path and command exists ----------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name or "final")
def test_context_copies_exist_and_are_in_the_build_context(stage: Stage) -> None:
    for copy in copies(stage):
        if copy.stage is not None:
            continue
        for source in copy.sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file or folder in the repository"
            assert not dockerignore_excludes(source.rstrip("/")), (
                f"COPY {source}: excluded by .dockerignore"
            )
            if path.is_dir():
                for child in path.rglob("*"):
                    relative = child.relative_to(ROOT).as_posix()
                    if child.is_file() and "__pycache__" not in relative:
                        assert not dockerignore_excludes(relative), f"{relative} is excluded"


def test_what_the_wheel_needs_is_copied() -> None:
    sources = {s.rstrip("/") for c in copies(BY_NAME["wheel"]) for s in c.sources}
    assert "pyproject.toml" in sources
    assert PYPROJECT["project"]["readme"] in sources
    for package in PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        assert any(package == s or package.startswith(s + "/") for s in sources), package


def test_copies_from_stages_take_what_those_stages_produce() -> None:
    seen: list[str] = []
    for stage in STAGES:
        for copy in copies(stage):
            if copy.stage is None:
                continue
            assert copy.stage in seen, f"COPY --from={copy.stage} names no earlier stage"
            producer = " ".join(i.args for i in BY_NAME[copy.stage].all("RUN"))
            for source in copy.sources:
                assert re.search(rf"{re.escape(source)}(\s|/|$)", producer), (
                    f"stage {copy.stage} does not produce {source}"
                )
        seen.append(stage.name)


@pytest.mark.parametrize("stage", STAGES[:-1], ids=lambda s: s.name)
def test_every_command_run_exists(stage: Stage) -> None:
    copied = [s.rstrip("/") for c in copies(stage) if c.stage is None for s in c.sources]
    scripts = {name: target for name, target in PYPROJECT["project"]["scripts"].items()}
    for words in run_commands(stage):
        command = words[0]
        if "/" in command and not command.startswith("/"):  # a repository script
            assert any(command == c or command.startswith(c + "/") for c in copied), (
                f"{command} runs before it is copied into stage {stage.name}"
            )
            path = ROOT / command
            assert path.is_file(), f"{command}: no such script in the repository"
            assert path.stat().st_mode & stat.S_IXUSR, f"{command} is not executable"
            mode = subprocess.run(
                ["git", "ls-files", "-s", command],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            assert mode and mode[0] == "100755", f"{command} is not committed as executable"
        elif command.startswith("/opt/wmco/bin/"):
            name = command.rsplit("/", 1)[1]
            if name == "pip":
                continue
            assert name in scripts, f"{name} is not a console script of the package"
            assert words[1] in cli.main.list_commands(None), f"`wmco {words[1]}` is no command"  # type: ignore[arg-type]
        else:
            assert command in COREUTILS, f"{command}: not a command the base image has"


# --- The image agrees with the Deployment and the operator -------------------------------------


def test_entry_point_is_wmco_run_and_the_deployment_keeps_it() -> None:
    [entrypoint] = FINAL.all("ENTRYPOINT")
    argv = json.loads(entrypoint.args)
    assert argv == ["wmco", "run"]
    assert PYPROJECT["project"]["scripts"]["wmco"] == "wmco.cli:main"
    assert "run" in cli.main.list_commands(None)  # type: ignore[arg-type]
    container = deployment_container()
    assert "command" not in container and "args" not in container
    env_lines = " ".join(i.args for i in FINAL.all("ENV"))
    assert re.search(r"PATH=/opt/wmco/bin:", env_lines), "wmco is on the PATH"
    assert any(
        c.stage == "wheel" and c.sources == ["/opt/wmco"] and c.dest == "/opt/wmco"
        for c in copies(FINAL)
    )


def test_payload_path_agrees_everywhere() -> None:
    [payload_copy] = [c for c in copies(FINAL) if c.stage == "payload"]
    assert payload_copy.dest == "/payload"
    env = " ".join(i.args for i in FINAL.all("ENV"))
    assert "WMCO_PAYLOAD_DIR=/payload" in env
    deployment_env = {e["name"]: e.get("value") for e in deployment_container()["env"]}
    assert deployment_env["WMCO_PAYLOAD_DIR"] == "/payload"
    assert str(Settings().payload_dir) == "/payload"
    # The payload stage checks that the build produced the manifest the operator reads.
    assert f"$dir/{payload_manifest.MANIFEST_NAME}" in " ".join(
        i.args for i in BY_NAME["payload"].all("RUN")
    )


def test_the_payload_stage_runs_the_payload_build() -> None:
    """The Go stage runs hack/payload/build.sh (issue 9 contract: its last line is the output)."""
    commands = run_commands(BY_NAME["payload"])
    assert ["hack/payload/build.sh"] in [w[:1] for w in commands]
    assert (ROOT / "hack/payload/build.sh").is_file(), (
        "hack/payload/build.sh is missing: it is the payload engineer's (merge issue9-payload)"
    )


def test_user_id_agrees_with_the_deployment() -> None:
    [user] = FINAL.all("USER")
    uid, _, gid = user.args.partition(":")
    pod = deployment_pod_security()
    assert (int(uid), int(gid)) == (pod["runAsUser"], pod["runAsGroup"]) == (65532, 65532)
    assert pod["runAsNonRoot"] is True
    # Every stage before the final one may run as root; the final one never switches back.
    last_user = [i for i in FINAL.instructions if i.keyword == "USER"]
    assert FINAL.instructions.index(last_user[-1]) > max(
        FINAL.instructions.index(i) for i in FINAL.instructions if i.keyword in ("COPY", "RUN")
    )


def test_exposed_port_is_the_probe_and_metrics_port() -> None:
    [expose] = FINAL.all("EXPOSE")
    [port] = deployment_container()["ports"]
    assert int(expose.args) == port["containerPort"] == 8081
    assert Settings().probe_bind_address.endswith(":8081")


def test_the_parser_reads_what_is_there() -> None:
    # Guards the checks above against a parser that silently finds nothing.
    assert len(STAGES) == 3 and all(s.instructions for s in STAGES)
    assert sum(len(copies(s)) for s in STAGES) >= 5
    assert any(w[0] == "hack/payload/build.sh" for w in run_commands(BY_NAME["payload"]))
    assert dockerignore_excludes("tests/unit/test_image.py")
    assert not dockerignore_excludes("src/wmco/cli.py")
    assert dockerignore_excludes("src/wmco/__pycache__/cli.cpython-311.pyc")
    assert os.environ.get("WMCO_NOT_SET") is None


# --- The examples the README points at ----------------------------------------------------------

EXAMPLES = ROOT / "deploy" / "examples"


@pytest.mark.parametrize("platform", ["aws", "azure", "vsphere"])
def test_windows_machineset_examples_are_what_the_operator_manages(platform: str) -> None:
    machineset = yaml.safe_load((EXAMPLES / f"machineset-{platform}.yaml").read_text())
    assert machineset["kind"] == "MachineSet"
    assert machineset["metadata"]["namespace"] == names.MACHINE_API_NAMESPACE
    template = machineset["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert labels[names.MACHINE_OS_ID_LABEL] == names.MACHINE_OS_ID_WINDOWS
    assert machineset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    value = template["spec"]["providerSpec"]["value"]
    assert value["userDataSecret"]["name"] == names.USER_DATA_SECRET
    assert template["spec"]["metadata"]["labels"] == {names.WORKER_ROLE_LABEL: ""}
    if platform in ("azure", "vsphere"):
        # Windows computer names have at most 15 characters: 9 + "-" + 5 random ones.
        assert len(machineset["metadata"]["name"]) <= 9


def test_windows_instances_example_parses() -> None:
    configmap = yaml.safe_load((EXAMPLES / "windows-instances.yaml").read_text())
    assert configmap["metadata"]["name"] == names.INSTANCES_CONFIGMAP
    assert configmap["metadata"]["namespace"] == names.OPERATOR_NAMESPACE
    parsed = instances.parse_instances(configmap["data"])
    assert not parsed.errors and len(parsed.instances) == len(configmap["data"])
