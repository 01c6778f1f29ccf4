"""A Windows PowerShell 5.1 interpreter for the statements the host understands.

It evaluates the AST of :mod:`~wmco_sandbox.winhost.powershell.parser`: pipelines, assignments, ``if``, ``exit``, variables,
property access, comparisons. Cmdlets (``cmdlets/``) are bound with PowerShell's parameter
binding rules (unambiguous prefixes, positional parameters, switches, validate sets, common
parameters) and fail with PowerShell's binding errors. Native programs get the command line
5.1 would build. The exit status follows ``powershell.exe -c``: ``exit N``, else 0/1 from ``$?``
of the last statement; a script-terminating error gives 1.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from wmco_sandbox.winhost.core.disk import DiskError, FileNode
from wmco_sandbox.winhost.core.machine import Machine, NativeResult
from wmco_sandbox.winhost.core.winargv import join_ps51_native, split_command_line
from wmco_sandbox.winhost.powershell import cmdlets, registry
from wmco_sandbox.winhost.powershell.binding import COMMON, Binder, CmdletSpec, Invocation, P
from wmco_sandbox.winhost.powershell.errors import (
    ErrorRecord,
    PSRuntimeError,
    RebootRequested,
    disk_error_record,
    format_record,
)
from wmco_sandbox.winhost.powershell.parser import (
    ArrayLit,
    Binary,
    Command,
    ExpandString,
    Expr,
    IfStmt,
    Index,
    Literal,
    Member,
    ParamArg,
    ParenExpr,
    ParseError,
    Pipeline,
    Script,
    ScriptBlock,
    Stmt,
    SubExpr,
    Unary,
    Var,
    parse_script,
)  # fmt: skip
from wmco_sandbox.winhost.powershell.syntax import Flow
from wmco_sandbox.winhost.powershell.values import (
    call_method,
    compare,
    format_output,
    get_property,
    to_str,
    truthy,
)
from wmco_sandbox.winhost.shells.dispatch import run_program

__all__ = [
    "CmdletSpec",
    "Invocation",
    "P",
    "PowerShellSession",
    "RebootRequested",
    "ShellResult",
    "run_powershell_exe",
]

PATH_DIRS = (
    "C:\\Windows\\System32",
    "C:\\Windows",
    "C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
    "C:\\Windows\\System32\\OpenSSH",
)


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class _Return(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ShellResult:
    """What an exec request produced (exit status None = the connection dropped)."""

    code: int | None
    stdout: str
    stderr: str


@dataclass
class PowerShellSession(Binder):
    """One ``powershell.exe -c`` run on a machine.

    Args:
        machine: The host.
        user: The user running it.
        console: True when a console exists (user data at boot); False over SSH, where
            progress bars fail (see Install-WindowsFeature).

    Attributes:
        imported: Functions made callable by ``Import-Module``: lower-case name -> (declared
            name, module path).
    """

    machine: Machine
    user: str = "Administrator"
    console: bool = False
    cwd: str = "C:\\Users\\Administrator"
    script: str = ""
    variables: dict[str, object] = field(default_factory=dict)
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    status: bool = True
    imported: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.variables.update(
            {
                "erroractionpreference": "Continue",
                "progresspreference": "Continue",
                "true": True,
                "false": False,
                "null": None,
                "pshome": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
            }
        )

    # -- entry point --------------------------------------------------------------------------
    async def run(self, script: str) -> ShellResult:
        """Run a script as ``powershell.exe -c <script>`` and return the exit status/streams."""
        self.script = script
        try:
            tree = parse_script(script)
        except ParseError as exc:
            record = ErrorRecord(
                exc.message, exc.error_id, "ParserError", activity="",
                reason="ParentContainsErrorRecordException", offset=exc.offset,
                length=exc.length, parser=True,
            )  # fmt: skip
            self.err.append(format_record(record, script))
            return ShellResult(1, "".join(self.out), "".join(self.err))
        code: int | None
        try:
            await self.run_block(tree, top=True)
            code = 0 if self.status else 1
        except _Exit as exc:
            code = exc.code & 0xFFFFFFFF
        except _Return:
            code = 0 if self.status else 1
        except PSRuntimeError as exc:
            self.err.append(format_record(exc.record, script))
            code = 1
        except RebootRequested:
            code = None
        return ShellResult(code, "".join(self.out), "".join(self.err))

    def emit_error(self, record: ErrorRecord, node: Command, name: str, action: str) -> None:
        """Record/print an error according to the action preference."""
        record.command = record.command or name
        record.activity = record.activity or name
        if record.offset == 0 and record.length == 1:
            record.offset, record.length = node.start, node.end - node.start
        if action == "Stop":
            raise PSRuntimeError(record, script_terminating=True)
        if action not in ("SilentlyContinue", "Ignore"):
            self.err.append(format_record(record, self.script))

    # -- statements ---------------------------------------------------------------------------
    async def run_block(self, block: Script, *, top: bool = False) -> list[object]:
        """Run statements; at top level output is printed, else returned."""
        collected: list[object] = []
        for stmt in block.statements:
            values = await self.run_statement(stmt, top=top)
            if top:
                self.out.append(format_output(values))
            else:
                collected.extend(values)
        return collected

    async def run_statement(self, stmt: Stmt, *, top: bool) -> list[object]:
        """Run one statement; statement-terminating errors are printed and set ``$?``."""
        try:
            if isinstance(stmt, IfStmt):
                for cond, body in stmt.clauses:
                    if truthy(await self.run_pipeline(cond, capture=True)):
                        return await self.run_block(body, top=top)
                if stmt.else_body is not None:
                    return await self.run_block(stmt.else_body, top=top)
                return []
            if isinstance(stmt, Flow):
                value = await self.run_pipeline(stmt.value, capture=True) if stmt.value else None
                if stmt.keyword == "exit":
                    raise _Exit(_to_exit_code(value))
                if stmt.keyword == "throw":
                    message = to_str(value) or "ScriptHalted"
                    record = ErrorRecord(
                        message, message, "OperationStopped", target=message,
                        target_type="String", reason="RuntimeException",
                        offset=stmt.start, length=stmt.end - stmt.start,
                    )  # fmt: skip
                    raise PSRuntimeError(record, script_terminating=True)
                if top and value is not None:
                    self.out.append(format_output(_as_list(value)))
                raise _Return()
            return _as_list(await self.run_pipeline(stmt, capture=not top, top=top))
        except PSRuntimeError as exc:
            stop = self.variables.get("erroractionpreference") == "Stop"
            if exc.script_terminating or stop:
                exc.script_terminating = True
                raise
            self.status = False
            self.err.append(format_record(exc.record, self.script))
            return []

    async def run_pipeline(self, pipe: Pipeline, *, capture: bool, top: bool = False) -> object:
        """Run a pipeline; returns its output (a list, or a scalar for one value)."""
        values: list[object] = []
        n = len(pipe.elements)
        ok = True
        for i, element in enumerate(pipe.elements):
            if isinstance(element, Command):
                direct = top and n == 1 and pipe.assign_to is None
                values = await self.invoke(element, values, first=i == 0, direct=direct)
            else:
                result = await self.eval(element)
                values = _as_list(result)
                self.status = not self._sub_failed
                self._sub_failed = False
            ok = ok and self.status
        self.status = ok
        if pipe.assign_to is not None:
            self.variables[pipe.assign_to.lower()] = _unwrap(values)
            return []
        return values if not capture else _unwrap(values)

    _sub_failed: bool = False

    # -- commands -----------------------------------------------------------------------------
    async def invoke(
        self, node: Command, input_: list[object], *, first: bool, direct: bool
    ) -> list[object]:
        """Resolve and run one command of a pipeline."""
        key = node.name.lower()
        key = cmdlets.ALIASES.get(key, key)
        if key in self.imported:  # functions come before cmdlets in command precedence
            spec = registry.module_function(key, node, self.imported)
            return await self.invoke_cmdlet(spec, node, input_, piped=not first)
        found = cmdlets.CMDLETS.get(key)
        if found is not None and (found.available is None or found.available(self.machine)):
            return await self.invoke_cmdlet(found, node, input_, piped=not first)
        program = self.resolve_program(node.name)
        if program is None:
            raise registry.command_not_found(node)
        return await self.invoke_native(program, node, direct=direct)

    def resolve_program(self, name: str) -> str | None:
        """Find a native program on the disk (paths, or PATH with .exe appended)."""
        disk = self.machine.disk
        if "\\" in name or "/" in name:
            candidates = [name, name + ".exe"]
        else:
            candidates = [f"{d}\\{name}{ext}" for d in PATH_DIRS for ext in ("", ".exe")]
        for cand in candidates:
            if cand.lower().endswith(".exe") and isinstance(disk.get(cand), FileNode):
                return disk.format(disk.canonical(disk.parse(cand, self.cwd)))
        return None

    async def invoke_native(self, program: str, node: Command, *, direct: bool) -> list[object]:
        """Run a native program with the command line PowerShell 5.1 builds."""
        args: list[str] = []
        for arg in node.args:
            if isinstance(arg, ParamArg):
                text = "-" + arg.name
                if arg.value is not None:
                    text += ":" + to_str(await self.eval(arg.value))
                args.append(text)
            else:
                value = await self.eval(arg.expr)
                args.extend(to_str(v) for v in (value if isinstance(value, list) else [value]))
        line = join_ps51_native(program, args)
        if node.stop_parsing is not None:
            line = f"{program} {node.stop_parsing}"
        result: NativeResult = await run_program(self.machine, program, line, self.cwd)
        self.variables["lastexitcode"] = result.code
        self.status = result.code == 0
        stdout, stderr = result.stdout, result.stderr
        for stream, target in node.redirections:
            if target == "&1" and stream == "2":
                stdout, stderr = stdout + stderr, ""
            elif target.lower() == "$null":
                if stream in ("1", "*"):
                    stdout = ""
                if stream in ("2", "*"):
                    stderr = ""
            else:
                self._redirect_to_file(target, stdout)
                stdout = ""
        result = NativeResult(result.code, stdout, stderr)
        self.err.append(result.stderr)
        if direct:
            self.out.append(result.stdout)
            return []
        lines: list[object] = list(result.stdout.replace("\r\n", "\n").split("\n"))
        if lines and lines[-1] == "":
            lines.pop()
        return lines

    def _redirect_to_file(self, target: str, text: str) -> None:
        """``> file``: Out-File semantics (UTF-16LE with BOM in 5.1)."""
        path = target.strip("'\"")
        data = b"\xff\xfe" + text.encode("utf-16-le")
        try:
            self.machine.disk.write_file(
                self.machine.disk.format(self.machine.disk.parse(path, self.cwd)), data
            )
        except DiskError as exc:
            record = disk_error_record(exc, path)
            raise PSRuntimeError(record) from None

    async def invoke_cmdlet(
        self, spec: CmdletSpec, node: Command, input_: list[object], *, piped: bool = False
    ) -> list[object]:
        """Bind parameters, run the cmdlet, set ``$?``."""
        bound = await self.bind(spec, node)
        action = to_str(bound.pop("ErrorAction", self.variables.get("erroractionpreference")))
        for common in COMMON:
            bound.pop(common, None)
        redirect = {stream: target.lower() for stream, target in node.redirections}
        if redirect.get("2") == "$null" or redirect.get("*") == "$null":
            action = "SilentlyContinue" if action != "Stop" else action
        inv = Invocation(self, spec.name, bound, input_, node, action, piped=piped)
        try:
            result = await spec.impl(inv)
            if redirect.get("1") == "$null" or redirect.get("*") == "$null":
                result = []
        except PSRuntimeError:
            self.status = False
            raise
        self.status = not inv.had_error
        if inv.had_error:
            self._sub_failed = True
        return result

    # -- expressions --------------------------------------------------------------------------
    async def eval(self, expr: Expr) -> object:
        """Evaluate an expression."""
        if isinstance(expr, Literal):
            return expr.value
        if isinstance(expr, ExpandString):
            parts = [p if isinstance(p, str) else to_str(await self.eval(p)) for p in expr.parts]
            return "".join(parts)
        if isinstance(expr, Var):
            return self.get_var(expr.name)
        if isinstance(expr, ParenExpr):
            return await self.run_pipeline(expr.pipeline, capture=True)
        if isinstance(expr, SubExpr):
            values = await self.run_block(expr.body)
            return values if expr.array else _unwrap(values)
        if isinstance(expr, ArrayLit):
            return [await self.eval(e) for e in expr.items]
        if isinstance(expr, Unary):
            return not truthy(await self.eval(expr.operand))
        if isinstance(expr, Binary):
            return await self._binary(expr)
        if isinstance(expr, Member):
            return await self._member(expr)
        if isinstance(expr, Index):
            obj, idx = await self.eval(expr.obj), await self.eval(expr.index)
            seq = obj if isinstance(obj, list | str) else [obj]
            try:
                return seq[int(to_str(idx))]
            except (IndexError, ValueError):
                return None
        if isinstance(expr, ScriptBlock):
            return expr
        raise TypeError(expr)

    def get_var(self, name: str) -> object:
        """Variable lookup (``$?``, ``$env:X``, automatic variables)."""
        low = name.lower()
        if low == "?":
            return self.status
        if low.startswith("env:"):
            return self.env().get(low[4:])
        return self.variables.get(low)

    def env(self) -> dict[str, str]:
        """Environment variables of the session (lower-case names)."""
        return {
            "computername": self.machine.computer_name,
            "username": self.user,
            "userprofile": f"C:\\Users\\{self.user}",
            "programdata": "C:\\ProgramData",
            "programfiles": "C:\\Program Files",
            "systemroot": "C:\\Windows",
            "windir": "C:\\Windows",
            "systemdrive": "C:",
            "temp": f"C:\\Users\\{self.user}\\AppData\\Local\\Temp",
        }

    async def _binary(self, expr: Binary) -> object:
        op = expr.op
        left = await self.eval(expr.left)
        if op == "and":
            return truthy(left) and truthy(await self.eval(expr.right))
        if op == "or":
            return truthy(left) or truthy(await self.eval(expr.right))
        right = await self.eval(expr.right)
        if op == "+":
            if isinstance(left, int) and not isinstance(left, bool):
                return left + int(to_str(right))
            if isinstance(left, list):
                return left + _as_list(right)
            return to_str(left) + to_str(right)
        if op == "split":
            import re

            items = left if isinstance(left, list) else [left]
            return [piece for v in items for piece in re.split(to_str(right), to_str(v))]
        if op == "join":
            return to_str(right).join(to_str(v) for v in _as_list(left))
        return compare(op, left, right)

    async def _member(self, expr: Member) -> object:
        obj = await self.eval(expr.obj)
        if expr.args is not None:
            args = [await self.eval(a) for a in expr.args]
            return call_method(obj, expr.name, args)
        if isinstance(obj, list):
            got = [get_property(o, expr.name) for o in obj]
            got = [g for g in got if g is not None]
            if expr.name.lower() in ("count", "length"):
                return len(obj)
            return _unwrap(got)
        return get_property(obj, expr.name)


def _as_list(value: object) -> list[object]:
    if isinstance(value, list):
        return value
    return [] if value is None else [value]


def _unwrap(values: list[object]) -> object:
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _to_exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    try:
        return int(to_str(value))
    except ValueError:
        return 0


async def run_powershell_exe(machine: Machine, line: str) -> NativeResult:
    """``powershell.exe [-NoProfile] [-NonInteractive] [-ExecutionPolicy X] [-Command] ...``."""
    argv = split_command_line(line)[1:]
    i = 0
    command: str | None = None
    while i < len(argv):
        arg = argv[i].lower()
        if arg in ("-noprofile", "-nop", "-noninteractive", "-noni", "-nologo", "-sta", "-mta"):
            i += 1
        elif arg in (
            "-executionpolicy",
            "-ep",
            "-ex",
            "-inputformat",
            "-outputformat",
            "-windowstyle",
        ):
            i += 2
        elif arg in ("-command", "-c"):
            command = " ".join(argv[i + 1 :])
            break
        elif arg in ("-encodedcommand", "-enc", "-e"):
            raw = base64.b64decode(argv[i + 1]) if i + 1 < len(argv) else b""
            command = raw.decode("utf-16-le", "replace")
            break
        elif arg.startswith("-"):
            return NativeResult(
                1, stderr=f"-{argv[i][1:]} : The term is not a valid parameter.\r\n"
            )
        else:
            command = " ".join(argv[i:])
            break
    if command is None:
        return NativeResult(0, "Windows PowerShell\r\nCopyright (C) Microsoft Corporation.\r\n")
    session = PowerShellSession(machine)
    result = await session.run(command)
    return NativeResult(result.code if result.code is not None else 0, result.stdout, result.stderr)
