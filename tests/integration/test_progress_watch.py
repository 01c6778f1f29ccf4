"""The progress view's cluster state, kept by watches: no list of every Event per refresh.

Real API server: the operator's failure Events reach :class:`wmco_sandbox.progress.ClusterWatch`
through its watch, and a later Normal Event about the same host clears the failure.
"""

from __future__ import annotations

import datetime
import uuid

import pytest
from lightkube import AsyncClient
from lightkube.models.core_v1 import ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

from kube_helpers import eventually
from wmco_sandbox import progress

pytestmark = [pytest.mark.integration]


def event(namespace: str, message: str, kind: str, second: int) -> Event:
    moment = datetime.datetime(2026, 12, 1, 12, 0, second, tzinfo=datetime.UTC)
    return Event(
        metadata=ObjectMeta(name=f"e-{uuid.uuid4().hex[:8]}", namespace=namespace),
        involvedObject=ObjectReference(
            kind="ConfigMap", name="windows-instances", namespace=namespace
        ),
        reason="InstanceSetupFailure" if kind == "Warning" else "InstanceSetup",
        message=message,
        type=kind,
        firstTimestamp=moment,
        lastTimestamp=moment,
    )


async def test_failures_follow_the_events_through_the_watch(
    kube: AsyncClient, namespace: str
) -> None:
    await kube.create(event(namespace, "instance 10.0.0.5: step connect: refused", "Warning", 1))
    async with progress.ClusterWatch(kube, (namespace,)) as watch:
        assert watch.failures() == {"10.0.0.5": progress.Failure("connect", "refused")}
        assert watch.failures() is watch.failures(), "recomputed without a change"
        await kube.create(
            event(namespace, "instance 10.0.0.5 configured as node win-a in 9.0s", "Normal", 2)
        )

        async def cleared() -> bool:
            return watch.failures() == {}

        await eventually(cleared, "the Normal Event to clear the failure", 20)
        await kube.create(
            event(namespace, "instance 10.0.0.6: step files: disk full", "Warning", 3)
        )

        async def failed() -> bool:
            return "10.0.0.6" in watch.failures()

        await eventually(failed, "a new failure to show", 20)
