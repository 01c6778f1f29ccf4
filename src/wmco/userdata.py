"""The SSH key pair and the user data that lets the operator into new Windows hosts.

The user puts a private key in Secret ``cloud-private-key``; the operator derives its public key in
authorized_keys form, writes a first-boot PowerShell script (user data) that installs sshd and
authorises that key, and records ``sha256(authorized key)`` as the ``pub-key-hash`` of each Node it
configures. During a key rotation the script authorises both the new and the previous key, so hosts
stay reachable while they are switched over.

Everything here is pure. Errors never contain key material: a key's bytes must not reach a log.
The script format is the contract of ``docs/windows-surface.md`` ("User data").
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

CURRENT_KEY_COMMENT: Final = "wmco"
PREVIOUS_KEY_COMMENT: Final = "wmco-previous"
AUTHORIZED_KEYS_PATH: Final = "C:\\ProgramData\\ssh\\administrators_authorized_keys"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class PrivateKeyError(ValueError):
    """The private key cannot be used. The message says why and never contains key material."""


class MissingPrivateKeyError(PrivateKeyError):
    """No key data at all (Secret or key absent, or empty)."""


class UnparsablePrivateKeyError(PrivateKeyError):
    """The data is not a PEM or OpenSSH private key (or is encrypted with a passphrase)."""


class UnsupportedKeyTypeError(PrivateKeyError):
    """The key parses but is not RSA, ECDSA or Ed25519."""


class KeyType(enum.StrEnum):
    """SSH algorithm names of the supported key types."""

    RSA = "ssh-rsa"
    ECDSA_P256 = "ecdsa-sha2-nistp256"
    ECDSA_P384 = "ecdsa-sha2-nistp384"
    ECDSA_P521 = "ecdsa-sha2-nistp521"
    ED25519 = "ssh-ed25519"


@dataclasses.dataclass(frozen=True, slots=True)
class PublicKey:
    """A public key in authorized_keys form.

    Attributes:
        key_type: The SSH algorithm name.
        authorized_key: ``<type> <base64>`` without comment or newline.
    """

    key_type: KeyType
    authorized_key: str

    @property
    def pub_key_hash(self) -> str:
        """The ``pub-key-hash`` annotation value: lower-case sha256 hex of the authorized key."""
        return hashlib.sha256(self.authorized_key.encode("ascii")).hexdigest()


def load_private_key(data: bytes | str | None) -> PrivateKey:
    """Parse a private key in PEM (PKCS#1, PKCS#8, SEC1) or OpenSSH format.

    Args:
        data: The Secret's ``private-key.pem`` value.

    Returns:
        The key.

    Raises:
        MissingPrivateKeyError: ``data`` is ``None`` or blank.
        UnparsablePrivateKeyError: Not a private key, or passphrase-protected.
        UnsupportedKeyTypeError: DSA or another unsupported type.
    """
    if data is None:
        raise MissingPrivateKeyError("no private key was provided")
    raw = data.encode("utf-8", errors="replace") if isinstance(data, str) else bytes(data)
    raw = raw.strip()
    if not raw:
        raise MissingPrivateKeyError("the private key is empty")
    key: object
    try:
        if raw.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
            key = serialization.load_ssh_private_key(raw + b"\n", password=None)
        elif raw.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(raw + b"\n", password=None)
        else:
            raise UnparsablePrivateKeyError(
                "the private key is neither PEM nor OpenSSH format (no -----BEGIN line)"
            )
    except TypeError:
        # cryptography raises TypeError when a password is needed; do not chain its message.
        raise UnparsablePrivateKeyError(
            "the private key is protected by a passphrase; provide an unencrypted key"
        ) from None
    except UnsupportedAlgorithm:
        raise UnsupportedKeyTypeError("the private key uses an unsupported algorithm") from None
    except ValueError as exc:
        if isinstance(exc, PrivateKeyError):
            raise
        raise UnparsablePrivateKeyError(
            "the private key could not be parsed (corrupt or not a private key)"
        ) from None
    if isinstance(key, dsa.DSAPrivateKey):
        raise UnsupportedKeyTypeError("DSA keys are not supported; use RSA, ECDSA or Ed25519")
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in _CURVES:
            raise UnsupportedKeyTypeError(
                f"ECDSA curve {key.curve.name} is not supported; use P-256, P-384 or P-521"
            )
        return key
    raise UnsupportedKeyTypeError(f"{type(key).__name__} keys are not supported")


_CURVES: Final = {
    "secp256r1": KeyType.ECDSA_P256,
    "secp384r1": KeyType.ECDSA_P384,
    "secp521r1": KeyType.ECDSA_P521,
}


def key_type(key: PrivateKey) -> KeyType:
    """The SSH algorithm name of a key."""
    if isinstance(key, rsa.RSAPrivateKey):
        return KeyType.RSA
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return KeyType.ED25519
    return _CURVES[key.curve.name]


def public_key(key: PrivateKey) -> PublicKey:
    """The public half of ``key`` in authorized_keys form (what Go's MarshalAuthorizedKey gives)."""
    text = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode("ascii")
    )
    return PublicKey(key_type=key_type(key), authorized_key=text.strip())


def key_warnings(key: PrivateKey) -> list[str]:
    """Weaknesses worth a warning (the key is still used): RSA shorter than 2048 bits."""
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        return [f"RSA key of {key.key_size} bits is weak; use at least 2048 bits"]
    return []


def parse_authorized_key(line: str) -> PublicKey:
    """Parse one ``<type> <base64> [comment]`` line into a :class:`PublicKey` (comment dropped).

    Raises:
        UnparsablePrivateKeyError: Not a supported public key line (named for symmetry: callers
            handle one family of key errors).
    """
    parts = line.strip().split()
    if len(parts) < 2:
        raise UnparsablePrivateKeyError("the public key line is not '<type> <base64> [comment]'")
    try:
        kind = KeyType(parts[0])
        serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode("ascii"))
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError):
        raise UnparsablePrivateKeyError("the public key line could not be parsed") from None
    return PublicKey(key_type=kind, authorized_key=f"{parts[0]} {parts[1]}")


def _authorized_lines(current: PublicKey, previous: PublicKey | None) -> list[str]:
    lines = [f"{current.authorized_key} {CURRENT_KEY_COMMENT}"]
    if previous is not None and previous.authorized_key != current.authorized_key:
        lines.append(f"{previous.authorized_key} {PREVIOUS_KEY_COMMENT}")
    return lines


def _ps(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def generate_user_data(
    current: PublicKey, previous: PublicKey | None = None, *, ssh_port: int = 22
) -> str:
    """The first-boot PowerShell script, exactly as ``docs/windows-surface.md`` shows it.

    Args:
        current: The key in use (comment ``wmco``).
        previous: During a rotation, the key being replaced (comment ``wmco-previous``).
        ssh_port: Port opened in the firewall for sshd.

    Returns:
        The ``<powershell>…</powershell>`` + ``<persist>true</persist>`` document, LF line
        endings, ending with a newline.

    The keys file is written only when it does not exist: ``<persist>`` re-runs the script at
    every boot, and a host the operator re-keyed since (:mod:`wmco.nodeconfig.rekey`) must not
    get the keys of its first boot back.
    """
    keys = ", ".join(_ps(line) for line in _authorized_lines(current, previous))
    path = _ps(AUTHORIZED_KEYS_PATH)
    lines = [
        "<powershell>",
        "$ErrorActionPreference = 'Stop'",
        "$ProgressPreference = 'SilentlyContinue'",
        "Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0'",
        "New-ItemProperty -Path 'HKLM:\\SOFTWARE\\OpenSSH' -Name 'DefaultShell' "
        "-Value 'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe' "
        "-PropertyType String -Force",
        "New-NetFirewallRule -DisplayName 'ContainerLogsPort' -Direction Inbound -Action Allow "
        "-Protocol TCP -LocalPort 10250 -EdgeTraversalPolicy Allow",
        "New-NetFirewallRule -DisplayName 'WindowsExporter' -Direction Inbound -Action Allow "
        "-Protocol TCP -LocalPort 9182 -EdgeTraversalPolicy Allow",
        "if (-not (Get-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -ErrorAction "
        "SilentlyContinue)) { New-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -DisplayName "
        "'OpenSSH Server (sshd)' -Direction Inbound -Action Allow -Protocol TCP "
        f"-LocalPort {int(ssh_port)} }}",
        "Set-Service -Name 'sshd' -StartupType 'Automatic'",
        "Start-Service -Name 'sshd'",
        f"if (-not (Test-Path -LiteralPath {path})) {{ "
        f"Set-Content -LiteralPath {path} -Value {keys} -Encoding ascii }}",
        f"icacls.exe {path} /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'",
        "Restart-Service -Name 'sshd'",
        "</powershell>",
        "<persist>true</persist>",
    ]
    return "\n".join(lines) + "\n"


def user_data_for_keys(
    private_key_pem: bytes | str | None,
    previous_private_key_pem: bytes | str | None = None,
    *,
    ssh_port: int = 22,
) -> str:
    """Convenience: parse the key(s) and return :func:`generate_user_data`.

    Raises:
        PrivateKeyError: A key is missing or unusable (the previous key only if given).
    """
    current = public_key(load_private_key(private_key_pem))
    previous = None
    if previous_private_key_pem:
        previous = public_key(load_private_key(previous_private_key_pem))
    return generate_user_data(current, previous, ssh_port=ssh_port)


def authorized_keys_in(user_data: str) -> list[PublicKey]:
    """The public keys a user-data script authorises (to check a script against a key).

    Returns:
        The keys in order; empty when the script has no ``Set-Content`` line for the keys file.
    """
    marker = f"Set-Content -LiteralPath {_ps(AUTHORIZED_KEYS_PATH)} -Value "
    for line in user_data.splitlines():
        if marker in line:
            found: list[PublicKey] = []
            for literal in line[line.index(marker) + len(marker) :].split("', '"):
                text = literal.strip().removeprefix("'").split("'")[0]
                try:
                    found.append(parse_authorized_key(text))
                except PrivateKeyError:
                    continue
            return found
    return []


def pub_key_hash(key: PrivateKey) -> str:
    """The ``pub-key-hash`` annotation value of a private key's public half."""
    return public_key(key).pub_key_hash


def fingerprint(key: PublicKey) -> str:
    """The OpenSSH-style ``SHA256:<base64>`` fingerprint, safe to log."""
    blob = base64.b64decode(key.authorized_key.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return f"SHA256:{digest}"
