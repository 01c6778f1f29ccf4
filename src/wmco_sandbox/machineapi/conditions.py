"""Machine API conditions, set the way MAO's ``pkg/util/conditions`` sets them.

Rules kept (``machine-api.md`` §1.4): ``lastTransitionTime`` moves only when type, status, reason,
severity or message change, and is whole seconds in UTC; ``severity`` only accompanies ``False``;
the list stays sorted by ``type``. Pure functions over JSON lists, so the controllers can compare
the result with what is stored and skip writes that change nothing.
"""

from __future__ import annotations

import datetime
from typing import Any

Condition = dict[str, Any]

TRUE = "True"
FALSE = "False"
UNKNOWN = "Unknown"

SEVERITY_WARNING = "Warning"
SEVERITY_ERROR = "Error"

INSTANCE_EXISTS = "InstanceExists"
DRAINABLE = "Drainable"
TERMINABLE = "Terminable"
DRAINED = "Drained"


def now() -> str:
    """The current time as Kubernetes writes it: RFC 3339, whole seconds, UTC."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make(
    type_: str, status: str, *, reason: str = "", message: str = "", severity: str = ""
) -> Condition:
    """A condition without its transition time (filled in by :func:`set_condition`)."""
    condition: Condition = {"type": type_, "status": status}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    if severity and status == FALSE:
        condition["severity"] = severity
    return condition


_COMPARED = ("status", "reason", "severity", "message")


def set_condition(conditions: list[Condition] | None, new: Condition) -> list[Condition]:
    """Return ``conditions`` with ``new`` set, keeping the transition time when nothing changed.

    Args:
        conditions: The stored list (not modified).
        new: A condition from :func:`make`.

    Returns:
        A new list, sorted by type.
    """
    result: list[Condition] = []
    replaced = False
    for current in conditions or []:
        if current.get("type") != new["type"]:
            result.append(current)
            continue
        replaced = True
        if all(current.get(k) == new.get(k) for k in _COMPARED):
            result.append(current)
        else:
            result.append({**new, "lastTransitionTime": now()})
    if not replaced:
        result.append({**new, "lastTransitionTime": now()})
    return sorted(result, key=lambda c: str(c.get("type")))


def get(conditions: list[Condition] | None, type_: str) -> Condition | None:
    """The condition of ``type_``, if present."""
    for condition in conditions or []:
        if condition.get("type") == type_:
            return condition
    return None


def is_true(conditions: list[Condition] | None, type_: str) -> bool:
    """Whether the condition of ``type_`` is present with status ``True``."""
    condition = get(conditions, type_)
    return condition is not None and condition.get("status") == TRUE
