r"""ConvertTo-Json exactly as Windows PowerShell 5.1 (.NET Framework) writes it.

5.1 does three things, reproduced here step by step (source: ``ConvertToJsonCommand.cs`` of
the Windows PowerShell code base as published at PowerShell/PowerShell@60b3b30, the FullCLR
branch):

1. ``ProcessValue`` walks the object to ``-Depth`` (default **2**). Anything deeper that is not a
   scalar becomes its *string*: a custom object ``@{Name=x; Subnets=System.Object[]}`` (nested
   values are not expanded: a nested custom object prints as nothing, an array as
   ``System.Object[]``), an array its elements joined with spaces. 5.1 gives no warning.
2. ``JavaScriptSerializer`` writes compact JSON; strings go through
   ``HttpUtility.JavaScriptStringEncode``, so ``'`` ``<`` ``>`` ``&`` and control characters
   become ``\u0027``-style escapes and ``\`` is doubled.
3. Unless ``-Compress``, ``ConvertToPrettyJsonString`` re-indents that text its own way: four
   spaces per level, ``"key":  value`` with two spaces after the colon, a nested object or array
   indented to the column after its key, and ``[]`` printed as ``[``, an empty line, ``]``.

Input from the pipeline is collected; ``$null`` is skipped; one object is written as itself,
several as an array.
"""

from __future__ import annotations

from typing import Any

from wmco_sandbox.winhost.powershell.binding import Invocation, P
from wmco_sandbox.winhost.powershell.errors import ErrorRecord
from wmco_sandbox.winhost.powershell.registry import fq, register
from wmco_sandbox.winhost.powershell.syntax import ScriptBlock
from wmco_sandbox.winhost.powershell.values import PSObject, to_str

__all__ = ["compact_json", "convert_to_json", "from_json", "pretty_json", "ps_string"]

_MAX_DEPTH = 100
_CUSTOM = "System.Management.Automation.PSCustomObject"
_JS_ESCAPES = {"\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\", "\n": "\\n", "\b": "\\b",
               "\f": "\\f"}  # fmt: skip
_JS_UNICODE = {"'", "<", ">", "&", "\u0085", "\u2028", "\u2029"}


# -- 1. ProcessValue -------------------------------------------------------------------------
def ps_string(value: object, recurse: bool = True) -> str:
    """``LanguagePrimitives.ConvertTo(value, [string])`` as 5.1 does it for JSON truncation."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, PSObject):
        if value.type_name != _CUSTOM:
            return to_str(value)
        if not recurse or not value.props:
            return ""  # PSCustomObject.ToString() is empty
        inner = "; ".join(f"{k}={ps_string(v, recurse=False)}" for k, v in value.props.items())
        return "@{" + inner + "}"
    if isinstance(value, list | tuple):
        if not recurse:
            return "System.Object[]"
        return " ".join(ps_string(v, recurse=False) for v in value)
    if isinstance(value, dict):
        return "System.Collections.Hashtable"
    return str(value)


def _process(value: object, depth: int, max_depth: int) -> object:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, ScriptBlock):
        return ps_string(value)
    if depth > max_depth:
        return ps_string(value)
    if isinstance(value, list | tuple):
        return [_process(v, depth + 1, max_depth) for v in value]
    if isinstance(value, dict):
        return {str(k): _process(v, depth + 1, max_depth) for k, v in value.items()}
    if isinstance(value, PSObject):
        return {k: _process(v, depth + 1, max_depth) for k, v in value.props.items()}
    return str(value)


# -- 2. JavaScriptSerializer -----------------------------------------------------------------
def _js_string(text: str) -> str:
    out: list[str] = []
    for ch in text:
        if ch in _JS_ESCAPES:
            out.append(_JS_ESCAPES[ch])
        elif ord(ch) < 0x20 or ch in _JS_UNICODE:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def compact_json(value: Any) -> str:
    """``JavaScriptSerializer.Serialize`` of a processed value (no whitespace at all)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value != int(value) else str(int(value))
    if isinstance(value, str):
        return _js_string(value)
    if isinstance(value, list):
        return "[" + ",".join(compact_json(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{_js_string(str(k))}:{compact_json(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    return _js_string(str(value))


# -- 3. ConvertToPrettyJsonString ------------------------------------------------------------
def _quoted_end(text: str, index: int, out: list[str]) -> int:
    """Copy a string body from ``index`` through its closing quote; return that quote's index."""
    for i in range(index, len(text)):
        out.append(text[i])
        if text[i] == '"':
            j, escaped = i, False
            while j > 0 and text[j - 1] == "\\":
                escaped = not escaped
                j -= 1
            if not escaped:
                return i
    raise ValueError("unterminated string")


def _pretty_list(text: str, index: int, out: list[str], pad: str, spaces: int) -> int:
    out.append("\r\n")
    new_pad = pad + " " * spaces + "    "
    head = True
    i = index
    while i < len(text):
        ch = text[i]
        if ch == "{":
            out.append(new_pad + ch)
            i = _pretty_dict(text, i + 1, out, new_pad, 0)
            head = False
        elif ch == "[":
            out.append(new_pad + ch)
            i = _pretty_list(text, i + 1, out, new_pad, 0)
            head = False
        elif ch == "]":
            out.append("\r\n" + pad + " " * spaces + ch)
            return i
        elif ch == '"':
            out.append((new_pad if head else "") + ch)
            i = _quoted_end(text, i + 1, out)
            head = False
        elif ch == ",":
            out.append(",\r\n")
            head = True
        else:
            out.append((new_pad if head else "") + ch)
            head = False
        i += 1
    raise ValueError("unterminated array")


def _pretty_dict(text: str, index: int, out: list[str], pad: str, spaces: int) -> int:
    out.append("\r\n")
    new_pad = pad + " " * spaces + "    "
    head, before_quote, new_spaces = True, True, 0
    i = index
    while i < len(text):
        ch = text[i]
        if ch == "{":
            out.append(ch)
            i = _pretty_dict(text, i + 1, out, new_pad, new_spaces)
            head = False
        elif ch == "[":
            out.append(ch)
            i = _pretty_list(text, i + 1, out, new_pad, new_spaces)
            head = False
        elif ch == "}":
            out.append("\r\n" + pad + " " * spaces + ch)
            return i
        elif ch == '"':
            out.append((new_pad if head else "") + ch)
            end = _quoted_end(text, i + 1, out)
            if before_quote:
                new_spaces += end - i + 1
            i = end
            head = False
        elif ch == ":":
            out.append(":  ")
            new_spaces += 3
            head, before_quote = False, False
        elif ch == ",":
            out.append(",\r\n")
            head, before_quote, new_spaces = True, True, 0
        else:
            out.append((new_pad if head else "") + ch)
            if before_quote:
                new_spaces += 1
            head = False
        i += 1
    raise ValueError("unterminated object")


def pretty_json(text: str) -> str:
    """5.1's ``ConvertToPrettyJsonString`` of compact JSON."""
    if not text.startswith(("{", "[")):
        return text
    out = [text[0]]
    if text[0] == "{":
        _pretty_dict(text, 1, out, "", 0)
    else:
        _pretty_list(text, 1, out, "", 0)
    return "".join(out)


def convert_to_json(value: object, depth: int = 2, compress: bool = False) -> str:
    """What ``ConvertTo-Json -InputObject value -Depth depth [-Compress]`` writes."""
    text = compact_json(_process(value, 0, depth))
    return text if compress else pretty_json(text)


@register("ConvertTo-Json", [
    P("InputObject", "object", pos=0), P("Depth", "int"), P("Compress", "switch"),
])  # fmt: skip
async def convert_to_json_cmdlet(inv: Invocation) -> list[object]:
    """ConvertTo-Json -InputObject / pipeline input, -Depth, -Compress."""
    depth = inv.arg("Depth", 2)
    assert isinstance(depth, int)
    if depth < 1:
        raise inv.fail(ErrorRecord(
            f"Cannot validate argument on parameter 'Depth'. The {depth} argument is less than "
            "the minimum allowed range of 1. Supply an argument that is greater than or equal "
            "to 1 and then try the command again.", fq(inv, "ParameterArgumentValidationError"),
            "InvalidData", reason="ParameterBindingValidationException",
        ))  # fmt: skip
    if depth > _MAX_DEPTH:
        raise inv.fail(ErrorRecord(
            f"The maximum depth allowed for serialization is {_MAX_DEPTH}.",
            fq(inv, "ReachedMaximumDepthAllowed"), "InvalidOperation",
            reason="InvalidOperationException",
        ))  # fmt: skip
    if "InputObject" in inv.bound:
        items = [inv.bound["InputObject"]]
    elif inv.piped:
        items = list(inv.input)  # an empty pipeline runs no ProcessRecord: no output
    else:
        raise inv.fail(ErrorRecord(
            "Cannot process command because of one or more missing mandatory parameters: "
            "InputObject.", fq(inv, "MissingMandatoryParameter"), "InvalidArgument",
            reason="ParameterBindingException",
        ))  # fmt: skip
    items = [i for i in items if i is not None]
    if not items:
        return []
    value: object = items[0] if len(items) == 1 else items
    return [convert_to_json(value, depth, bool(inv.arg("Compress")))]


def from_json(value: object) -> object:
    """``ConvertFrom-Json`` of a parsed document: objects become ``PSCustomObject``s."""
    if isinstance(value, dict):
        props = {str(k): from_json(v) for k, v in value.items()}
        return PSObject(_CUSTOM, props, view="list" if len(props) > 4 else "table")
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value
