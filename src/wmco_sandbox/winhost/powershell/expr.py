"""Expression-mode parsing of the PowerShell subset: strings, variables, operators, members.

Split from :mod:`~wmco_sandbox.winhost.powershell.parser` (statements and argument mode) to keep each module small; the
statement parser derives from :class:`ExprParser`.
"""

from __future__ import annotations

import re

from wmco_sandbox.winhost.powershell.syntax import (
    ArrayLit,
    Binary,
    ExpandString,
    Expr,
    Index,
    Literal,
    Member,
    ParenExpr,
    Pipeline,
    Script,
    ScriptBlock,
    SubExpr,
    Unary,
    Var,
)  # fmt: skip

__all__ = ["ExprParser", "ParseError"]

_OPERATORS = {
    "eq", "ne", "gt", "lt", "ge", "le", "like", "notlike", "match", "notmatch", "and", "or",
    "not", "split", "join", "ieq", "ine", "ceq", "cne", "imatch", "ilike", "contains",
    "notcontains", "in", "notin", "replace", "is", "isnot", "f",
}  # fmt: skip
_BINARY_PREC = {
    "or": 1, "and": 2, "eq": 3, "ne": 3, "gt": 3, "lt": 3, "ge": 3, "le": 3, "like": 3,
    "notlike": 3, "match": 3, "notmatch": 3, "ieq": 3, "ine": 3, "ceq": 3, "cne": 3,
    "imatch": 3, "ilike": 3, "contains": 3, "notcontains": 3, "in": 3, "notin": 3,
    "replace": 3, "split": 4, "join": 4, "+": 5, "-": 5, "*": 6, "/": 6,
}  # fmt: skip
_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ARG_END = set(" \t\r\n;|(){},&")
_VAR_RE = re.compile(r"[A-Za-z0-9_?]+(?::[A-Za-z0-9_]+)?|\$|\^|\?")
_NUM_RE = re.compile(r"-?(?:0x[0-9a-fA-F]+|\d+)(?![\w.\\:/])")
_PARAM_RE = re.compile(r"-[A-Za-z_][\w-]*:?")


class ParseError(Exception):
    """A PowerShell ParserError.

    Attributes:
        message: PowerShell's message text.
        error_id: The FullyQualifiedErrorId (e.g. ``TerminatorExpectedAtEndOfString``).
        offset: Offset of the error in the script.
        length: Length of the underlined extent.
    """

    def __init__(self, message: str, error_id: str, offset: int, length: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.error_id = error_id
        self.offset = offset
        self.length = length


class ExprParser:
    """Scanner helpers and expression-mode parsing (statements come from the subclass)."""

    def statements(self, terminators: str) -> Script:
        """Parse statements up to a terminator (implemented by the statement parser)."""
        raise NotImplementedError

    def pipeline(self) -> Pipeline:
        """Parse a pipeline (implemented by the statement parser)."""
        raise NotImplementedError

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self, k: int = 0) -> str:
        """Character at pos+k ("" past the end)."""
        i = self.pos + k
        return self.text[i] if i < len(self.text) else ""

    def skip_space(self, newlines: bool = False) -> None:
        """Skip blanks, line continuations and comments (and newlines if asked)."""
        t = self.text
        while self.pos < len(t):
            c = t[self.pos]
            if c in " \t" or (newlines and c in "\r\n"):
                self.pos += 1
            elif c == "`" and self.peek(1) in ("\n", "\r"):
                self.pos += 2
            elif c == "#":
                while self.pos < len(t) and t[self.pos] not in "\r\n":
                    self.pos += 1
            else:
                return

    def _var_follows(self) -> bool:
        nxt = self.peek(1)
        return bool(nxt) and (nxt.isalnum() or nxt in "_{(?")

    def unexpected(self, token: str) -> ParseError:
        """PowerShell's UnexpectedToken error at the current position."""
        return ParseError(
            f"Unexpected token '{token}' in expression or statement.", "UnexpectedToken", self.pos,
            max(1, len(token)),
        )  # fmt: skip

    def word_at(self) -> str:
        """The letters at the current position, lower-cased."""
        m = re.match(r"[A-Za-z]+", self.text[self.pos :])
        return m.group(0).lower() if m else ""

    def _token_text(self) -> str:
        m = re.match(r"[^\s;|(){}]+|.", self.text[self.pos :])
        return m.group(0) if m else ""

    def single_quoted(self) -> str:
        """A '...' literal ('' is one quote; nothing expands)."""
        open_at = self.pos
        self.pos += 1
        buf: list[str] = []
        t = self.text
        while True:
            if self.pos >= len(t):
                raise ParseError(
                    "The string is missing the terminator: '.", "TerminatorExpectedAtEndOfString",
                    open_at, len(t) - open_at,
                )  # fmt: skip
            c = t[self.pos]
            if c == "'":
                if self.peek(1) == "'":
                    buf.append("'")
                    self.pos += 2
                    continue
                self.pos += 1
                return "".join(buf)
            buf.append(c)
            self.pos += 1

    def double_quoted(self) -> ExpandString:
        """A "..." string: backtick escapes, "" and $var / $(...) expansion."""
        open_at = self.pos
        self.pos += 1
        parts: list[str | Expr] = []
        buf: list[str] = []
        t = self.text
        while True:
            if self.pos >= len(t):
                raise ParseError(
                    'The string is missing the terminator: ".', "TerminatorExpectedAtEndOfString",
                    open_at, len(t) - open_at,
                )  # fmt: skip
            c = t[self.pos]
            if c == '"':
                if self.peek(1) == '"':
                    buf.append('"')
                    self.pos += 2
                    continue
                self.pos += 1
                break
            if c == "`" and self.pos + 1 < len(t):
                nxt = t[self.pos + 1]
                buf.append(_ESCAPES.get(nxt, nxt))
                self.pos += 2
                continue
            if c == "$" and self._var_follows():
                parts.append("".join(buf))
                buf = []
                parts.append(self.variable_or_subexpr(in_string=True))
                continue
            buf.append(c)
            self.pos += 1
        parts.append("".join(buf))
        return ExpandString([p for p in parts if p != ""] or [""], start=open_at, end=self.pos)

    def variable_or_subexpr(self, in_string: bool = False) -> Expr:
        """``$name``, ``${name}``, ``$env:X`` or ``$( ... )``."""
        start = self.pos
        if self.peek(1) == "(":
            self.pos += 2
            body = self.statements(terminators=")")
            if self.peek() != ")":
                raise ParseError(
                    "Missing closing ')' in subexpression.", "MissingEndParenthesisInSubexpression",
                    start,
                )  # fmt: skip
            self.pos += 1
            return SubExpr(body, start=start, end=self.pos)
        if self.peek(1) == "{":
            end = self.text.find("}", self.pos)
            if end < 0:
                raise ParseError("Missing '}'.", "MissingEndCurlyBrace", start)
            name = self.text[self.pos + 2 : end]
            self.pos = end + 1
            return Var(name, start=start, end=self.pos)
        m = _VAR_RE.match(self.text, self.pos + 1)
        name = m.group(0) if m else ""
        if in_string and name.endswith(":"):
            name = name[:-1]
        self.pos += 1 + len(name)
        return Var(name, start=start, end=self.pos)

    def expression(self) -> Expr:
        """An expression, possibly a comma array."""
        start = self.pos
        first = self.binary(0)
        self.skip_space()
        if self.peek() != ",":
            return first
        items = [first]
        while self.peek() == ",":
            self.pos += 1
            self.skip_space(newlines=True)
            items.append(self.binary(0))
            self.skip_space()
        return ArrayLit(items, start=start, end=self.pos)

    def binary(self, min_prec: int) -> Expr:
        """Binary operators by precedence (precedence climbing)."""
        left = self.unary()
        while True:
            save = self.pos
            self.skip_space()
            op = self._binary_op()
            if op is None or _BINARY_PREC[op] < min_prec:
                self.pos = save
                return left
            self.pos += len(op) + (1 if op[0].isalpha() else 0)
            self.skip_space(newlines=True)
            right = self.binary(_BINARY_PREC[op] + 1)
            left = Binary(op, left, right, start=left.start, end=self.pos)

    def _binary_op(self) -> str | None:
        c = self.peek()
        if c and c in "+*/":
            return c
        if c == "-":
            m = re.match(r"-([A-Za-z]+)", self.text[self.pos :])
            if m:
                op = m.group(1).lower()
                if op in _BINARY_PREC:
                    return op
                if op in _OPERATORS:
                    return None
                raise ParseError(
                    f"Unexpected token '-{m.group(1)}' in expression or statement.",
                    "UnexpectedToken", self.pos, len(m.group(0)),
                )  # fmt: skip
            return "-"
        return None

    def unary(self) -> Expr:
        """``-not x`` / ``!x`` or a postfix expression."""
        start = self.pos
        if self.peek() == "!":
            self.pos += 1
            self.skip_space()
            return Unary("not", self.unary(), start=start, end=self.pos)
        m = re.match(r"-not(?![\w-])", self.text[self.pos :], re.IGNORECASE)
        if m:
            self.pos += m.end()
            self.skip_space()
            return Unary("not", self.unary(), start=start, end=self.pos)
        return self.postfix()

    def postfix(self) -> Expr:
        """Member access, method calls and indexing."""
        expr = self.primary()
        while True:
            c = self.peek()
            if c == "." and (self.peek(1).isalpha() or self.peek(1) == "_"):
                self.pos += 1
                m = re.match(r"[A-Za-z_]\w*", self.text[self.pos :])
                assert m is not None
                name = m.group(0)
                self.pos += len(name)
                args: list[Expr] | None = None
                if self.peek() == "(":
                    self.pos += 1
                    args = []
                    self.skip_space()
                    while self.peek() != ")":
                        args.append(self.binary(0))
                        self.skip_space()
                        if self.peek() == ",":
                            self.pos += 1
                            self.skip_space()
                        elif self.peek() != ")":
                            raise ParseError(
                                "Missing ')' in method call.", "MissingEndParenthesisInMethodCall",
                                self.pos,
                            )  # fmt: skip
                    self.pos += 1
                expr = Member(expr, name, args, start=expr.start, end=self.pos)
            elif c == "[":
                self.pos += 1
                self.skip_space()
                idx = self.binary(0)
                self.skip_space()
                if self.peek() != "]":
                    raise ParseError(
                        "Array index expression is missing or not valid.", "MissingArrayIndexExpression",
                        self.pos,
                    )  # fmt: skip
                self.pos += 1
                expr = Index(expr, idx, start=expr.start, end=self.pos)
            else:
                return expr

    def primary(self) -> Expr:
        """Literals, variables, parenthesised pipelines, sub-expressions, script blocks."""
        start = self.pos
        c = self.peek()
        if c == "'":
            return Literal(self.single_quoted(), start=start, end=self.pos)
        if c == '"':
            return self.double_quoted()
        if c == "$":
            return self.variable_or_subexpr()
        if c == "@" and self.peek(1) == "(":
            self.pos += 2
            body = self.statements(terminators=")")
            if self.peek() != ")":
                raise ParseError(
                    "Missing closing ')' in subexpression.", "MissingEndParenthesis", start
                )
            self.pos += 1
            return SubExpr(body, array=True, start=start, end=self.pos)
        if c == "(":
            self.pos += 1
            self.skip_space(newlines=True)
            if self.peek() == ")":
                raise ParseError(
                    "An expression was expected after '('.", "ExpectedExpression", self.pos
                )
            pipe = self.pipeline()
            self.skip_space(newlines=True)
            if self.peek() != ")":
                raise ParseError(
                    "Missing closing ')' in expression.", "MissingEndParenthesisInExpression",
                    self.pos,
                )  # fmt: skip
            self.pos += 1
            return ParenExpr(pipe, start=start, end=self.pos)
        if c == "{":
            self.pos += 1
            body = self.statements(terminators="}")
            if self.peek() != "}":
                raise ParseError(
                    "Missing closing '}' in statement block or type definition.",
                    "MissingEndCurlyBrace", start,
                )  # fmt: skip
            self.pos += 1
            return ScriptBlock(body, start=start, end=self.pos)
        m = _NUM_RE.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            return Literal(int(m.group(0), 0), start=start, end=self.pos)
        if c == "":
            raise ParseError(
                "You must provide a value expression on the right-hand side of the operator.",
                "ExpectedValueExpression", self.pos,
            )  # fmt: skip
        raise self.unexpected(self._token_text())
