"""The errors of the SSH layer (:mod:`wmco.windows.ssh`, :mod:`wmco.windows.sftp`).

Each names the host; none contains a command's text or output. Their kinds for the
``wmco_ssh_errors_total`` metric are in :mod:`wmco.windows.ssherrors`.
"""

from __future__ import annotations

from wmco.windows import sshkeys


class SshError(Exception):
    """Base of the SSH layer's errors; ``address`` names the host.

    Attributes:
        address: The host's address.
    """

    def __init__(self, address: str, message: str) -> None:
        super().__init__(f"host {address}: {message}")
        self.address = address


class HostKeyMismatchError(SshError):
    """The host presented a key different from the pinned one. Never retried.

    Attributes:
        pinned: The pinned key.
        seen: The key the host presented.
    """

    def __init__(self, address: str, pinned: sshkeys.HostKey, seen: sshkeys.HostKey) -> None:
        super().__init__(
            address,
            f"SSH host key changed: pinned {pinned.key_type} {pinned.fingerprint}, host presented "
            f"{seen.key_type} {seen.fingerprint}. If the host was rebuilt on purpose, remove the "
            "pinned key (Node annotation or windows-ssh-host-keys entry) to trust the new one.",
        )
        self.pinned = pinned
        self.seen = seen


class AuthenticationError(SshError):
    """The host kept refusing the private key after the grace period."""


class UnreachableError(SshError):
    """No SSH connection could be made before the deadline."""


class CommandTimeoutError(SshError):
    """A command did not finish within its timeout."""


class TransferError(SshError):
    """An SFTP upload failed."""
