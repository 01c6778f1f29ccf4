"""The kubelet's event recorder: Warning events about pods, created as the node.

A real kubelet records pod events through client-go's recorder with its node identity (the
Node authorizer lets a node create and patch events): ``source.component: kubelet``,
``source.host: <node>``, name ``<pod>.<unix nanoseconds in hex>``. The recorder's correlator
folds repeats of the same event into one object whose ``count`` grows and whose
``lastTimestamp`` moves, so a pod retried every few seconds shows one ``NetworkNotReady`` event
with a rising count, not hundreds (``client-go/tools/record/events_cache.go``). Failures to
write an event are logged and otherwise ignored, as client-go does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

from wmco_sandbox.winhost.kubelet import context as kubelet_context
from wmco_sandbox.winhost.kubelet import node as kubelet_node

__all__ = ["EventRecorder"]


@dataclass(slots=True)
class _Recorded:
    name: str
    namespace: str
    count: int


class EventRecorder:
    """Creates pod events as the node, folding repeats into one event with a count."""

    def __init__(self, kubelet: kubelet_context.Kubelet) -> None:
        self._k = kubelet
        self._seen: dict[tuple[str, str, str, str], _Recorded] = {}

    async def pod_event(
        self, client: AsyncClient, pod: Mapping[str, Any], kind: str, reason: str, message: str
    ) -> None:
        """Record an event about a pod.

        Args:
            client: A client with the node's identity.
            pod: The pod (API dict).
            kind: ``Warning`` or ``Normal``.
            reason: The event's reason (``NetworkNotReady``, ``FailedCreatePodSandBox``).
            message: Its message.
        """
        meta = pod.get("metadata") or {}
        namespace, name, uid = str(meta["namespace"]), str(meta["name"]), str(meta.get("uid"))
        stamp = kubelet_node.time_str(kubelet_context.utcnow())
        key = (uid, kind, reason, message)
        try:
            seen = self._seen.get(key)
            if seen is not None:
                seen.count += 1
                patch = {"count": seen.count, "lastTimestamp": stamp}
                await client.patch(
                    Event, seen.name, patch, namespace=seen.namespace, patch_type=PatchType.MERGE
                )
                return
            event_name = f"{name}.{time.time_ns():x}"
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": event_name, "namespace": namespace},
                "involvedObject": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": name,
                    "uid": uid,
                    "apiVersion": "v1",
                    "resourceVersion": str(meta.get("resourceVersion", "")),
                },
                "reason": reason,
                "message": message,
                "source": {"component": "kubelet", "host": self._k.opts.node_name},
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "type": kind,
                "reportingComponent": "kubelet",
                "reportingInstance": self._k.opts.node_name,
            }
            await client.create(cast(Event, Event.from_dict(body)))
            self._seen[key] = _Recorded(event_name, namespace, 1)
        except (ApiError, httpx2.HTTPError) as err:
            self._k.log.error(
                "event.go",
                f'"Server rejected event (will not retry!)" err="{kubelet_context.describe(err)}" '
                f'event="{name}.{reason}"',
            )

    def forget(self, uid: str) -> None:
        """Drop the correlation state of a pod that is gone."""
        for key in [k for k in self._seen if k[0] == uid]:
            del self._seen[key]
