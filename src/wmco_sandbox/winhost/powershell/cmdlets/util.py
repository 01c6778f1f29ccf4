"""Pipeline utility cmdlets: Out-Null, Write-Output, Write-Host, Where-Object, Invoke-Expression.

Small, but they decide what a client sees on stdout and how filters behave in the forms the
operator and the user data use (``| Out-Null``, ``Where-Object Name -eq 'x'``).
"""

from __future__ import annotations

from wmco_sandbox.winhost.powershell.binding import Invocation, P
from wmco_sandbox.winhost.powershell.errors import ErrorRecord
from wmco_sandbox.winhost.powershell.parser import ParseError, parse_script
from wmco_sandbox.winhost.powershell.registry import fq, register
from wmco_sandbox.winhost.powershell.syntax import ScriptBlock
from wmco_sandbox.winhost.powershell.values import PSObject, compare, to_str, truthy

__all__: list[str] = []


@register("Out-Null", [P("InputObject", "object")], common=False)
async def out_null(inv: Invocation) -> list[object]:
    """Out-Null: discard input."""
    return []


@register(
    "Write-Output", [P("InputObject", "object", pos=0, remaining=True), P("NoEnumerate", "switch")]
)
async def write_output(inv: Invocation) -> list[object]:
    """Write-Output: pass values on."""
    value = inv.arg("InputObject")
    return value if isinstance(value, list) else ([] if value is None else [value])


@register("Write-Host", [P("Object", "object", pos=0, remaining=True), P("NoNewline", "switch")])
async def write_host(inv: Invocation) -> list[object]:
    """Write-Host: text straight to stdout (5.1 over a redirected console)."""
    text = to_str(inv.arg("Object"))
    inv.session.out.append(text + ("" if inv.arg("NoNewline") else "\r\n"))
    return []


@register("Where-Object", [
    P("Property", pos=0, kind="object"), P("Value", "object", pos=1), P("EQ", "switch"),
    P("NE", "switch"), P("Match", "switch"), P("Like", "switch"), P("InputObject", "object"),
])  # fmt: skip
async def where_object(inv: Invocation) -> list[object]:
    """Where-Object { script } and the simplified ``Where-Object Name -eq value``."""
    prop = inv.arg("Property")
    session = inv.session
    out: list[object] = []
    for item in inv.input:
        if isinstance(prop, ScriptBlock):
            saved = session.variables.get("_")
            session.variables["_"] = item
            keep = truthy(await session.run_block(prop.body))
            session.variables["_"] = saved
        else:
            value = item.get(to_str(prop)) if isinstance(item, PSObject) else None
            op = next((o for o in ("EQ", "NE", "Match", "Like") if inv.arg(o)), None)
            keep = truthy(compare(op.lower(), value, inv.arg("Value"))) if op else truthy(value)
        if keep:
            out.append(item)
    return out


@register("Invoke-Expression", [P("Command", pos=0, mandatory=True)])
async def invoke_expression(inv: Invocation) -> list[object]:
    """Invoke-Expression: parse and run a string in the current scope."""
    try:
        tree = parse_script(to_str(inv.arg("Command")))
    except ParseError as exc:
        raise inv.fail(
            ErrorRecord(exc.message, fq(inv, exc.error_id), "ParserError", reason="ParseException")
        ) from None
    return await inv.session.run_block(tree)
