r"""containerd's configuration file, read the way containerd 1.7 and 2.x read it (pure).

containerd parses its ``--config`` TOML once, at start. What it refuses stops the process with
``containerd: <error>`` on stderr, which the Windows service's ``--log-file`` receives:

* TOML that does not parse: 1.7 ``failed to load TOML: <path>: (row, col): <parser message>``,
  2.x ``failed to unmarshal TOML at row R column C: toml: <parser message>``;
* a top-level key of the wrong type: 1.7 ``failed to unmarshal TOML: (row, col): Can't convert
  <value>(<type>) to <type>`` (go-toml v1), 2.x ``failed to unmarshal TOML: toml: cannot decode
  TOML <type> into struct field config.Config.<Field> of type <type>`` (go-toml v2);
* a ``version`` above the highest the binary knows (2 for 1.7, 3 for 2.0-2.2, 4 after):
  1.7 ``failed to load TOML from <path>: unsupported config version `3``` (after a logged
  error), 2.x ``failed to load TOML from <path>: expected containerd config version equal to or
  less than `3`, got `4```;
* an explicitly named file that does not exist.

The CRI plugin's table is decoded later, when the plugin loads: a mistake there (a wrong type, a
``default_runtime_name`` without a runtime) does not stop containerd, it only fails that plugin
(``failed to load plugin io.containerd.grpc.v1.cri``) and leaves :attr:`ContainerdConfig.cri`
``None`` with :attr:`ContainerdConfig.cri_error` saying why.

Version 2 keeps CRI under ``plugins."io.containerd.grpc.v1.cri"``; version 3 (containerd 2.x)
splits it into ``plugins."io.containerd.cri.v1.runtime"`` (``containerd``, ``cni`` with
``bin_dirs``) and ``plugins."io.containerd.cri.v1.images"`` (``pinned_images.sandbox``,
``snapshotter``, ``registry``); 2.x migrates a version 2 file on every start with a warning.
Windows defaults fill what the file leaves out (``%ProgramFiles%\containerd\cni\bin`` and
``...\cni\conf``, the ``runhcs-wcow-process`` runtime). Exact texts: containerd
``cmd/containerd/server/config/config.go``, ``pkg/cri/config/config_windows.go`` (1.7),
``internal/cri/config/config_windows.go`` and ``plugins/cri/runtime/plugin.go`` (2.x).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CRI_V2_PLUGIN",
    "CRI_V3_IMAGES",
    "CRI_V3_RUNTIME",
    "CniSettings",
    "ConfigError",
    "ContainerdConfig",
    "CriSettings",
    "load_config",
    "major_minor",
]

CRI_V2_PLUGIN = "io.containerd.grpc.v1.cri"
CRI_V3_RUNTIME = "io.containerd.cri.v1.runtime"
CRI_V3_IMAGES = "io.containerd.cri.v1.images"
PROGRAM_FILES = "C:\\Program Files"
DEFAULT_BIN_DIR = PROGRAM_FILES + "\\containerd\\cni\\bin"
DEFAULT_CONF_DIR = PROGRAM_FILES + "\\containerd\\cni\\conf"
DEFAULT_RUNTIMES: Mapping[str, str] = {
    "runhcs-wcow-process": "io.containerd.runhcs.v1",
    "runhcs-wcow-hypervisor": "io.containerd.runhcs.v1",
}
DEFAULT_HYPERVISOR_RUNTIMES = frozenset({"runhcs-wcow-hypervisor"})
"""Default runtimes whose runhcs options say ``SandboxIsolation = 1`` (containerd#6901)."""

# Top-level keys of containerd's server Config and the Go type each decodes into.
_TOP_LEVEL: Mapping[str, tuple[str, str]] = {
    "version": ("int", "Version"),
    "root": ("string", "Root"),
    "state": ("string", "State"),
    "temp": ("string", "TempDir"),
    "plugin_dir": ("string", "PluginDir"),
    "oom_score": ("int", "OOMScore"),
    "disabled_plugins": ("[]string", "DisabledPlugins"),
    "required_plugins": ("[]string", "RequiredPlugins"),
    "imports": ("[]string", "Imports"),
    "grpc": ("table", "GRPC"),
    "ttrpc": ("table", "TTRPC"),
    "debug": ("table", "Debug"),
    "metrics": ("table", "Metrics"),
    "cgroup": ("table", "Cgroup"),
    "plugins": ("table", "Plugins"),
    "proxy_plugins": ("table", "ProxyPlugins"),
    "timeouts": ("table", "Timeouts"),
    "stream_processors": ("table", "StreamProcessors"),
}


class ConfigError(Exception):
    """containerd refuses its configuration and exits.

    Attributes:
        message: What containerd prints after ``containerd: ``.
        logged: Lines containerd logs before it exits, as ``(level, message)``.
    """

    def __init__(self, message: str, logged: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.logged = logged


@dataclass(frozen=True, slots=True)
class CniSettings:
    """The CRI plugin's ``cni`` table.

    Attributes:
        bin_dirs: Where plugin binaries are looked up (``bin_dir``, or ``bin_dirs`` in 2.x).
        conf_dir: Where network configurations are loaded from.
        max_conf_num: How many configurations go-cni loads (the first ones, lexically).
        conf_template: ``conf_template`` (unused by the simulation).
        ip_pref: ``ip_pref``.
    """

    bin_dirs: tuple[str, ...] = (DEFAULT_BIN_DIR,)
    conf_dir: str = DEFAULT_CONF_DIR
    max_conf_num: int = 1
    conf_template: str = ""
    ip_pref: str = ""


@dataclass(frozen=True, slots=True)
class CriSettings:
    """What the CRI plugin uses of its configuration.

    Attributes:
        sandbox_image: The pause image every pod sandbox runs.
        snapshotter: ``snapshotter``.
        default_runtime_name: The runtime of pods without a RuntimeClass handler.
        runtimes: Runtime handler name -> ``runtime_type``.
        hypervisor_runtimes: The runtimes whose runhcs ``options.SandboxIsolation`` is 1
            (HYPERVISOR): each pod in a utility VM. A runtime the file defines takes its options
            from the file alone; the defaults keep containerd's.
        cni: The ``cni`` table.
        registry_config_path: ``registry.config_path``.
    """

    sandbox_image: str
    snapshotter: str = "windows"
    default_runtime_name: str = "runhcs-wcow-process"
    runtimes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_RUNTIMES))
    hypervisor_runtimes: frozenset[str] = DEFAULT_HYPERVISOR_RUNTIMES
    cni: CniSettings = field(default_factory=CniSettings)
    registry_config_path: str = ""


@dataclass(frozen=True, slots=True)
class ContainerdConfig:
    """containerd's configuration after defaults, migration and validation.

    Attributes:
        version: The file's ``version`` (1 when absent).
        root: ``root``.
        state: ``state``.
        grpc_address: ``grpc.address`` (the named pipe the kubelet dials).
        cri: The CRI plugin's settings, or ``None`` when that plugin failed to load.
        cri_error: Why the CRI plugin failed to load.
        warnings: Lines containerd logs at level warning while loading.
    """

    version: int
    root: str
    state: str
    grpc_address: str
    cri: CriSettings | None
    cri_error: str = ""
    warnings: tuple[str, ...] = ()


def major_minor(version: str) -> tuple[int, int]:
    """``v1.7.27`` / ``2.1.4`` -> ``(1, 7)`` / ``(2, 1)``."""
    numbers = re.findall(r"\d+", version)
    return (int(numbers[0]), int(numbers[1])) if len(numbers) >= 2 else (1, 7)


def _max_config_version(release: tuple[int, int]) -> int:
    if release[0] < 2:
        return 2
    return 3 if release < (2, 3) else 4


def _go_type(value: object) -> str:
    """The Go type go-toml gives a TOML value (``%T``)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "*toml.Tree"
    return "time.Time"


def _toml_kind(value: object) -> str:
    """go-toml v2's name for a TOML value kind (``cannot decode TOML <kind> ...``)."""
    kinds = {"bool": "boolean", "int64": "integer", "float64": "float", "string": "string"}
    go = _go_type(value)
    if go in kinds:
        return kinds[go]
    return {"[]interface {}": "array", "*toml.Tree": "table"}.get(go, "datetime")


def _fits(kind: str, value: object) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "[]string":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, dict)


def _position(text: str, key: str) -> tuple[int, int]:
    """Row and column (1-based) of the value of a top-level ``key = value`` line."""
    for row, line in enumerate(text.splitlines(), start=1):
        match = re.match(rf"\s*{re.escape(key)}\s*=\s*", line)
        if match:
            return row, match.end() + 1
    return 1, 1


def _parse_error(err: tomllib.TOMLDecodeError) -> tuple[str, int, int]:
    match = re.search(r"\(at line (\d+), column (\d+)\)", str(err))
    message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(err)) or "invalid TOML"
    if match is None:
        return message, 1, 1
    return message, int(match.group(1)), int(match.group(2))


def _decode(data: bytes, path: str, release: tuple[int, int]) -> dict[str, Any]:
    text = data.decode("utf-8", errors="replace")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message, row, col = _parse_error(err)
        message = message[0].lower() + message[1:]
        if release[0] < 2:
            raise ConfigError(f"failed to load TOML: {path}: ({row}, {col}): {message}") from None
        raise ConfigError(
            f"failed to unmarshal TOML at row {row} column {col}: toml: {message}",
            (("error", "Failure unmarshaling TOML"),),
        ) from None
    for key, (kind, go_field) in _TOP_LEVEL.items():
        if key in doc and not _fits(kind, doc[key]):
            value = doc[key]
            if release[0] < 2:
                row, col = _position(text, key)
                raise ConfigError(
                    f"failed to unmarshal TOML: ({row}, {col}): Can't convert "
                    f"{value}({_go_type(value)}) to {kind}"
                )
            target = kind if kind != "table" else f"config.{go_field}Config"
            raise ConfigError(
                f"failed to unmarshal TOML: toml: cannot decode TOML {_toml_kind(value)} into "
                f"struct field config.Config.{go_field} of type {target}"
            )
    return doc


def _version(doc: Mapping[str, Any], path: str, release: tuple[int, int]) -> int:
    version = int(doc.get("version", 1))
    highest = _max_config_version(release)
    if version <= highest:
        return version
    if release[0] < 2:
        raise ConfigError(
            f"failed to load TOML from {path}: unsupported config version `{version}`",
            (
                (
                    "error",
                    f"containerd config version `{version}` is not supported, the max version is "
                    "`2`, use `containerd config default` to generate a new config or manually "
                    "revert to version `2`",
                ),
            ),
        )
    raise ConfigError(
        f"failed to load TOML from {path}: expected containerd config version equal to or less "
        f"than `{highest}`, got `{version}`"
    )


class _PluginError(Exception):
    """The CRI plugin's configuration is wrong; the plugin does not load."""


def _table(parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = parent.get(key, {})
    if not isinstance(value, dict):
        raise _PluginError(f"toml: cannot decode TOML {_toml_kind(value)} into {where}.{key}")
    return value


def _scalar(table: Mapping[str, Any], key: str, kind: str, default: Any, where: str) -> Any:
    if key not in table:
        return default
    value = table[key]
    if not _fits(kind, value):
        raise _PluginError(
            f"toml: cannot decode TOML {_toml_kind(value)} into {where}.{key} of type {kind}"
        )
    return value


def _runtimes(containerd: Mapping[str, Any], where: str) -> dict[str, str]:
    runtimes = dict(DEFAULT_RUNTIMES)
    for name, body in _table(containerd, "runtimes", where).items():
        if not isinstance(body, dict):
            raise _PluginError(f"toml: cannot decode TOML {_toml_kind(body)} into runtimes.{name}")
        runtimes[name] = str(_scalar(body, "runtime_type", "string", runtimes.get(name, ""), name))
    return runtimes


def _hypervisor_runtimes(containerd: Mapping[str, Any], where: str) -> frozenset[str]:
    """The runtimes running each pod in a utility VM (runhcs ``SandboxIsolation = 1``)."""
    chosen = set(DEFAULT_HYPERVISOR_RUNTIMES)
    for name, body in _table(containerd, "runtimes", where).items():
        options = _table(body, "options", f"runtimes.{name}")
        isolation = _scalar(options, "SandboxIsolation", "int", 0, f"runtimes.{name}.options")
        chosen.discard(name)
        if isolation == 1:
            chosen.add(name)
    return frozenset(chosen)


def _cni(table: Mapping[str, Any], v3: bool, warnings: list[str]) -> CniSettings:
    where = "cni"
    bin_dir = _scalar(table, "bin_dir", "string", None, where)
    bin_dirs = _scalar(table, "bin_dirs", "[]string", None, where) if v3 else None
    if bin_dir is not None and bin_dirs is not None:
        raise _PluginError("`cni.bin_dir` and `cni.bin_dirs` cannot be set at the same time")
    if v3 and bin_dir is not None:
        warnings.append("`bin_dir` is deprecated, please use `bin_dirs` instead")
    dirs = tuple(bin_dirs) if bin_dirs else ((bin_dir,) if bin_dir else (DEFAULT_BIN_DIR,))
    return CniSettings(
        bin_dirs=dirs,
        conf_dir=_scalar(table, "conf_dir", "string", DEFAULT_CONF_DIR, where) or DEFAULT_CONF_DIR,
        max_conf_num=_scalar(table, "max_conf_num", "int", 1, where),
        conf_template=_scalar(table, "conf_template", "string", "", where),
        ip_pref=_scalar(table, "ip_pref", "string", "", where),
    )


def _cri_v2(plugin: Mapping[str, Any], default_pause: str, warnings: list[str]) -> CriSettings:
    containerd = _table(plugin, "containerd", "PluginConfig")
    runtimes = _runtimes(containerd, "containerd")
    return _validated(
        CriSettings(
            sandbox_image=_scalar(plugin, "sandbox_image", "string", default_pause, "cri"),
            snapshotter=_scalar(containerd, "snapshotter", "string", "windows", "containerd"),
            default_runtime_name=_scalar(
                containerd, "default_runtime_name", "string", "runhcs-wcow-process", "containerd"
            ),
            runtimes=runtimes,
            hypervisor_runtimes=_hypervisor_runtimes(containerd, "containerd"),
            cni=_cni(_table(plugin, "cni", "PluginConfig"), False, warnings),
            registry_config_path=_scalar(
                _table(plugin, "registry", "PluginConfig"), "config_path", "string", "", "registry"
            ),
        )
    )


def _cri_v3(
    runtime: Mapping[str, Any], images: Mapping[str, Any], default_pause: str, warnings: list[str]
) -> CriSettings:
    containerd = _table(runtime, "containerd", "RuntimeConfig")
    pinned = _table(images, "pinned_images", "ImageConfig")
    return _validated(
        CriSettings(
            sandbox_image=_scalar(pinned, "sandbox", "string", default_pause, "pinned_images"),
            snapshotter=_scalar(images, "snapshotter", "string", "windows", "ImageConfig"),
            default_runtime_name=_scalar(
                containerd, "default_runtime_name", "string", "runhcs-wcow-process", "containerd"
            ),
            runtimes=_runtimes(containerd, "containerd"),
            hypervisor_runtimes=_hypervisor_runtimes(containerd, "containerd"),
            cni=_cni(_table(runtime, "cni", "RuntimeConfig"), True, warnings),
            registry_config_path=_scalar(
                _table(images, "registry", "ImageConfig"), "config_path", "string", "", "registry"
            ),
        )
    )


def _validated(cri: CriSettings) -> CriSettings:
    if not cri.default_runtime_name:
        raise _PluginError("`default_runtime_name` is empty")
    if cri.default_runtime_name not in cri.runtimes:
        raise _PluginError(
            "no corresponding runtime configured in `containerd.runtimes` for `containerd` "
            f'`default_runtime_name = "{cri.default_runtime_name}"'
        )
    return cri


def _migrate_v2_to_v3(plugins: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Migrate the v2 CRI table into the runtime and images plugins, as containerd 2.x does."""
    src = plugins.get(CRI_V2_PLUGIN, {})
    runtime = dict(plugins.get(CRI_V3_RUNTIME, {}))
    images = dict(plugins.get(CRI_V3_IMAGES, {}))
    if not isinstance(src, dict):
        return runtime, images
    containerd = dict(src.get("containerd", {})) if isinstance(src.get("containerd"), dict) else {}
    if "snapshotter" in containerd:
        images.setdefault("snapshotter", containerd.pop("snapshotter"))
    if containerd:
        runtime.setdefault("containerd", containerd)
    cni = src.get("cni")
    if isinstance(cni, dict):
        moved = {k: v for k, v in cni.items() if k != "bin_dir"}
        if "bin_dir" in cni:
            moved["bin_dirs"] = [cni["bin_dir"]]
        runtime.setdefault("cni", moved)
    if "sandbox_image" in src:
        images.setdefault("pinned_images", {})["sandbox"] = src["sandbox_image"]
    if "registry" in src:
        images.setdefault("registry", src["registry"])
    return runtime, images


def load_config(data: bytes | None, path: str, containerd_version: str) -> ContainerdConfig:
    """Load containerd's configuration file as the given containerd release does.

    Args:
        data: The file's bytes, or ``None`` when it does not exist.
        path: The ``--config`` path (it appears in the messages).
        containerd_version: The release being simulated (``v1.7.27``, ``v2.1.4``).

    Returns:
        The configuration; ``cri`` is ``None`` when the CRI plugin would fail to load.

    Raises:
        ConfigError: When containerd would exit (the message is containerd's).
    """
    release = major_minor(containerd_version)
    default_pause = "registry.k8s.io/pause:3.8" if release[0] < 2 else "registry.k8s.io/pause:3.10"
    if data is None:
        missing = f"open {path}: The system cannot find the file specified."
        raise ConfigError(f"failed to load TOML: {path}: {missing}" if release[0] < 2 else missing)
    doc = _decode(data, path, release)
    version = _version(doc, path, release)
    plugins: Mapping[str, Any] = doc.get("plugins", {})
    warnings: list[str] = []
    if version == 1 and "cri" in plugins:  # version 1 names plugins by their short id
        plugins = {**plugins, CRI_V2_PLUGIN: plugins["cri"]}
    cri: CriSettings | None = None
    cri_error = ""
    plugin_id = CRI_V2_PLUGIN if release[0] < 2 else CRI_V3_RUNTIME
    try:
        if release[0] < 2:
            v2 = plugins.get(CRI_V2_PLUGIN, {})
            if not isinstance(v2, dict):
                raise _PluginError(f"toml: cannot decode TOML {_toml_kind(v2)} into PluginConfig")
            cri = _cri_v2(v2, default_pause, warnings)
        else:
            if version < 3:
                warnings.append(
                    f"Configuration migrated from version {version}, use `containerd config "
                    "migrate` to avoid migration"
                )
                runtime, images = _migrate_v2_to_v3(plugins)
            else:
                runtime = plugins.get(CRI_V3_RUNTIME, {})
                images = plugins.get(CRI_V3_IMAGES, {})
            cri = _cri_v3(runtime, images, default_pause, warnings)
    except _PluginError as err:
        cri_error = f"failed to load plugin {plugin_id}: invalid plugin config: {err}"
    grpc = doc.get("grpc", {})
    return ContainerdConfig(
        version=version,
        root=str(doc.get("root", "C:\\ProgramData\\containerd\\root")),
        state=str(doc.get("state", "C:\\ProgramData\\containerd\\state")),
        grpc_address=str(grpc.get("address", "\\\\.\\pipe\\containerd-containerd")),
        cri=cri,
        cri_error=cri_error,
        warnings=tuple(warnings),
    )
