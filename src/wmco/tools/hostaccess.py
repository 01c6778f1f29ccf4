"""Connecting to a Windows host from the command line, the way the operator would.

The CLI tools find a configured node's SSH target on its Node (address, user and pinned host-key
annotations the operator wrote), read the private key from the ``cloud-private-key`` Secret and
connect with :class:`wmco.windows.ssh.WindowsHost`. A host whose key differs from the pinned one
is refused, never trusted: that is the one check that tells a rebuilt or impostor host apart.
Connection attempts are short (a person is waiting), and errors become :class:`ToolError` with a
message that says what to do; key material never appears in one.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Final

import asyncssh
from lightkube.resources.core_v1 import Node, Secret

from wmco import kube, names
from wmco import settings as settings_module
from wmco.nodeconfig import hostkeys
from wmco.windows import ssh, sshfailures, sshkeys

DEFAULT_CONNECT_TIMEOUT: Final = 15.0
"""Seconds to keep trying an SSH connection from the CLI before reporting the host unreachable."""


class ToolError(Exception):
    """A failure to report to the user as it is (the CLI prints the message, exits non-zero)."""


@dataclasses.dataclass(frozen=True, slots=True)
class NodeTarget:
    """Where and how to reach a configured node's host.

    Attributes:
        node: The Node's name.
        address: The instance address the operator configured it through.
        username: The SSH user.
        host_key: The pinned SSH host key.
    """

    node: str
    address: str
    username: str
    host_key: sshkeys.HostKey


def tool_settings(
    port: int, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
) -> settings_module.Settings:
    """SSH settings for an interactive tool: short deadlines, no grace for a refused key."""
    return settings_module.Settings(
        ssh_port=port,
        ssh_connect_timeout=min(connect_timeout, 10.0),
        ssh_boot_deadline=connect_timeout,
        ssh_auth_grace=0.1,
        ssh_retry_interval=1.0,
        ssh_command_timeout=120.0,
    )


def node_target(node: Node, default_username: str = "Administrator") -> NodeTarget:
    """Read a node's SSH target from the annotations the operator wrote.

    Raises:
        ToolError: The node has no instance address or no (readable) pinned host key.
    """
    name = node.metadata.name if node.metadata and node.metadata.name else "?"
    annotations = (node.metadata.annotations if node.metadata else None) or {}
    address = annotations.get(names.INSTANCE_ADDRESS_ANNOTATION)
    if not address:
        raise ToolError(
            f"node {name} has no {names.INSTANCE_ADDRESS_ANNOTATION} annotation: it is not a "
            "Windows node this operator configured"
        )
    host_key = hostkeys.from_node(node)
    if host_key is None:
        raise ToolError(
            f"node {name} has no readable pinned SSH host key ({names.SSH_HOST_KEY_ANNOTATION}); "
            "refusing to connect to an unverified host"
        )
    username = annotations.get(names.USERNAME_ANNOTATION) or default_username
    return NodeTarget(node=name, address=address, username=username, host_key=host_key)


def load_private_key(pem: bytes) -> asyncssh.SSHKey:
    """Import a PEM/OpenSSH private key.

    Raises:
        ToolError: The key cannot be used (the message carries no key material).
    """
    try:
        return sshkeys.load_ssh_key(pem)
    except sshkeys.SshKeyError as exc:
        raise ToolError(str(exc)) from None


async def cluster_private_key(client: kube.Client, namespace: str) -> asyncssh.SSHKey:
    """The SSH private key of the ``cloud-private-key`` Secret in the operator namespace.

    Raises:
        ToolError: The Secret or its key is missing or unusable.
    """
    try:
        secret = await kube.get(client, Secret, names.PRIVATE_KEY_SECRET, namespace=namespace)
    except kube.KubeError as exc:
        raise ToolError(
            f"cannot read Secret {namespace}/{names.PRIVATE_KEY_SECRET}: {exc}"
        ) from None
    data = (secret.data if secret else None) or {}
    encoded = data.get(names.PRIVATE_KEY_SECRET_KEY)
    if not encoded:
        raise ToolError(
            f"Secret {namespace}/{names.PRIVATE_KEY_SECRET} has no {names.PRIVATE_KEY_SECRET_KEY}"
        )
    try:
        pem = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ToolError(f"Secret {namespace}/{names.PRIVATE_KEY_SECRET} is not base64") from None
    return load_private_key(pem)


async def connect(host: ssh.WindowsHost, *, what: str) -> sshkeys.HostKey:
    """Open ``host``'s connection, turning SSH failures into :class:`ToolError`.

    Args:
        host: The prepared connection.
        what: How to name the host in messages (``node win-a (10.0.0.5)``).

    Raises:
        ToolError: Host key mismatch, key refused, or unreachable.
    """
    try:
        return await host.connect()
    except sshfailures.HostKeyMismatchError as exc:
        raise ToolError(
            f"refusing {what}: its SSH host key is not the pinned one (pinned "
            f"{exc.pinned.key_type} {exc.pinned.fingerprint}, presented {exc.seen.key_type} "
            f"{exc.seen.fingerprint}); if the host was rebuilt on purpose, remove the Node's "
            f"{names.SSH_HOST_KEY_ANNOTATION} annotations so the operator re-pins it"
        ) from None
    except sshfailures.AuthenticationError:
        raise ToolError(
            f"{what} refused the private key for user {host.username!r}: is its public key in "
            "C:\\ProgramData\\ssh\\administrators_authorized_keys?"
        ) from None
    except sshfailures.UnreachableError as exc:
        raise ToolError(f"{what} is unreachable over SSH: {exc}") from None


def open_node(
    target: NodeTarget, key: asyncssh.SSHKey, settings: settings_module.Settings
) -> ssh.WindowsHost:
    """A (not yet open) connection to a node's host, pinned to its recorded host key."""
    return ssh.WindowsHost(
        target.address,
        target.username,
        key,
        settings=settings,
        pinned_host_key=target.host_key,
    )
