"""PowerShell values: objects with properties, truthiness, comparisons and output formatting.

Output that reaches stdout is what ``Out-Default`` would print on a redirected 5.1 console:
scalars as text, objects through their default table or list view, CRLF line ends, and the
blank-line framing of 5.1's formatter.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "PSObject", "call_method", "compare", "format_output", "get_property", "to_str", "truthy",
]  # fmt: skip


@dataclass
class PSObject:
    """An object with named properties and a default view.

    Attributes:
        type_name: .NET type name (objects of one type are formatted together).
        props: Property values, in display order.
        view: ``table`` or ``list``.
        columns: Table columns (default: all properties).
        widths: Fixed table column widths (None = fit to content).
        render: Custom formatter for a run of objects of this type (overrides the view).
    """

    type_name: str
    props: dict[str, object]
    view: str = "table"
    columns: list[str] | None = None
    widths: list[int] | None = None
    render: Callable[[list[PSObject]], str] | None = field(default=None, repr=False)

    def get(self, name: str) -> object:
        """Property by case-insensitive name; None when absent."""
        for key, value in self.props.items():
            if key.lower() == name.lower():
                return value
        return None

    def __str__(self) -> str:
        return self.type_name


def to_str(value: object) -> str:
    """PowerShell's conversion of a value to string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return " ".join(to_str(v) for v in value)
    return str(value)


def truthy(value: object) -> bool:
    """PowerShell's conversion to bool."""
    if isinstance(value, list):
        if len(value) == 1:
            return truthy(value[0])
        return len(value) > 0
    if value is None:
        return False
    if isinstance(value, bool | int):
        return bool(value)
    if isinstance(value, str):
        return value != ""
    return True


def _scalar_compare(op: str, left: object, right: object) -> object:
    if op == "match" or op == "notmatch" or op == "imatch":
        found = re.search(to_str(right), to_str(left), re.IGNORECASE) is not None
        return found if op != "notmatch" else not found
    if op in ("like", "notlike", "ilike"):
        hit = fnmatch.fnmatchcase(to_str(left).lower(), to_str(right).lower())
        return hit if op != "notlike" else not hit
    if isinstance(left, int) and not isinstance(left, bool):
        try:
            r: object = int(to_str(right))
        except ValueError:
            r = right
        lv: object = left
    else:
        lv, r = to_str(left).lower(), to_str(right).lower()
        if op in ("ceq", "cne"):
            lv, r = to_str(left), to_str(right)
    eq = lv == r
    if op in ("eq", "ieq", "ceq"):
        return eq
    if op in ("ne", "ine", "cne"):
        return not eq
    try:
        return {
            "gt": lv > r,  # type: ignore[operator]
            "lt": lv < r,  # type: ignore[operator]
            "ge": lv >= r,  # type: ignore[operator]
            "le": lv <= r,  # type: ignore[operator]
        }[op]
    except TypeError:
        return False


def _contains(collection: object, value: object) -> bool:
    items = collection if isinstance(collection, list) else [collection]
    return any(truthy(_scalar_compare("eq", item, value)) for item in items)


def compare(op: str, left: object, right: object) -> object:
    """Evaluate a comparison; with a list on the left it filters, as PowerShell does.

    ``-contains`` / ``-notcontains`` (collection on the left) and ``-in`` / ``-notin`` (on the
    right) compare each element with ``-eq``'s rules and answer one bool.
    """
    if op in ("contains", "notcontains"):
        return _contains(left, right) is (op == "contains")
    if op in ("in", "notin"):
        return _contains(right, left) is (op == "in")
    if isinstance(left, list) and op in (
        "eq", "ne", "match", "notmatch", "like", "notlike", "ieq", "ine", "imatch", "gt", "lt",
    ):  # fmt: skip
        return [v for v in left if truthy(_scalar_compare(op, v, right))]
    return _scalar_compare(op, left, right)


def _table(objs: list[PSObject]) -> str:
    first = objs[0]
    cols = first.columns or list(first.props)
    cells = [[to_str(o.get(c)) for c in cols] for o in objs]
    widths = first.widths or [
        max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)
    ]

    def line(values: list[str]) -> str:
        out = []
        for i, v in enumerate(values):
            last = i == len(values) - 1
            out.append(v if last else v[: widths[i]].ljust(widths[i]))
        return " ".join(out).rstrip()

    rows = [line(cols), line(["-" * len(c) for c in cols]), *(line(r) for r in cells)]
    return "\r\n" + "\r\n".join(rows) + "\r\n\r\n\r\n"


def _list(objs: list[PSObject]) -> str:
    blocks = []
    for o in objs:
        width = max((len(k) for k in o.props), default=0)
        blocks.append("\r\n".join(f"{k.ljust(width)} : {to_str(v)}" for k, v in o.props.items()))
    return "\r\n" + "\r\n\r\n".join(blocks) + "\r\n\r\n\r\n"


def format_output(values: list[object]) -> str:
    """Format pipeline output the way Out-Default prints it to a redirected stdout."""
    out: list[str] = []
    run: list[PSObject] = []

    def flush() -> None:
        if not run:
            return
        first = run[0]
        if first.render is not None:
            out.append(first.render(list(run)))
        elif first.view == "list":
            out.append(_list(run))
        else:
            out.append(_table(run))
        run.clear()

    for value in _flatten(values):
        if isinstance(value, PSObject):
            if run and run[0].type_name != value.type_name:
                flush()
            run.append(value)
            continue
        flush()
        if value is None:
            continue
        out.append(to_str(value) + "\r\n")
    flush()
    return "".join(out)


def _flatten(values: list[object]) -> list[object]:
    flat: list[object] = []
    for v in values:
        if isinstance(v, list):
            flat.extend(_flatten(v))
        else:
            flat.append(v)
    return flat


def get_property(obj: object, name: str) -> object:
    """Property of an object (PSObject properties, string Length)."""
    if isinstance(obj, PSObject):
        return obj.get(name)
    if isinstance(obj, str) and name.lower() == "length":
        return len(obj)
    return None


def call_method(obj: object, name: str, args: list[object]) -> object:
    """The few .NET string methods scripts use (Trim, ToLower, Split...)."""
    if isinstance(obj, list):
        return [call_method(o, name, args) for o in obj]
    text = to_str(obj)
    low = name.lower()
    if low == "trim":
        return text.strip(to_str(args[0])) if args else text.strip()
    if low == "tolower":
        return text.lower()
    if low == "toupper":
        return text.upper()
    if low == "tostring":
        return text
    if low == "contains":
        return to_str(args[0]) in text
    if low == "startswith":
        return text.startswith(to_str(args[0]))
    if low == "endswith":
        return text.endswith(to_str(args[0]))
    if low == "replace":
        return text.replace(to_str(args[0]), to_str(args[1]))
    if low == "split":
        return text.split(to_str(args[0])) if args else text.split()
    return None
