"""The kinds of SSH error the operator counts (metric ``wmco_ssh_errors_total{kind}``).

The flows' runner reports every SSH error that reaches it (:mod:`wmco.nodeconfig.runner`); this
module names them with a small, fixed set of values, so the metric's label stays bounded.
"""

from __future__ import annotations

import enum

from wmco.windows import sshfailures


class ErrorKind(enum.StrEnum):
    """The kinds of SSH error the operator counts (metric ``wmco_ssh_errors_total{kind}``)."""

    UNREACHABLE = "unreachable"
    AUTHENTICATION = "authentication"
    HOST_KEY_MISMATCH = "host-key-mismatch"
    COMMAND_TIMEOUT = "command-timeout"
    TRANSFER = "transfer"
    CONNECTION_DROPPED = "connection-dropped"
    """A connection lost while a command or upload ran (then re-dialled; not a failure)."""
    OTHER = "other"


def error_kind(exc: BaseException) -> ErrorKind:
    """The :class:`ErrorKind` of an exception of :mod:`wmco.windows.sshfailures`."""
    for kind, cls in (
        (ErrorKind.HOST_KEY_MISMATCH, sshfailures.HostKeyMismatchError),
        (ErrorKind.AUTHENTICATION, sshfailures.AuthenticationError),
        (ErrorKind.UNREACHABLE, sshfailures.UnreachableError),
        (ErrorKind.COMMAND_TIMEOUT, sshfailures.CommandTimeoutError),
        (ErrorKind.TRANSFER, sshfailures.TransferError),
    ):
        if isinstance(exc, cls):
            return kind
    return ErrorKind.OTHER
