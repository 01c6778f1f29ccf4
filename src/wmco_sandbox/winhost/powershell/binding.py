"""PowerShell parameter binding for the simulated cmdlets.

Named parameters by exact name, alias or unambiguous prefix; then positional parameters in
order, restricted to the parameter set already chosen; switches; conversions to string, int,
enum and ValidateSet values. Every failure is PowerShell's own ParameterBindingException record
(NamedParameterNotFound, AmbiguousParameter, MissingArgument, PositionalParameterNotFound...),
so a command a real host would reject is rejected here too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wmco_sandbox.winhost.powershell.errors import CMDLET_CLASSES, ErrorRecord, PSRuntimeError
from wmco_sandbox.winhost.powershell.syntax import Command, Expr, ParamArg, ValueArg
from wmco_sandbox.winhost.powershell.values import to_str, truthy

if TYPE_CHECKING:
    from wmco_sandbox.winhost.powershell.session import PowerShellSession

__all__ = ["COMMON", "Binder", "CmdletImpl", "CmdletSpec", "Invocation", "P"]

COMMON = {
    "ErrorAction": ("ea",), "WarningAction": ("wa",), "InformationAction": ("infa",),
    "Verbose": ("vb",), "Debug": ("db",), "ErrorVariable": ("ev",), "WarningVariable": ("wv",),
    "InformationVariable": ("iv",), "OutVariable": ("ov",), "OutBuffer": ("ob",),
    "PipelineVariable": ("pv",),
}  # fmt: skip
_ACTIONS = ("SilentlyContinue", "Stop", "Continue", "Inquire", "Ignore", "Suspend")


@dataclass(frozen=True)
class P:
    """A cmdlet parameter.

    Attributes:
        name: Parameter name.
        kind: ``switch``, ``string``, ``strings``, ``object``, ``int``, ``block``.
        pos: Position for positional binding.
        aliases: Exact aliases.
        values: Allowed values (ValidateSet, or enum names when ``enum_type`` is set).
        enum_type: .NET enum type name, for enum conversion errors.
        mandatory: Mandatory parameter.
        sets: Parameter sets it belongs to (None = all).
        remaining: Takes all remaining positional arguments (ValueFromRemainingArguments).
    """

    name: str
    kind: str = "string"
    pos: int | None = None
    aliases: tuple[str, ...] = ()
    values: tuple[str, ...] | None = None
    enum_type: str | None = None
    mandatory: bool = False
    sets: tuple[str, ...] | None = None
    remaining: bool = False


@dataclass
class Invocation:
    """One bound cmdlet call (``piped``: a command before it in the pipeline feeds ``input``)."""

    session: PowerShellSession
    name: str
    bound: dict[str, object]
    input: list[object]
    node: Command
    error_action: str
    had_error: bool = False
    piped: bool = False

    def arg(self, name: str, default: object = None) -> object:
        """A bound parameter value."""
        return self.bound.get(name, default)

    def error(self, record: ErrorRecord) -> None:
        """Write a non-terminating error (honours -ErrorAction / $ErrorActionPreference)."""
        self.had_error = True
        self.session.emit_error(record, self.node, self.name, self.error_action)

    def fail(self, record: ErrorRecord) -> PSRuntimeError:
        """A statement-terminating error to raise."""
        record.command = record.command or self.name
        if not record.activity:
            record.activity = self.name
        return PSRuntimeError(record)


CmdletImpl = Callable[[Invocation], Awaitable[list[object]]]


@dataclass
class CmdletSpec:
    """A cmdlet (or a module function): its parameters and implementation.

    Attributes:
        name: The command name as PowerShell shows it.
        params: Its parameters.
        impl: The implementation.
        common: Whether the common parameters (``-ErrorAction``...) apply.
        available: Whether the command exists on a given machine (e.g. only with a Windows
            feature enabled); ``None`` = always. A missing command is CommandNotFound.
    """

    name: str
    params: list[P]
    impl: CmdletImpl
    common: bool = True
    available: Callable[[Any], bool] | None = None


class Binder:
    """Parameter binding, mixed into the PowerShell session."""

    async def eval(self, expr: Expr) -> object:
        """Evaluate an argument expression (provided by the session)."""
        raise NotImplementedError

    async def bind(self, spec: CmdletSpec, node: Command) -> dict[str, object]:
        """PowerShell parameter binding: named (prefixes, aliases), then positional."""
        params = list(spec.params)
        if spec.common:
            for name, aliases in COMMON.items():
                kind = "string" if name.endswith(("Action", "Variable")) else "switch"
                values = _ACTIONS if name.endswith("Action") else None
                params.append(P(name, kind, aliases=aliases, values=values))
        bound: dict[str, object] = {}
        positional: list[ValueArg] = []
        args = list(node.args)
        i = 0
        while i < len(args):
            arg = args[i]
            i += 1
            if isinstance(arg, ValueArg):
                positional.append(arg)
                continue
            param = self._match_param(spec, params, arg)
            if param.name in bound:
                raise PSRuntimeError(self._bind_error(
                    spec, arg, f"Cannot bind parameter because parameter '{param.name}' is "
                    "specified more than once. To provide multiple values to parameters that can "
                    "accept multiple values, use the array syntax. For example, \"-parameter "
                    "value1,value2,value3\".", "ParameterAlreadyBound",
                ))  # fmt: skip
            if param.kind == "switch":
                bound[param.name] = truthy(await self.eval(arg.value)) if arg.value else True
                continue
            if arg.value is not None:
                value_expr: Expr | None = arg.value
            elif i < len(args) and isinstance(args[i], ValueArg):
                nxt = args[i]
                assert isinstance(nxt, ValueArg)
                value_expr = nxt.expr
                i += 1
            else:
                value_expr = None
            if value_expr is None:
                raise PSRuntimeError(self._bind_error(
                    spec, arg, f"Missing an argument for parameter '{param.name}'. Specify a "
                    f"parameter of type '{_type_name(param)}' and try again.", "MissingArgument",
                ))  # fmt: skip
            bound[param.name] = await self._convert(spec, param, await self.eval(value_expr), arg)
        by_name = {p.name: p for p in params}
        active: set[str] | None = None
        for name in bound:
            sets = by_name[name].sets
            if sets is not None:
                active = set(sets) if active is None else active & set(sets)
        if active is not None and not active:
            record = ErrorRecord(
                "Parameter set cannot be resolved using the specified named parameters.",
                f"AmbiguousParameterSet,{CMDLET_CLASSES.get(spec.name, spec.name)}",
                "InvalidArgument", activity=spec.name, reason="ParameterBindingException",
                command=spec.name, offset=node.start, length=node.end - node.start,
            )  # fmt: skip
            raise PSRuntimeError(record)
        slots = sorted((p for p in params if p.pos is not None), key=lambda p: p.pos or 0)
        slots = [
            p for p in slots
            if p.name not in bound and (p.sets is None or active is None or active & set(p.sets))
        ]  # fmt: skip
        for arg in positional:
            if not slots:
                value = await self.eval(arg.expr)
                raise PSRuntimeError(self._bind_error(
                    spec, arg, "A positional parameter cannot be found that accepts argument "
                    f"'{to_str(value)}'.", "PositionalParameterNotFound",
                ))  # fmt: skip
            param = slots[0]
            value = await self.eval(arg.expr)
            if param.remaining and param.name in bound:
                previous = bound[param.name]
                merged = previous if isinstance(previous, list) else [previous]
                bound[param.name] = [*merged, value]
                continue
            if not param.remaining:
                slots.pop(0)
            bound[param.name] = await self._convert(spec, param, value, arg)
        missing = [p.name for p in params if p.mandatory and p.name not in bound]
        if missing:
            record = ErrorRecord(
                "Cannot process command because of one or more missing mandatory parameters: "
                f"{' '.join(missing)}.",
                f"MissingMandatoryParameter,{CMDLET_CLASSES.get(spec.name, spec.name)}",
                "InvalidArgument", activity=spec.name, reason="ParameterBindingException",
                command=spec.name, offset=node.start, length=node.end - node.start,
            )  # fmt: skip
            raise PSRuntimeError(record)
        return bound

    def _match_param(self, spec: CmdletSpec, params: list[P], arg: ParamArg) -> P:
        want = arg.name.lower()
        exact = [p for p in params if p.name.lower() == want or want in p.aliases]
        if exact:
            return exact[0]
        matches = [p for p in params if p.name.lower().startswith(want)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise PSRuntimeError(self._bind_error(
                spec, arg, f"A parameter cannot be found that matches parameter name '{arg.name}'.",
                "NamedParameterNotFound",
            ))  # fmt: skip
        names = " ".join("-" + p.name for p in matches)
        raise PSRuntimeError(self._bind_error(
            spec, arg, f"Parameter cannot be processed because the parameter name '{arg.name}' "
            f"is ambiguous. Possible matches include: {names}.", "AmbiguousParameter",
        ))  # fmt: skip

    def _bind_error(
        self, spec: CmdletSpec, arg: ParamArg | ValueArg, message: str, error_id: str,
        category: str = "InvalidArgument", reason: str = "ParameterBindingException",
    ) -> ErrorRecord:  # fmt: skip
        return ErrorRecord(
            message, f"{error_id},{CMDLET_CLASSES.get(spec.name, spec.name)}", category,
            activity=spec.name, reason=reason, command=spec.name, offset=arg.start,
            length=max(1, arg.end - arg.start),
        )  # fmt: skip

    async def _convert(
        self, spec: CmdletSpec, param: P, value: object, arg: ParamArg | ValueArg
    ) -> object:
        if param.kind in ("object", "block"):
            return value
        if param.kind == "strings":
            items = value if isinstance(value, list) else [value]
            texts = [to_str(v) for v in items]
        else:
            if isinstance(value, list) and param.kind in ("string", "int"):
                raise PSRuntimeError(self._bind_error(
                    spec, arg, f"Cannot convert 'System.Object[]' to the type "
                    f"'{_type_name(param)}' required by parameter '{param.name}'. Specified "
                    "method is not supported.", "CannotConvertArgument",
                ))  # fmt: skip
            texts = [to_str(value)]
        if param.kind == "int":
            try:
                return int(texts[0])
            except ValueError:
                raise PSRuntimeError(self._bind_error(
                    spec, arg, f"Cannot bind parameter '{param.name}'. Cannot convert value "
                    f"\"{texts[0]}\" to type \"System.Int32\". Error: \"Input string was not in a "
                    "correct format.\"", "CannotConvertArgumentNoMessage",
                )) from None  # fmt: skip
        if param.values is not None:
            canon = []
            for text in texts:
                found = [v for v in param.values if v.lower() == text.lower()]
                if not found:
                    raise PSRuntimeError(self._value_error(spec, param, text, arg))
                canon.append(found[0])
            texts = canon
        if param.name.endswith("Path") and any(t == "" for t in texts):
            raise PSRuntimeError(self._bind_error(
                spec, arg, f"Cannot bind argument to parameter '{param.name}' because it is an "
                "empty string.", "ParameterArgumentValidationErrorEmptyStringNotAllowed",
                "InvalidData", "ParameterBindingValidationException",
            ))  # fmt: skip
        return texts if param.kind == "strings" else texts[0]

    def _value_error(
        self, spec: CmdletSpec, param: P, text: str, arg: ParamArg | ValueArg
    ) -> ErrorRecord:
        values = param.values or ()
        if param.enum_type:
            msg = (
                f"Cannot bind parameter '{param.name}'. Cannot convert value \"{text}\" to type "
                f'"{param.enum_type}". Error: "Unable to match the identifier name {text} to a '
                "valid enumerator name. Specify one of the following enumerator names and try "
                f'again:\n{", ".join(values)}"'
            )
            return self._bind_error(spec, arg, msg, "CannotConvertArgumentNoMessage")
        msg = (
            f"Cannot validate argument on parameter '{param.name}'. The argument \"{text}\" does "
            f'not belong to the set "{",".join(values)}" specified by the ValidateSet attribute. '
            "Supply an argument that is in the set and then try the command again."
        )
        return self._bind_error(
            spec, arg, msg, "ParameterArgumentValidationError", "InvalidData",
            "ParameterBindingValidationException",
        )  # fmt: skip


def _type_name(param: P) -> str:
    return {
        "strings": "System.String[]", "int": "System.Int32", "object": "System.Object[]",
        "block": "System.Management.Automation.ScriptBlock",
    }.get(param.kind, param.enum_type or "System.String")  # fmt: skip
