"""Moving one configured host to a new SSH key without touching anything else on it.

When Secret ``cloud-private-key`` changes, every configured host still trusts the key it was set
up with: its Node's ``pub-key-hash`` says which. :func:`rekey` moves one host:

1. connect with the keys it may trust (:func:`wmco.nodeconfig.runner.connect` offers the Node's
   key first, then the current one, then the previous ones, in one authentication exchange);
2. add the new public key to ``administrators_authorized_keys`` next to the old one
   (:func:`wmco.windows.commands.authorize_key`; the file's ACL is set again as sshd's StrictModes
   demands; other lines an administrator put there are kept);
3. prove that a NEW connection with the new key alone logs in (sshd reads the file on each new
   connection, so nothing restarts);
4. over that new connection, remove the old key (and any other key of a rotation);
5. set the Node's ``pub-key-hash`` to the new key's.

No service is touched, so the node stays Ready. Each step is idempotent: an operator that stops
after any of them (a restart mid-rotation) starts again at step 1, which then logs in with
whichever key the host accepts. A host that already accepts the current key (stopped after step
3) only gets the clean-up and the annotation.

Messages name keys by their ``SHA256:`` fingerprint; no key material reaches a log or an Event.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from lightkube.resources.core_v1 import Node

from wmco import kube, names, userdata
from wmco.nodeconfig import runner as runner_mod
from wmco.nodeconfig.instance import ConfigurationError, Inputs, Instance, Step
from wmco.windows import commands, quoting

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class RekeyOutcome:
    """What :func:`rekey` did.

    Attributes:
        node_name: The Node.
        old_fingerprint: The key the host trusted (``SHA256:...``; ``unknown`` when the host
            already accepted the new key and its old one is not among the known keys).
        new_fingerprint: The key it trusts now.
        seconds: Duration.
    """

    node_name: str
    old_fingerprint: str
    new_fingerprint: str
    seconds: float


def needs_rekey(node: Node | None, inputs: Inputs) -> bool:
    """Whether a configured Node's host trusts another key than the current one.

    A Node the operator configured (``version`` annotation) whose ``pub-key-hash`` is set and is
    not the current key's. ``""`` asks for the host to be replaced: not a rotation.
    """
    annotations = (node.metadata.annotations if node and node.metadata else None) or {}
    key_hash = annotations.get(names.PUB_KEY_HASH_ANNOTATION)
    return (
        names.VERSION_ANNOTATION in annotations
        and bool(key_hash)
        and key_hash != inputs.pub_key_hash
    )


def _public_keys(inputs: Inputs) -> tuple[userdata.PublicKey, list[userdata.PublicKey]]:
    current = userdata.public_key(userdata.load_private_key(inputs.private_key_pem))
    previous: list[userdata.PublicKey] = []
    for pem in inputs.previous_private_keys:
        try:
            key = userdata.public_key(userdata.load_private_key(pem))
        except userdata.PrivateKeyError:
            continue
        if key.authorized_key != current.authorized_key:
            previous.append(key)
    return current, previous


async def rekey(
    client: kube.Client, instance: Instance, inputs: Inputs, node: Node
) -> RekeyOutcome:
    """Move the host of ``node`` to the current key (see the module docstring).

    Args:
        client: API client.
        instance: The host.
        inputs: Current key, previous keys, settings.
        node: Its Node (``pub-key-hash`` says which key the host trusts).

    Raises:
        ConfigurationError: The host accepts none of the keys, or a step failed (the message
            names the host and the step).
    """
    started = time.monotonic()
    assert node.metadata is not None and node.metadata.name is not None
    node_name = node.metadata.name
    current, previous = _public_keys(inputs)
    by_hash = {key.pub_key_hash: key for key in (current, *previous)}
    within = inputs.settings.ssh_connect_timeout
    runner = await runner_mod.connect(client, instance, inputs, node, within=within)
    trusted = runner_mod.node_annotation(node, names.PUB_KEY_HASH_ANNOTATION) or ""
    old = by_hash.get(
        trusted if runner.pub_key_hash == current.pub_key_hash else runner.pub_key_hash
    )
    runner.step = Step.REKEY
    key_type, blob = current.authorized_key.split()
    try:
        cleanup = commands.authorize_key(
            key_type,
            blob,
            userdata.CURRENT_KEY_COMMENT,
            revoke=[key.authorized_key.split()[1] for key in previous],
        )
        if runner.pub_key_hash != current.pub_key_hash:
            await runner.check(
                commands.authorize_key(key_type, blob, userdata.CURRENT_KEY_COMMENT),
                "adding the new key to administrators_authorized_keys",
            )
            await runner.close()
            runner = await runner_mod.connect(
                client, instance, inputs, node, within=within, current_key_only=True
            )
            runner.step = Step.REKEY
        await runner.check(cleanup, "removing the old key from administrators_authorized_keys")
    except quoting.UnsafeValueError as exc:
        raise ConfigurationError(instance.address, Step.REKEY, str(exc)) from None
    finally:
        await runner.close()
    await kube.patch(
        client,
        Node,
        node_name,
        {"metadata": {"annotations": {names.PUB_KEY_HASH_ANNOTATION: current.pub_key_hash}}},
    )
    return RekeyOutcome(
        node_name=node_name,
        old_fingerprint=userdata.fingerprint(old) if old is not None else "unknown",
        new_fingerprint=userdata.fingerprint(current),
        seconds=time.monotonic() - started,
    )
