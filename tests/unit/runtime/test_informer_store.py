"""The informer's store and its relist diff (pure): which synthetic events a relist emits."""

from __future__ import annotations

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from wmco.runtime import informer, keys


def cm(name: str, rv: str, namespace: str = "ns") -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name, namespace=namespace, resourceVersion=rv))


def summary(events: list[informer.Event[ConfigMap]]) -> list[tuple[str, str | None, str | None]]:
    return [
        (e.type.value, e.obj.metadata.name, e.old.metadata.resourceVersion if e.old else None)
        for e in events
    ]


def test_first_replace_adds_everything() -> None:
    store: informer.Store[ConfigMap] = informer.Store()
    events = store.replace([cm("b", "2"), cm("a", "1")])
    assert summary(events) == [("ADDED", "a", None), ("ADDED", "b", None)]
    assert all(e.origin is informer.Origin.LIST for e in events)
    assert store.keys() == ["ns/a", "ns/b"]


def test_relist_diff_emits_deletes_updates_and_adds_but_not_unchanged() -> None:
    store: informer.Store[ConfigMap] = informer.Store()
    store.replace([cm("keep", "1"), cm("gone", "2"), cm("changed", "3")])
    events = store.replace([cm("keep", "1"), cm("changed", "9"), cm("new", "10")])
    assert summary(events) == [
        ("DELETED", "gone", "2"),
        ("MODIFIED", "changed", "3"),
        ("ADDED", "new", None),
    ]
    assert [o.metadata.name for o in store.objects()] == ["changed", "keep", "new"]
    assert store.get("ns/changed").metadata.resourceVersion == "9"  # type: ignore[union-attr]
    assert "ns/gone" not in store


def test_upsert_and_remove_return_previous_state() -> None:
    store: informer.Store[ConfigMap] = informer.Store()
    assert store.upsert(cm("a", "1")) is None
    previous = store.upsert(cm("a", "2"))
    assert previous is not None and previous.metadata.resourceVersion == "1"
    assert store.get_by_name("a", "ns") is not None
    removed = store.remove(cm("a", "3"))
    assert removed is not None and removed.metadata.resourceVersion == "2"
    assert len(store) == 0
    assert store.remove(cm("a", "3")) is None


def test_keys_for_namespaced_and_cluster_scoped_objects() -> None:
    assert keys.make_key("n", "ns") == "ns/n"
    assert keys.make_key("node1") == "node1"
    assert keys.split_key("ns/n") == ("ns", "n")
    assert keys.split_key("node1") == (None, "node1")
    assert keys.key_of(cm("a", "1", namespace="x")) == "x/a"
