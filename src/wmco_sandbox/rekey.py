"""The sandbox's SSH key on disk, and ``wmco sandbox rotate-key``: a new key under a running sandbox.

A running sandbox keeps the private key of Secret ``cloud-private-key`` in
``DIR/ssh/private-key.pem`` (mode 0600), so a person can log in to any simulated host
(``ssh -i DIR/ssh/private-key.pem -p <ssh_port> Administrator@<address>``, ports and addresses in
``DIR/hosts.json``). :func:`rotate` is the user's side of a key rotation, from another process
while ``wmco sandbox up`` runs: it moves that file to ``DIR/ssh/previous-private-key.pem``, writes
the new key (generated, or the one given) in its place, puts it in ``cloud-private-key`` with the
sandbox's admin kubeconfig, and waits until the operator reports the rotation done: every
configured Windows Node carries the new key's ``pub-key-hash`` and the operator's Secret
``wmco-trusted-private-key`` keeps only the new key. After that the new key logs in on every host
and the previous one is refused.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lightkube import AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Node, Secret
from lightkube.types import PatchType

from wmco import names, userdata
from wmco.cluster import trustedkeys

KEY_DIR: Final = "ssh"
CURRENT_KEY_FILE: Final = "private-key.pem"
PREVIOUS_KEY_FILE: Final = "previous-private-key.pem"


class RotationError(RuntimeError):
    """The rotation could not be started or did not finish (the message says why)."""


def key_path(state_dir: Path, *, previous: bool = False) -> Path:
    """``DIR/ssh/private-key.pem`` (or the previous key's file)."""
    return state_dir / KEY_DIR / (PREVIOUS_KEY_FILE if previous else CURRENT_KEY_FILE)


def write_key(path: Path, pem: bytes) -> Path:
    """Write a private key readable by its owner only (what ``ssh -i`` demands)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    path.chmod(0o600)
    return path


def generate_private_key_pem() -> bytes:
    """A fresh ed25519 private key in OpenSSH format."""
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """Where a rotation stands.

    Attributes:
        moved: Configured Windows Nodes that carry the new key's hash.
        total: Configured Windows Nodes.
        trusted: Keys the operator still keeps in ``wmco-trusted-private-key``.
    """

    moved: int
    total: int
    trusted: int

    @property
    def done(self) -> bool:
        """Every node moved and the operator forgot the previous key."""
        return self.moved == self.total and self.trusted == 1


async def progress(kube: AsyncClient, new_hash: str, namespace: str) -> Progress:
    """Read where the rotation to the key of ``new_hash`` stands."""
    nodes = [n async for n in kube.list(Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS})]
    hashes = trustedkeys.configured_hashes(nodes)
    secret = await kube.get(Secret, names.TRUSTED_PRIVATE_KEY_SECRET, namespace=namespace)
    stored = trustedkeys.stored_keys(secret)
    trusted = len(stored) if any(k.pub_key_hash == new_hash for k in stored) else 0
    return Progress(
        moved=sum(1 for value in hashes if value == new_hash), total=len(hashes), trusted=trusted
    )


async def _wait_until_kept(kube: AsyncClient, namespace: str, timeout: float) -> None:
    """Wait until the operator keeps the key in use, so changing it loses no key a host trusts."""
    deadline = time.monotonic() + timeout
    while True:
        secret = await kube.get(Secret, names.PRIVATE_KEY_SECRET, namespace=namespace)
        encoded = (secret.data or {}).get(names.PRIVATE_KEY_SECRET_KEY, "")
        in_use = userdata.pub_key_hash(userdata.load_private_key(base64.b64decode(encoded)))
        kept = await kube.get(Secret, names.TRUSTED_PRIVATE_KEY_SECRET, namespace=namespace)
        if any(key.pub_key_hash == in_use for key in trustedkeys.stored_keys(kept)):
            return
        if time.monotonic() > deadline:
            raise RotationError(
                f"the operator does not keep the key in use in Secret "
                f"{names.TRUSTED_PRIVATE_KEY_SECRET} after {timeout:.0f}s; is it running?"
            )
        await asyncio.sleep(0.5)


async def rotate(
    state_dir: Path,
    new_pem: bytes | None = None,
    *,
    timeout: float = 300.0,
    wait: bool = True,
    report: Callable[[str], None] = lambda line: None,
    namespace: str = names.OPERATOR_NAMESPACE,
) -> Path:
    """Give a running sandbox a new SSH key (see the module docstring); the new key's file.

    Raises:
        RotationError: The sandbox is not running, the key is unusable, or the operator did not
            finish within ``timeout`` seconds.
    """
    kubeconfig = state_dir / "kubeconfig"
    if not kubeconfig.exists():
        raise RotationError(f"no sandbox runs in {state_dir} ({kubeconfig} is missing)")
    pem = new_pem if new_pem is not None else generate_private_key_pem()
    try:
        new_key = userdata.public_key(userdata.load_private_key(pem))
    except userdata.PrivateKeyError as exc:
        raise RotationError(f"the new key cannot be used: {exc}") from None
    kube = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="wmco-sandbox")
    try:
        await _wait_until_kept(kube, namespace, timeout)
        current = key_path(state_dir)
        if current.exists():
            write_key(key_path(state_dir, previous=True), current.read_bytes())
        write_key(current, pem)
        await kube.patch(
            Secret,
            names.PRIVATE_KEY_SECRET,
            {"data": {names.PRIVATE_KEY_SECRET_KEY: base64.b64encode(pem).decode("ascii")}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        report(
            f"cloud-private-key now holds key {userdata.fingerprint(new_key)} ({current}); "
            f"the previous key is in {key_path(state_dir, previous=True)}"
        )
        if not wait:
            return current
        deadline = time.monotonic() + timeout
        last: Progress | None = None
        while True:
            state = await progress(kube, new_key.pub_key_hash, namespace)
            if state != last:
                report(f"{state.moved}/{state.total} Windows nodes moved to the new key")
                last = state
            if state.done:
                report("key rotation complete: the previous key is no longer trusted")
                return current
            if time.monotonic() > deadline:
                raise RotationError(
                    f"the operator did not finish the rotation in {timeout:.0f}s "
                    f"({state.moved}/{state.total} nodes moved); see its Events "
                    "(HostKeyRotationFailed) and DIR/operator.log"
                )
            await asyncio.sleep(0.5)
    finally:
        await kube.close()
