"""Label selectors: matching (``metav1.LabelSelectorAsSelector``) and the canonical string form.

The MachineSet controller needs both: matching decides which Machines a set owns, and the string
form is ``status.labelSelector``, which the scale subresource reports as ``status.selector`` (what
``kubectl scale`` and autoscalers read). Kubernetes semantics, including the one that surprises:
an empty selector (``{}``) matches everything in Kubernetes but the MachineSet controller treats it
as matching nothing (``machine-api.md`` §3.2); that choice lives in the caller, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Selector = Mapping[str, Any]


def _requirements(selector: Selector) -> list[tuple[str, str, list[str]]]:
    reqs: list[tuple[str, str, list[str]]] = [
        (key, "In", [str(value)]) for key, value in (selector.get("matchLabels") or {}).items()
    ]
    for expr in selector.get("matchExpressions") or []:
        reqs.append(
            (str(expr["key"]), str(expr["operator"]), [str(v) for v in expr.get("values") or []])
        )
    return reqs


def is_empty(selector: Selector | None) -> bool:
    """Whether the selector has neither matchLabels nor matchExpressions."""
    return not selector or not _requirements(selector)


def matches(selector: Selector, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy every requirement of ``selector``.

    Args:
        selector: A ``metav1.LabelSelector`` as JSON.
        labels: The object's labels.

    Returns:
        True when all requirements hold (an empty selector matches everything).

    Raises:
        ValueError: An unknown operator (the API server's validation would have refused it).
    """
    for key, operator, values in _requirements(selector):
        if operator == "In":
            ok = key in labels and labels[key] in values
        elif operator == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif operator == "Exists":
            ok = key in labels
        elif operator == "DoesNotExist":
            ok = key not in labels
        else:
            raise ValueError(f"unknown label selector operator {operator!r} for key {key!r}")
        if not ok:
            return False
    return True


def format_selector(selector: Selector) -> str:
    """The canonical string form (``metav1.FormatLabelSelector``).

    Requirements are sorted by key; ``matchLabels`` entries read ``k=v``, and expressions
    ``k in (a,b)``, ``k notin (a,b)``, ``k`` and ``!k``.

    Args:
        selector: A ``metav1.LabelSelector`` as JSON.

    Returns:
        The string, or ``"<none>"`` for an empty selector (as Kubernetes prints it).
    """
    parts: list[tuple[str, str]] = []
    for key, operator, values in _requirements(selector):
        joined = ",".join(sorted(values))
        if operator == "In" and len(values) == 1:
            text = f"{key}={values[0]}"
        elif operator == "In":
            text = f"{key} in ({joined})"
        elif operator == "NotIn":
            text = f"{key} notin ({joined})"
        elif operator == "Exists":
            text = key
        else:
            text = f"!{key}"
        parts.append((key, text))
    if not parts:
        return "<none>"
    return ",".join(text for _, text in sorted(parts, key=lambda p: p[0]))
