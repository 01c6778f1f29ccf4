"""The Secret ``wmco-trusted-private-key``: every private key a configured host may trust.

Pure decisions of key rotation (:mod:`wmco.controllers.rekey` writes the Secret,
:meth:`wmco.controllers.hosts.Hosts.inputs` reads the previous keys from it). The Secret holds
the current key of ``cloud-private-key`` whenever no rotation is under way, and the previous
key(s) too while a configured Node still carries another ``pub-key-hash``. Keys are named in the
data by the first 16 hex digits of their ``pub-key-hash``; nothing here logs key material.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import logging
from collections.abc import Iterable
from typing import Final

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node, Secret

from wmco import names, userdata

log = logging.getLogger(__name__)

SECRET_TYPE_OPAQUE: Final = "Opaque"


@dataclasses.dataclass(frozen=True, slots=True)
class TrustedKey:
    """One private key a host may trust.

    Attributes:
        pem: The private key (never in ``repr``).
        public: Its public half.
    """

    pem: bytes = dataclasses.field(repr=False)
    public: userdata.PublicKey

    @property
    def pub_key_hash(self) -> str:
        """The ``pub-key-hash`` of the key."""
        return self.public.pub_key_hash

    @property
    def data_key(self) -> str:
        """Its name in the Secret's data."""
        return f"{self.pub_key_hash[:16]}.pem"

    @classmethod
    def parse(cls, pem: bytes) -> TrustedKey:
        """Parse a private key.

        Raises:
            userdata.PrivateKeyError: Unusable (no key material in the message).
        """
        return cls(pem=pem, public=userdata.public_key(userdata.load_private_key(pem)))


def stored_keys(secret: Secret | None) -> list[TrustedKey]:
    """The usable keys of the trusted-key Secret, in data-key order; others are skipped."""
    found: list[TrustedKey] = []
    for name, encoded in sorted(((secret.data if secret else None) or {}).items()):
        try:
            key = TrustedKey.parse(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            log.warning(
                "Secret %s: entry %s is not a usable key; ignored",
                names.TRUSTED_PRIVATE_KEY_SECRET,
                name,
            )
            continue
        if all(known.pub_key_hash != key.pub_key_hash for known in found):
            found.append(key)
    return found


def configured_hashes(nodes: Iterable[Node]) -> list[str]:
    """``pub-key-hash`` of each Node the operator configured (``version`` set, hash not empty)."""
    hashes: list[str] = []
    for node in nodes:
        annotations = (node.metadata.annotations if node.metadata else None) or {}
        value = annotations.get(names.PUB_KEY_HASH_ANNOTATION)
        if names.VERSION_ANNOTATION in annotations and value:
            hashes.append(value)
    return hashes


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What the trusted-key Secret must hold now.

    Attributes:
        keys: The keys, current first.
        pending: Configured Nodes that still carry another hash than the current key's, and
            hosts still joining.
        complete: The previous keys are dropped now (a rotation just ended).
    """

    keys: tuple[TrustedKey, ...]
    pending: int
    complete: bool


def decide(
    current: TrustedKey, stored: list[TrustedKey], node_hashes: Iterable[str], joining: int = 0
) -> Decision:
    """The keys to keep: the current one, plus the previous ones while some host may need them.

    Args:
        current: The key of ``cloud-private-key``.
        stored: The keys of the trusted-key Secret.
        node_hashes: :func:`configured_hashes`.
        joining: Hosts being set up that have no configured Node yet (a Machine booted from
            the user data of before the rotation trusts the previous key).
    """
    pending = joining + sum(1 for value in node_hashes if value != current.pub_key_hash)
    previous = tuple(key for key in stored if key.pub_key_hash != current.pub_key_hash)
    known = any(key.pub_key_hash == current.pub_key_hash for key in stored)
    if (pending and previous) or not known:
        # A rotation starts or goes on (the new key joins before any host is moved to it).
        return Decision(keys=(current, *previous), pending=pending, complete=False)
    return Decision(keys=(current,), pending=pending, complete=bool(previous))


def is_up_to_date(secret: Secret, decision: Decision) -> bool:
    """Whether the stored Secret holds exactly the decided keys, as an Opaque labelled Secret."""
    metadata = secret.metadata or ObjectMeta()
    labels = metadata.labels or {}
    return (
        (secret.type or SECRET_TYPE_OPAQUE) == SECRET_TYPE_OPAQUE
        and (secret.data or {}) == secret_data(decision.keys)
        and labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE
    )


def secret_data(keys_: Iterable[TrustedKey]) -> dict[str, str]:
    """The Secret's ``data`` for ``keys_``."""
    return {key.data_key: base64.b64encode(key.pem).decode("ascii") for key in keys_}


def trusted_secret(
    keys_: Iterable[TrustedKey], namespace: str, base: ObjectMeta | None = None
) -> Secret:
    """The Secret to write (a PUT keeping ``base``'s other metadata)."""
    metadata = copy.deepcopy(base) if base is not None else ObjectMeta()
    metadata.name = names.TRUSTED_PRIVATE_KEY_SECRET
    metadata.namespace = namespace
    metadata.labels = {
        **(metadata.labels or {}),
        names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
    }
    return Secret(metadata=metadata, type=SECRET_TYPE_OPAQUE, data=secret_data(keys_))


def previous_keys(current_hash: str, secret: Secret | None) -> tuple[bytes, ...]:
    """The keys of the Secret other than the current one (offered to hosts after it)."""
    return tuple(key.pem for key in stored_keys(secret) if key.pub_key_hash != current_hash)


def holds(current_hash: str, secret: Secret | None) -> bool:
    """Whether the Secret holds the current key (a host may be moved to it only then).

    :meth:`wmco.controllers.hosts.Hosts.rekey_host` waits for this, so no key some host trusts
    is ever only in memory.
    """
    return any(key.pub_key_hash == current_hash for key in stored_keys(secret))


def fingerprints(keys_: Iterable[TrustedKey]) -> str:
    """``SHA256:...`` of each key, comma-separated (safe to log)."""
    return ", ".join(userdata.fingerprint(key.public) for key in keys_) or "none"
