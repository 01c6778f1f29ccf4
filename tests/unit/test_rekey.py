"""Key rotation's pure parts: the authorized_keys command, which keys to keep, which to offer."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node, Secret

from wmco import names, userdata
from wmco.cluster import clientca, trustedkeys
from wmco.nodeconfig import rekey, runner
from wmco.nodeconfig.instance import Inputs
from wmco.payload import manifest as payload_manifest
from wmco.settings import ConfigMapKey, Settings
from wmco.windows import commands, quoting

BLOB_A = "AAAAC3NzaC1lZDI1NTE5AAAAIHmI+2sNEsT1E/L5hQewTSZNU37s7S6Tah7+LxKzma+2"
BLOB_B = "AAAAC3NzaC1lZDI1NTE5AAAAINRu/o5HmRgzDW+CyA9qAN6Sq27HkVz3JQgBp5gzEn2/"


def pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def test_authorize_key_is_the_documented_form() -> None:
    assert commands.authorize_key("ssh-ed25519", BLOB_B, "wmco", revoke=[BLOB_A]) == (
        "$ErrorActionPreference = 'Stop'; "
        "$f = 'C:\\ProgramData\\ssh\\administrators_authorized_keys'; "
        f"$k = @(Get-Content -LiteralPath $f | Where-Object {{ $_ -notlike '*{BLOB_B}*' -and "
        f"$_ -notlike '*{BLOB_A}*' }}) + 'ssh-ed25519 {BLOB_B} wmco'; "
        "Set-Content -LiteralPath $f -Value $k -Encoding ascii; "
        "icacls.exe $f /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'; "
        "exit $LASTEXITCODE"
    )


@pytest.mark.parametrize(
    ("key_type", "blob", "comment", "revoke"),
    [
        ("ssh-dss", BLOB_A, "wmco", []),
        ("ssh-ed25519", "AAAA*", "wmco", []),
        ("ssh-ed25519", BLOB_A + "'; Remove-Item C:\\", "wmco", []),
        ("ssh-ed25519", BLOB_A, "wm co", []),
        ("ssh-ed25519", BLOB_A, "wmco", ["[abc]"]),
    ],
)
def test_authorize_key_refuses_anything_but_a_key(
    key_type: str, blob: str, comment: str, revoke: list[str]
) -> None:
    with pytest.raises(quoting.UnsafeValueError):
        commands.authorize_key(key_type, blob, comment, revoke=revoke)


def key(data: bytes | None = None) -> trustedkeys.TrustedKey:
    return trustedkeys.TrustedKey.parse(data or pem())


def test_the_first_start_keeps_the_current_key() -> None:
    current = key()
    decision = trustedkeys.decide(current, [], [])
    assert decision.keys == (current,) and not decision.complete


def test_a_new_key_joins_the_previous_one_before_any_host_moves() -> None:
    old, new = key(), key()
    decision = trustedkeys.decide(new, [old], [old.pub_key_hash, old.pub_key_hash])
    assert decision.keys == (new, old) and decision.pending == 2 and not decision.complete


def test_the_previous_key_stays_while_a_node_or_a_joining_host_needs_it() -> None:
    old, new = key(), key()
    assert trustedkeys.decide(new, [new, old], [new.pub_key_hash, old.pub_key_hash]).keys == (
        new,
        old,
    )
    joining = trustedkeys.decide(new, [new, old], [new.pub_key_hash], joining=1)
    assert joining.keys == (new, old) and not joining.complete


def test_the_rotation_completes_when_every_node_moved() -> None:
    old, new = key(), key()
    decision = trustedkeys.decide(new, [new, old], [new.pub_key_hash, new.pub_key_hash])
    assert decision.keys == (new,) and decision.complete and decision.pending == 0


def test_a_second_rotation_keeps_every_key_a_node_may_trust() -> None:
    first, second, third = key(), key(), key()
    hashes = [first.pub_key_hash, second.pub_key_hash]
    decision = trustedkeys.decide(third, [first, second], hashes)
    assert set(decision.keys) == {first, second, third}


def test_the_secret_round_trips_and_unusable_entries_are_skipped() -> None:
    old, new = key(), key()
    data = trustedkeys.secret_data([new, old]) | {"junk.pem": base64.b64encode(b"x").decode()}
    secret = Secret(metadata=ObjectMeta(name=names.TRUSTED_PRIVATE_KEY_SECRET), data=data)
    assert {k.pub_key_hash for k in trustedkeys.stored_keys(secret)} == {
        old.pub_key_hash,
        new.pub_key_hash,
    }
    assert trustedkeys.previous_keys(new.pub_key_hash, secret) == (old.pem,)
    assert trustedkeys.holds(new.pub_key_hash, secret)
    assert not trustedkeys.holds(key().pub_key_hash, secret)
    assert old.pem not in repr(old).encode()


def inputs(current: bytes, *previous: bytes) -> Inputs:
    manifest = payload_manifest.Manifest(directory=Path("."), version="t", files=())
    problem = clientca.ClientCaProblem(
        source=ConfigMapKey.parse("ns/name:key"), reason="none", exists=False
    )
    return Inputs.from_key(
        Settings(),
        current,
        manifest,
        "v",
        client_ca=problem,
        previous_private_keys=previous,
    )


def node(**annotations: str) -> Node:
    return Node(metadata=ObjectMeta(name="n", annotations=annotations))


def test_the_key_the_node_trusts_is_offered_first_then_current_then_previous() -> None:
    current, old, older = pem(), pem(), pem()
    flow = inputs(current, older, old)
    trusting_old = node(
        **{names.PUB_KEY_HASH_ANNOTATION: trustedkeys.TrustedKey.parse(old).pub_key_hash}
    )
    hashes = [login.pub_key_hash for login in runner.login_keys(flow, trusting_old)]
    expected = [key(p).pub_key_hash for p in (old, current, older)]
    assert hashes == expected
    assert [login.pub_key_hash for login in runner.login_keys(flow, None)] == [
        key(p).pub_key_hash for p in (current, older, old)
    ]


def test_only_configured_nodes_with_another_hash_need_rekeying() -> None:
    current = pem()
    flow = inputs(current)
    version = {names.VERSION_ANNOTATION: "v"}
    assert rekey.needs_rekey(node(**version, **{names.PUB_KEY_HASH_ANNOTATION: "other"}), flow)
    assert not rekey.needs_rekey(
        node(**version, **{names.PUB_KEY_HASH_ANNOTATION: flow.pub_key_hash}), flow
    )
    assert not rekey.needs_rekey(node(**version, **{names.PUB_KEY_HASH_ANNOTATION: ""}), flow)
    assert not rekey.needs_rekey(node(**{names.PUB_KEY_HASH_ANNOTATION: "other"}), flow)
    assert userdata.pub_key_hash(userdata.load_private_key(current)) == flow.pub_key_hash
