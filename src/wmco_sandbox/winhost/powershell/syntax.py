"""The AST of the PowerShell subset: statements, pipelines, commands and expressions.

Every node carries its source extent (``start``/``end`` offsets) because PowerShell error
records point at the failing text (``At line:1 char:N`` and the ``~~~`` underline).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ArrayLit",
    "Binary",
    "Command",
    "ExpandString",
    "Expr",
    "Flow",
    "IfStmt",
    "Index",
    "Literal",
    "Member",
    "Node",
    "ParamArg",
    "ParenExpr",
    "Pipeline",
    "Script",
    "ScriptBlock",
    "Stmt",
    "SubExpr",
    "Unary",
    "ValueArg",
    "Var",
]


@dataclass
class Node:
    """Base of AST nodes: the source extent."""

    start: int = field(default=0, kw_only=True)
    end: int = field(default=0, kw_only=True)


@dataclass
class Literal(Node):
    """A constant (string, int)."""

    value: object


@dataclass
class ExpandString(Node):
    """A double-quoted string: literal pieces and expressions to expand."""

    parts: list[str | Expr]


@dataclass
class Var(Node):
    """``$name`` (``env:X`` for environment variables)."""

    name: str


@dataclass
class SubExpr(Node):
    """``$( statements )`` or ``@( statements )``."""

    body: Script
    array: bool = False


@dataclass
class ParenExpr(Node):
    """``( pipeline )``."""

    pipeline: Pipeline


@dataclass
class Member(Node):
    """``obj.Name`` or ``obj.Name(args)``."""

    obj: Expr
    name: str
    args: list[Expr] | None = None


@dataclass
class Index(Node):
    """``obj[index]``."""

    obj: Expr
    index: Expr


@dataclass
class Unary(Node):
    """``-not x`` / ``!x``."""

    op: str
    operand: Expr


@dataclass
class Binary(Node):
    """``a -op b``."""

    op: str
    left: Expr
    right: Expr


@dataclass
class ArrayLit(Node):
    """``a, b, c``."""

    items: list[Expr]


@dataclass
class ScriptBlock(Node):
    """``{ statements }``."""

    body: Script


Expr = (
    Literal | ExpandString | Var | SubExpr | ParenExpr | Member | Index | Unary | Binary | ArrayLit
) | ScriptBlock


@dataclass
class ParamArg(Node):
    """``-Name`` or ``-Name:value``."""

    name: str
    value: Expr | None = None


@dataclass
class ValueArg(Node):
    """A positional value (bareword, string, variable, parenthesised pipeline...)."""

    expr: Expr
    bare: bool = False


@dataclass
class Command(Node):
    """A command invocation in argument mode."""

    name: str
    name_start: int
    name_end: int
    args: list[ParamArg | ValueArg]
    stop_parsing: str | None = None
    redirections: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Pipeline(Node):
    """Commands (or a leading expression) joined with ``|``; optionally assigned."""

    elements: list[Command | Expr]
    assign_to: str | None = None


@dataclass
class IfStmt(Node):
    """``if (c) { } elseif (c) { } else { }``."""

    clauses: list[tuple[Pipeline, Script]]
    else_body: Script | None = None


@dataclass
class Flow(Node):
    """``exit [n]`` / ``return [x]`` / ``throw [x]``."""

    keyword: str
    value: Pipeline | None = None


Stmt = Pipeline | IfStmt | Flow


@dataclass
class Script(Node):
    """A statement list."""

    statements: list[Stmt]
