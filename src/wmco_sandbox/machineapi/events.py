"""Kubernetes Events about Machines and MachineSets (``core/v1`` Events, what ``kubectl describe`` shows).

Events are best effort, as with client-go's recorder: failing to record one is logged and never
fails the reconcile that wanted it.
"""

from __future__ import annotations

import datetime
import logging
import secrets
from typing import Final

from lightkube import AsyncClient
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

from wmco_sandbox.machineapi import resources

log = logging.getLogger(__name__)

COMPONENT: Final = "wmco-sandbox-machineapi"

NORMAL: Final = "Normal"
WARNING: Final = "Warning"


async def record(
    client: AsyncClient, obj: resources.Obj, *, type_: str, reason: str, message: str
) -> None:
    """Record an Event about ``obj`` (a Machine or MachineSet as JSON).

    Args:
        client: The API client.
        obj: The object the Event is about.
        type_: ``Normal`` or ``Warning``.
        reason: Short CamelCase reason (``FailedCreate``...).
        message: What happened, for a person.
    """
    meta = resources.meta(obj)
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    event = Event(
        metadata=ObjectMeta(
            name=f"{meta.get('name')}.{secrets.token_hex(8)}", namespace=meta.get("namespace")
        ),
        involvedObject=ObjectReference(
            apiVersion=obj.get("apiVersion", resources.API_VERSION),
            kind=obj.get("kind"),
            name=meta.get("name"),
            namespace=meta.get("namespace"),
            uid=meta.get("uid"),
            resourceVersion=meta.get("resourceVersion"),
        ),
        reason=reason,
        message=message,
        type=type_,
        source=EventSource(component=COMPONENT),
        reportingComponent=COMPONENT,
        firstTimestamp=now,
        lastTimestamp=now,
        count=1,
    )
    try:
        await client.create(event)
    except Exception as err:  # best effort, like client-go's recorder
        log.warning("could not record event %s on %s: %s", reason, meta.get("name"), err)
