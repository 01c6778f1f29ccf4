"""Tokenizer and parser for the subset of Windows PowerShell 5.1 the host understands.

PowerShell has two parsing modes: *argument mode* (a statement that starts with a command name:
barewords are strings, ``-Name`` is a parameter) and *expression mode* (``$x``, ``(...)``,
literals, operators). The parser switches mode exactly where PowerShell does, and implements
PowerShell's real quoting rules: ``''`` inside single quotes; backtick escapes, ``""`` and
``$var`` / ``$(...)`` expansion inside double quotes; quoted segments glued to barewords
(``key="a b"`` is one argument ``key=a b``). It produces a small AST evaluated by
:mod:`~wmco_sandbox.winhost.powershell.session`. Syntax it cannot parse is a ParserError, as in PowerShell.
"""

from __future__ import annotations

import re

from wmco_sandbox.winhost.powershell.expr import (
    _ARG_END,
    _ESCAPES,
    _NUM_RE,
    _PARAM_RE,
    ExprParser,
    ParseError,
)
from wmco_sandbox.winhost.powershell.syntax import (
    ArrayLit,
    Binary,
    Command,
    ExpandString,
    Expr,
    Flow,
    IfStmt,
    Index,
    Literal,
    Member,
    ParamArg,
    ParenExpr,
    Pipeline,
    Script,
    ScriptBlock,
    Stmt,
    SubExpr,
    Unary,
    ValueArg,
    Var,
)  # fmt: skip

__all__ = [
    "ArrayLit",
    "Binary",
    "Command",
    "ExpandString",
    "Expr",
    "IfStmt",
    "Index",
    "Literal",
    "Member",
    "ParamArg",
    "ParenExpr",
    "ParseError",
    "Pipeline",
    "Script",
    "ScriptBlock",
    "Stmt",
    "SubExpr",
    "Unary",
    "ValueArg",
    "Var",
    "parse_script",
]


def parse_script(text: str) -> Script:
    """Parse a whole script.

    Raises:
        ParseError: On a syntax error, as PowerShell reports it.
    """
    parser = _Parser(text)
    script = parser.statements(terminators="")
    if parser.pos < len(text):
        c = text[parser.pos]
        raise parser.unexpected(c)
    return script


class _Parser(ExprParser):
    def statements(self, terminators: str) -> Script:
        start = self.pos
        stmts: list[Stmt] = []
        while True:
            self.skip_space(newlines=True)
            c = self.peek()
            if c == ";":
                self.pos += 1
                continue
            if c == "" or c in terminators:
                return Script(stmts, start=start, end=self.pos)
            stmts.append(self.statement())
            self.skip_space()
            c = self.peek()
            if c not in ("", ";", "\r", "\n") and c not in terminators:
                raise self.unexpected(self._token_text())

    def statement(self) -> Stmt:
        start = self.pos
        word = self.word_at()
        after = self.peek(len(word))
        if word and (after == "" or not (after.isalnum() or after in "-_.\\:")):
            if word == "if":
                return self.if_statement()
            if word in ("exit", "return", "throw"):
                self.pos += len(word)
                self.skip_space()
                value = None
                if self.peek() not in ("", ";", "\r", "\n", "}", ")"):
                    value = self.pipeline()
                return Flow(word, value, start=start, end=self.pos)
        return self.pipeline()

    def if_statement(self) -> IfStmt:
        start = self.pos
        clauses: list[tuple[Pipeline, Script]] = []
        keyword = "if"
        while True:
            self.pos += len(keyword)
            self.skip_space(newlines=True)
            if self.peek() != "(":
                raise ParseError(
                    f"Missing '(' after '{keyword}' in {keyword} statement.",
                    "MissingOpenParenthesisInIfStatement", self.pos,
                )  # fmt: skip
            self.pos += 1
            self.skip_space(newlines=True)
            if self.peek() == ")":
                raise ParseError(
                    f"Missing condition in if statement after '{keyword} ('.",
                    "IfStatementMissingCondition", self.pos,
                )  # fmt: skip
            cond = self.pipeline()
            self.skip_space(newlines=True)
            if self.peek() != ")":
                raise ParseError(
                    "Missing closing ')' after expression in 'if' statement.",
                    "MissingEndParenthesisAfterStatement", self.pos,
                )  # fmt: skip
            self.pos += 1
            clauses.append((cond, self.block(f"{keyword} statement", keyword)))
            save = self.pos
            self.skip_space(newlines=True)
            word = self.word_at()
            if word == "elseif":
                keyword = "elseif"
                continue
            if word == "else":
                self.pos += 4
                return IfStmt(clauses, self.block("else clause", "else"), start=start, end=self.pos)
            self.pos = save
            return IfStmt(clauses, start=start, end=self.pos)

    def block(self, what: str, keyword: str) -> Script:
        self.skip_space(newlines=True)
        if self.peek() != "{":
            raise ParseError(
                f"Missing statement block after {keyword} ( condition ).",
                "MissingEndCurlyBrace" if keyword == "x" else "MissingStatementBlock", self.pos,
            )  # fmt: skip
        open_at = self.pos
        self.pos += 1
        body = self.statements(terminators="}")
        if self.peek() != "}":
            raise ParseError(
                "Missing closing '}' in statement block or type definition.",
                "MissingEndCurlyBrace", open_at,
            )  # fmt: skip
        self.pos += 1
        del what
        return body

    def pipeline(self) -> Pipeline:
        start = self.pos
        assign_to: str | None = None
        m = re.match(r"\$([A-Za-z_][\w]*)\s*=(?!=)", self.text[self.pos :])
        if m:
            assign_to = m.group(1)
            self.pos += m.end()
            self.skip_space()
            if self.peek() in ("", ";", "\r", "\n"):
                raise ParseError(
                    "You must provide a value expression following the '=' operator.",
                    "ExpectedValueExpression", self.pos,
                )  # fmt: skip
        elements: list[Command | Expr] = []
        first = True
        while True:
            self.skip_space()
            c = self.peek()
            if first and self._starts_expression():
                elements.append(self.expression())
            elif c in ("", ";", "\r", "\n", ")", "}", "|"):
                raise ParseError(
                    "An empty pipe element is not allowed.", "EmptyPipeElement", self.pos
                )
            else:
                elements.append(self.command())
            first = False
            self.skip_space()
            if self.peek() == "|" and self.peek(1) != "|":
                self.pos += 1
                self.skip_space(newlines=True)
                continue
            return Pipeline(elements, assign_to, start=start, end=self.pos)

    def _starts_expression(self) -> bool:
        c, n = self.peek(), self.peek(1)
        if c in "$('\"!@[{" and c:
            return True
        if c.isdigit():
            return _NUM_RE.match(self.text, self.pos) is not None
        if c == "-":
            word = re.match(r"-([A-Za-z]+)", self.text[self.pos :])
            return bool(word and word.group(1).lower() == "not") or n.isdigit()
        return False

    def command(self) -> Command:
        start = self.pos
        if self.peek() == "&":
            self.pos += 1
            self.skip_space()
            name_start = self.pos
            expr = self.primary()
            if not isinstance(expr, Literal | ExpandString):
                raise self.unexpected(self._token_text())
            name = str(expr.value) if isinstance(expr, Literal) else _flat(expr)
        else:
            name_start = self.pos
            name_expr = self.bareword()
            name = _flat(name_expr)
        name_end = self.pos
        args: list[ParamArg | ValueArg] = []
        stop: str | None = None
        redirections: list[tuple[str, str]] = []
        while True:
            self.skip_space()
            c = self.peek()
            if c in ("", ";", "\r", "\n", ")", "}", "|"):
                break
            if c == "&":
                raise ParseError(
                    "The ampersand (&) character is not allowed. The & operator is reserved for "
                    "future use; wrap an ampersand in double quotation marks (\"&\") to pass it "
                    "as part of a string.", "AmpersandNotAllowed", self.pos,
                )  # fmt: skip
            redir = re.match(r"([12*]?)>(>?)(&1|\s*\$null\b|\s*[^\s;|)}]+)", self.text[self.pos :])
            if redir:
                stream = redir.group(1) or "1"
                target = redir.group(3).strip()
                redirections.append((stream, target))
                self.pos += redir.end()
                continue
            if self.text.startswith("--%", self.pos):
                self.pos += 3
                rest_end = self.pos
                while rest_end < len(self.text) and self.text[rest_end] not in "\r\n|":
                    rest_end += 1
                stop = self.text[self.pos : rest_end].lstrip(" ")
                self.pos = rest_end
                break
            arg_start = self.pos
            m = _PARAM_RE.match(self.text, self.pos)
            if m and not _NUM_RE.match(self.text, self.pos):
                self.pos = m.end()
                pname = m.group(0)[1:]
                value: Expr | None = None
                if pname.endswith(":"):
                    pname = pname[:-1]
                    self.skip_space()
                    value = self.argument_value()
                args.append(ParamArg(pname, value, start=arg_start, end=self.pos))
                continue
            expr = self.argument_value()
            args.append(
                ValueArg(expr, bare=isinstance(expr, Literal), start=arg_start, end=self.pos)
            )
        return Command(
            name, name_start, name_end, args, stop, redirections, start=start, end=self.pos
        )

    def argument_value(self) -> Expr:
        start = self.pos
        items = [self.single_argument()]
        while True:
            save = self.pos
            self.skip_space()
            if self.peek() != ",":
                self.pos = save
                break
            self.pos += 1
            self.skip_space(newlines=True)
            items.append(self.single_argument())
        if len(items) == 1:
            return items[0]
        return ArrayLit(items, start=start, end=self.pos)

    def single_argument(self) -> Expr:
        c = self.peek()
        if c in ("", ";", "\r", "\n", ")", "}", "|", ","):
            raise ParseError(
                "Missing expression after ','." if c == "," else "Missing argument in parameter "
                "list.", "MissingExpression", self.pos,
            )  # fmt: skip
        if c == "{":
            return self.primary()
        if c == "$" or c == "(" or c == "@":
            expr = self.postfix()
            if self.peek() in _ARG_END or self.peek() == "":
                return expr
            # glued text after an expression: concatenate like PowerShell
            rest = self.bareword()
            return ExpandString([expr, *rest.parts], start=expr.start, end=self.pos)
        if c and c in "'\"":
            glued = self.bareword()
            if len(glued.parts) == 1 and isinstance(glued.parts[0], str):
                return Literal(glued.parts[0], start=glued.start, end=glued.end)
            return glued
        word = self.bareword()
        if all(isinstance(p, str) for p in word.parts):
            text = _flat(word)
            if re.fullmatch(r"-?\d+", text):
                return Literal(int(text), start=word.start, end=word.end)
            return Literal(text, start=word.start, end=word.end)
        return word

    def bareword(self) -> ExpandString:
        """A generic token: text up to whitespace or a terminator; quotes and $ glued in."""
        start = self.pos
        parts: list[str | Expr] = []
        buf: list[str] = []
        t = self.text
        while self.pos < len(t):
            c = t[self.pos]
            if c in _ARG_END:
                break
            if c == "`":
                nxt = self.peek(1)
                if nxt == "":
                    break
                buf.append(_ESCAPES.get(nxt, nxt))
                self.pos += 2
            elif c == "'":
                buf.append(self.single_quoted())
            elif c == '"':
                inner = self.double_quoted()
                for p in inner.parts:
                    if isinstance(p, str):
                        buf.append(p)
                    else:
                        parts.append("".join(buf))
                        buf = []
                        parts.append(p)
            elif c == "$" and self._var_follows():
                parts.append("".join(buf))
                buf = []
                parts.append(self.variable_or_subexpr())
            else:
                buf.append(c)
                self.pos += 1
        parts.append("".join(buf))
        parts = [p for p in parts if p != ""] or [""]
        if self.pos == start:
            raise self.unexpected(self._token_text())
        return ExpandString(parts, start=start, end=self.pos)


def _flat(expr: ExpandString) -> str:
    return "".join(p if isinstance(p, str) else "" for p in expr.parts)
