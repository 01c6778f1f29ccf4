"""Private keys in every accepted format, the public key, its hash, and the user-data script."""

from __future__ import annotations

import base64
import hashlib
import traceback

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from wmco import userdata

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def pem(key: userdata.PrivateKey | dsa.DSAPrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


FORMATS = [
    ("rsa-pkcs1", RSA_KEY, serialization.PrivateFormat.TraditionalOpenSSL, "ssh-rsa"),
    ("rsa-pkcs8", RSA_KEY, serialization.PrivateFormat.PKCS8, "ssh-rsa"),
    ("rsa-openssh", RSA_KEY, serialization.PrivateFormat.OpenSSH, "ssh-rsa"),
    ("ec-sec1", EC_KEY, serialization.PrivateFormat.TraditionalOpenSSL, "ecdsa-sha2-nistp256"),
    ("ec-openssh", EC_KEY, serialization.PrivateFormat.OpenSSH, "ecdsa-sha2-nistp256"),
    ("ed25519-pkcs8", ED_KEY, serialization.PrivateFormat.PKCS8, "ssh-ed25519"),
    ("ed25519-openssh", ED_KEY, serialization.PrivateFormat.OpenSSH, "ssh-ed25519"),
]


@pytest.mark.parametrize(("label", "key", "fmt", "key_type"), FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_gives_the_same_public_key(
    label: str, key: userdata.PrivateKey, fmt: serialization.PrivateFormat, key_type: str
) -> None:
    loaded = userdata.load_private_key(pem(key, fmt))
    public = userdata.public_key(loaded)
    expected = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    assert public.authorized_key == expected
    assert public.key_type.value == key_type
    assert public.authorized_key.startswith(key_type + " ")


def test_key_as_text_with_surrounding_whitespace_is_accepted() -> None:
    text = "\n  " + pem(ED_KEY, serialization.PrivateFormat.PKCS8).decode() + "\n\n"
    assert userdata.load_private_key(text).public_key() == ED_KEY.public_key()


def test_pub_key_hash_is_sha256_hex_of_the_authorized_key_without_newline() -> None:
    public = userdata.public_key(ED_KEY)
    expected = hashlib.sha256(public.authorized_key.encode()).hexdigest()
    assert public.pub_key_hash == expected
    assert userdata.pub_key_hash(ED_KEY) == expected
    assert len(expected) == 64 and expected == expected.lower()
    assert "\n" not in public.authorized_key


def test_fingerprint_matches_openssh_format() -> None:
    public = userdata.public_key(ED_KEY)
    blob = base64.b64decode(public.authorized_key.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert userdata.fingerprint(public) == "SHA256:" + digest


EXPECTED_SCRIPT = """<powershell>
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0'
New-ItemProperty -Path 'HKLM:\\SOFTWARE\\OpenSSH' -Name 'DefaultShell' -Value 'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe' -PropertyType String -Force
New-NetFirewallRule -DisplayName 'ContainerLogsPort' -Direction Inbound -Action Allow -Protocol TCP -LocalPort 10250 -EdgeTraversalPolicy Allow
New-NetFirewallRule -DisplayName 'WindowsExporter' -Direction Inbound -Action Allow -Protocol TCP -LocalPort 9182 -EdgeTraversalPolicy Allow
if (-not (Get-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -ErrorAction SilentlyContinue)) { New-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -DisplayName 'OpenSSH Server (sshd)' -Direction Inbound -Action Allow -Protocol TCP -LocalPort 22 }
Set-Service -Name 'sshd' -StartupType 'Automatic'
Start-Service -Name 'sshd'
if (-not (Test-Path -LiteralPath 'C:\\ProgramData\\ssh\\administrators_authorized_keys')) { Set-Content -LiteralPath 'C:\\ProgramData\\ssh\\administrators_authorized_keys' -Value KEYS -Encoding ascii }
icacls.exe 'C:\\ProgramData\\ssh\\administrators_authorized_keys' /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'
Restart-Service -Name 'sshd'
</powershell>
<persist>true</persist>
"""


def test_user_data_is_exactly_the_documented_script() -> None:
    current = userdata.public_key(ED_KEY)
    script = userdata.generate_user_data(current)
    assert script == EXPECTED_SCRIPT.replace("KEYS", f"'{current.authorized_key} wmco'")


def test_user_data_during_rotation_authorises_both_keys() -> None:
    current = userdata.public_key(ED_KEY)
    previous = userdata.public_key(RSA_KEY)
    script = userdata.generate_user_data(current, previous)
    keys = f"'{current.authorized_key} wmco', '{previous.authorized_key} wmco-previous'"
    assert script == EXPECTED_SCRIPT.replace("KEYS", keys)
    assert userdata.authorized_keys_in(script) == [current, previous]


def test_same_previous_key_is_not_listed_twice() -> None:
    current = userdata.public_key(ED_KEY)
    assert userdata.authorized_keys_in(userdata.generate_user_data(current, current)) == [current]


def test_user_data_for_keys_and_custom_port() -> None:
    script = userdata.user_data_for_keys(
        pem(EC_KEY, serialization.PrivateFormat.PKCS8),
        pem(ED_KEY, serialization.PrivateFormat.OpenSSH),
        ssh_port=2222,
    )
    assert "-LocalPort 2222 }" in script
    found = userdata.authorized_keys_in(script)
    assert [key.key_type for key in found] == [
        userdata.KeyType.ECDSA_P256,
        userdata.KeyType.ED25519,
    ]


def test_authorized_keys_in_other_text_is_empty() -> None:
    assert userdata.authorized_keys_in("invalid data") == []


SECRET_MARKER = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (None, userdata.MissingPrivateKeyError),
        (b"", userdata.MissingPrivateKeyError),
        ("   \n", userdata.MissingPrivateKeyError),
        (b"not a key " + SECRET_MARKER.encode(), userdata.UnparsablePrivateKeyError),
        (
            b"-----BEGIN PRIVATE KEY-----\n"
            + SECRET_MARKER.encode()
            + b"\n-----END PRIVATE KEY-----",
            userdata.UnparsablePrivateKeyError,
        ),
        (
            b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
            + SECRET_MARKER.encode()
            + b"\n-----END OPENSSH PRIVATE KEY-----",
            userdata.UnparsablePrivateKeyError,
        ),
    ],
)
def test_bad_keys_raise_domain_errors_without_key_material(
    data: bytes | str | None, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        userdata.load_private_key(data)
    assert isinstance(info.value, userdata.PrivateKeyError)
    assert isinstance(info.value, ValueError)
    assert SECRET_MARKER not in str(info.value)
    rendered = "".join(traceback.format_exception(info.value))
    assert SECRET_MARKER not in rendered


def test_encrypted_key_is_refused_clearly() -> None:
    encrypted = ED_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(userdata.UnparsablePrivateKeyError, match="passphrase"):
        userdata.load_private_key(encrypted)


def test_dsa_and_unsupported_curves_are_refused() -> None:
    dsa_key = dsa.generate_private_key(key_size=1024)
    with pytest.raises(userdata.UnsupportedKeyTypeError, match="DSA"):
        userdata.load_private_key(pem(dsa_key, serialization.PrivateFormat.PKCS8))
    secp256k1 = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(userdata.UnsupportedKeyTypeError, match="curve"):
        userdata.load_private_key(pem(secp256k1, serialization.PrivateFormat.PKCS8))


def test_weak_rsa_key_warns() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert userdata.key_warnings(weak)
    assert userdata.key_warnings(RSA_KEY) == []
    assert userdata.key_warnings(ED_KEY) == []


def test_parse_authorized_key_drops_comment_and_rejects_garbage() -> None:
    public = userdata.public_key(ED_KEY)
    assert userdata.parse_authorized_key(public.authorized_key + " someone@host") == public
    with pytest.raises(userdata.PrivateKeyError):
        userdata.parse_authorized_key("ssh-ed25519 not-base64!")
    with pytest.raises(userdata.PrivateKeyError):
        userdata.parse_authorized_key("ssh-dss AAAA")
