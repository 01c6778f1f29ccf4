"""SSH keys: the host key pinned for a Windows host, and the private key the operator logs in with.

- **Host-key pinning.** :class:`HostKey` is a host public key as the Node's ``ssh-host-key``
  annotation and the ``windows-ssh-host-keys`` ConfigMap record it; whether to trust a presented
  key (trust on first use, then pin) is the pure :func:`check_host_key`. The connection
  (:class:`wmco.windows.ssh.WindowsHost`) applies the decision.
- **Key loading.** :func:`load_ssh_key` imports the private key for authentication; when it
  cannot, :class:`SshKeyError` says so without key material.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib

import asyncssh


class SshKeyError(ValueError):
    """The private key cannot be used for SSH. The message never contains key material."""


@dataclasses.dataclass(frozen=True, slots=True)
class HostKey:
    """An SSH host public key.

    Attributes:
        key_type: The algorithm, e.g. ``ssh-ed25519`` (annotation ``ssh-host-key-type``).
        data: The SSH wire format of the key (annotation ``ssh-host-key``, base64).
    """

    key_type: str
    data: bytes

    @property
    def b64(self) -> str:
        """Base64 of :attr:`data`, the ``ssh-host-key`` annotation value."""
        return base64.b64encode(self.data).decode("ascii")

    @property
    def fingerprint(self) -> str:
        """``SHA256:<base64>`` as OpenSSH prints it."""
        digest = base64.b64encode(hashlib.sha256(self.data).digest()).decode("ascii")
        return "SHA256:" + digest.rstrip("=")

    @classmethod
    def from_annotation(cls, b64: str, key_type: str) -> HostKey:
        """Rebuild a key from its annotations.

        Raises:
            ValueError: The value is not base64 of an SSH public key of that type.
        """
        try:
            data = base64.b64decode(b64.strip(), validate=True)
            # The wire format starts with the algorithm name as an SSH string.
            length = int.from_bytes(data[:4], "big")
            algorithm = data[4 : 4 + length].decode("ascii")
            key = asyncssh.import_public_key(f"{algorithm} {b64.strip()}")
        except (binascii.Error, ValueError, asyncssh.KeyImportError):
            raise ValueError("the pinned SSH host key is not a valid base64 public key") from None
        if key_type and key.get_algorithm() != key_type:
            raise ValueError(
                f"the pinned SSH host key is {key.get_algorithm()}, its type annotation says "
                f"{key_type}"
            )
        return cls(key_type=key.get_algorithm(), data=data)

    @classmethod
    def from_ssh_key(cls, key: asyncssh.SSHKey) -> HostKey:
        """The :class:`HostKey` of an asyncssh key."""
        return cls(key_type=key.get_algorithm(), data=bytes(key.public_data))


class HostKeyCheck(enum.StrEnum):
    """Outcome of comparing a presented host key with the pinned one."""

    FIRST_USE = "first-use"
    MATCH = "match"
    MISMATCH = "mismatch"


def check_host_key(pinned: HostKey | None, seen: HostKey) -> HostKeyCheck:
    """Decide whether to trust a presented host key (trust on first use, then pin).

    Args:
        pinned: The key on record, if any.
        seen: The key the host presented.

    Returns:
        ``FIRST_USE`` (nothing pinned: trust and report it), ``MATCH`` or ``MISMATCH``.
    """
    if pinned is None:
        return HostKeyCheck.FIRST_USE
    if pinned.data == seen.data and pinned.key_type == seen.key_type:
        return HostKeyCheck.MATCH
    return HostKeyCheck.MISMATCH


def load_ssh_key(private_key_pem: bytes | str) -> asyncssh.SSHKey:
    """Load the private key for SSH authentication.

    Raises:
        SshKeyError: The key cannot be imported (message without key material).
    """
    try:
        return asyncssh.import_private_key(private_key_pem)
    except (asyncssh.KeyImportError, ValueError, TypeError):
        raise SshKeyError("the private key cannot be used for SSH authentication") from None
