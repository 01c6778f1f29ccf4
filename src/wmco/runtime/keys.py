"""Object keys: ``namespace/name`` (``name`` for cluster-scoped objects).

Informer stores and work queues are keyed by them, as in client-go's ``MetaNamespaceKeyFunc``.
"""

from __future__ import annotations

from typing import Any, NewType

ObjectKey = NewType("ObjectKey", str)
"""``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones."""


def make_key(name: str, namespace: str | None = None) -> ObjectKey:
    """Build a key from a name and an optional namespace."""
    return ObjectKey(f"{namespace}/{name}" if namespace else name)


def key_of(obj: Any) -> ObjectKey:
    """The key of an object with ``metadata.name`` and ``metadata.namespace``."""
    metadata = obj.metadata
    return make_key(metadata.name, metadata.namespace)


def split_key(key: str) -> tuple[str | None, str]:
    """Split a key into ``(namespace, name)``; the namespace is ``None`` for cluster scope."""
    namespace, sep, name = key.partition("/")
    if not sep:
        return None, namespace
    return namespace, name
