"""The README's way of listing the operator's Events works on a real API server."""

from __future__ import annotations

from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Event

from wmco import kube as wmco_kube
from wmco import names


async def test_the_operators_events_are_selected_by_reporting_component(
    kube: AsyncClient, namespace: str
) -> None:
    target = await kube.create(
        ConfigMap(metadata=ObjectMeta(name="windows-instances", namespace=namespace))
    )
    ours = wmco_kube.EventRecorder(kube, component=names.EVENT_COMPONENT)  # the operator's
    other = wmco_kube.EventRecorder(kube, component="someone-else")
    await ours.emit_event(wmco_kube.ref_of(target), "Warning", "InvalidInstance", "entry ignored")
    await other.emit_event(wmco_kube.ref_of(target), "Normal", "Other", "not ours")
    # what the README says: kubectl get events -A --field-selector reportingComponent=<that>
    selected = [
        event
        async for event in kube.list(
            Event, namespace="*", fields={"reportingComponent": names.EVENT_COMPONENT}
        )
        if event.metadata and event.metadata.namespace == namespace
    ]
    assert [event.reason for event in selected] == ["InvalidInstance"]
