"""Moving one configured host to the current SSH key, for the host controllers (issue 11).

:meth:`wmco.controllers.hosts.Hosts.converge` calls :func:`rekey_host` first for a configured
host whose Node carries another ``pub-key-hash``: :func:`wmco.nodeconfig.rekey.rekey` replaces
the key the host trusts (no service touched), and an Event on the Node says so
(``HostKeyRotated``), or names the host that accepts none of the keys
(``HostKeyRotationFailed``, the host stays on the key it trusts).

It waits (a short requeue) until Secret ``wmco-trusted-private-key`` holds the current key, so
an operator restarted mid-rotation still has every key some host trusts.
"""

from __future__ import annotations

import asyncio
import logging

from lightkube.resources.core_v1 import Node, Secret

from wmco import kube, names
from wmco.cluster import trustedkeys
from wmco.nodeconfig import instance as instance_mod
from wmco.nodeconfig import rekey
from wmco.runtime import controller as controller_mod
from wmco.runtime import metrics as metrics_mod

log = logging.getLogger(__name__)

TRUSTED_KEY_WAIT = 2.0
"""Seconds before looking again while the trusted-key Secret lacks the current key."""


async def rekey_host(
    instance: instance_mod.Instance,
    inputs: instance_mod.Inputs,
    node: Node,
    *,
    subject: str,
    client: kube.Client,
    recorder: kube.EventRecorder,
    slots: asyncio.Semaphore,
    trusted: Secret | None,
    phases: metrics_mod.HostPhases,
    phase_key: str,
) -> Node | controller_mod.Result:
    """Move a configured host to the current key; its Node as patched, or a requeue.

    Args:
        instance: The host.
        inputs: Cluster-wide inputs (the current and previous keys).
        node: Its Node.
        subject: How messages name it.
        client: API client.
        recorder: Where the Events go.
        slots: The shared bound on hosts worked on at once.
        trusted: Secret ``wmco-trusted-private-key`` as cached.
        phases: The ``wmco_hosts`` phases (a failure is counted).
        phase_key: How the host is counted there.
    """
    assert node.metadata is not None and node.metadata.name is not None
    ref = kube.ObjectRef(api_version="v1", kind="Node", name=node.metadata.name)
    if not trustedkeys.holds(inputs.pub_key_hash, trusted):
        log.info(
            "%s: waiting for Secret %s to hold the current key before re-keying",
            subject,
            names.TRUSTED_PRIVATE_KEY_SECRET,
        )
        return controller_mod.Result(requeue_after=TRUSTED_KEY_WAIT)
    try:
        async with slots:
            outcome = await rekey.rekey(client, instance, inputs, node)
    except instance_mod.ConfigurationError as exc:
        phases.set(phase_key, metrics_mod.HostPhase.FAILED)
        message = (
            f"host {instance.address} (node {node.metadata.name}) was not moved to the new "
            f"SSH key and stays on the one it trusts: {exc}"
        )
        log.warning("%s", message)
        await recorder.emit_event(
            ref, "Warning", names.EventReason.HOST_KEY_ROTATION_FAILED, message
        )
        return controller_mod.Result(requeue=True)
    message = (
        f"{subject} (host {instance.address}) moved from SSH key {outcome.old_fingerprint} "
        f"to {outcome.new_fingerprint} in {outcome.seconds:.1f}s; nothing restarted"
    )
    log.info("%s", message)
    await recorder.emit_event(ref, "Normal", names.EventReason.HOST_KEY_ROTATED, message)
    patched = await kube.get(client, Node, node.metadata.name)
    return patched if patched is not None else controller_mod.Result(requeue=True)
