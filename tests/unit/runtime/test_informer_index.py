"""The store's indexes (pure): lookups by value stay right through upserts, removals and relists."""

from __future__ import annotations

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from wmco.runtime import informer


def cm(name: str, owner: str | None, rv: str = "1") -> ConfigMap:
    labels = {"owner": owner} if owner else None
    return ConfigMap(
        metadata=ObjectMeta(name=name, namespace="ns", resourceVersion=rv, labels=labels)
    )


def by_owner(obj: ConfigMap) -> list[str]:
    owner = (obj.metadata.labels or {}).get("owner") if obj.metadata else None
    return [owner] if owner else []


def names(objects: list[ConfigMap]) -> list[str | None]:
    return [o.metadata.name if o.metadata else None for o in objects]


def test_an_index_added_late_covers_what_is_stored_already() -> None:
    store: informer.Store[ConfigMap] = informer.Store()
    store.upsert(cm("b", "x"))
    store.upsert(cm("a", "x"))
    store.upsert(cm("c", "y"))
    store.add_index("owner", by_owner)
    assert names(store.by_index("owner", "x")) == ["a", "b"]
    assert names(store.by_index("owner", "y")) == ["c"]
    assert store.by_index("owner", "z") == []
    assert store.index_values("owner") == ["x", "y"]


def test_upsert_moves_an_object_between_values_and_remove_drops_it() -> None:
    store: informer.Store[ConfigMap] = informer.Store()
    store.add_index("owner", by_owner)
    store.upsert(cm("a", "x"))
    store.upsert(cm("a", "y", rv="2"))
    assert store.by_index("owner", "x") == []
    assert names(store.by_index("owner", "y")) == ["a"]
    store.upsert(cm("a", None, rv="3"))
    assert store.index_values("owner") == []
    store.upsert(cm("a", "y", rv="4"))
    store.remove(cm("a", "y", rv="5"))
    assert store.by_index("owner", "y") == [] and store.index_values("owner") == []


def test_a_relist_rebuilds_the_index_from_the_fresh_list() -> None:
    store: informer.Store[ConfigMap] = informer.Store()
    store.add_index("owner", by_owner)
    store.replace([cm("a", "x"), cm("b", "x")])
    store.replace([cm("b", "y", rv="2"), cm("c", "x")])
    assert names(store.by_index("owner", "x")) == ["c"]
    assert names(store.by_index("owner", "y")) == ["b"]


def test_the_first_index_of_a_name_is_kept() -> None:
    store: informer.Store[ConfigMap] = informer.Store()
    store.add_index("owner", by_owner)
    store.add_index("owner", lambda obj: ["other"])
    store.upsert(cm("a", "x"))
    assert names(store.by_index("owner", "x")) == ["a"]
