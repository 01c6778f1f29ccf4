"""The user-data controller against the REAL API server.

Covers: user data written for RSA, ECDSA and Ed25519 keys in PEM and OpenSSH formats (the right
public key and pub-key-hash); key rotation authorising both keys until every Windows Node has the
new hash; deletion and tampering reverted; a bad key and a missing key reported by Warning Events
without touching the existing user data; a missing Machine API namespace never created; and no
private key material in logs or Events.

Each test runs a Manager with only this controller, pointed at two fresh namespaces (operator and
"Machine API").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Namespace, Node, Secret
from lightkube.types import PatchType

import kube_helpers
from wmco import kube as kapi
from wmco import names, userdata
from wmco.controllers import userdata as userdata_controller
from wmco.runtime import manager as manager_mod
from wmco.settings import Settings
from wmco_sandbox.controlplane import ControlPlane

pytestmark = pytest.mark.integration

# Generous: informers reconnect with backoff when the API server is busy (CI has 2 cores).
DEADLINE = 45.0


eventually = functools.partial(kube_helpers.eventually, timeout=DEADLINE, poll=0.1)


# --- keys -------------------------------------------------------------------------------------


def new_key(kind: str) -> Any:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def pem_of(key: Any, fmt: str) -> bytes:
    if fmt == "openssh":
        private_format = serialization.PrivateFormat.OpenSSH
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        private_format = serialization.PrivateFormat.PKCS8
    else:
        private_format = serialization.PrivateFormat.TraditionalOpenSSL
    data: bytes = key.private_bytes(
        serialization.Encoding.PEM, private_format, serialization.NoEncryption()
    )
    return data


def public_of(pem: bytes) -> userdata.PublicKey:
    return userdata.public_key(userdata.load_private_key(pem))


# --- the operator under test ------------------------------------------------------------------


@dataclass
class Operator:
    kube: AsyncClient
    settings: Settings

    @property
    def ns(self) -> str:
        return self.settings.namespace

    @property
    def mapi(self) -> str:
        return self.settings.machine_api_namespace

    async def put_key(self, pem: bytes) -> None:
        secret = Secret(
            metadata=ObjectMeta(name=names.PRIVATE_KEY_SECRET, namespace=self.ns),
            data={names.PRIVATE_KEY_SECRET_KEY: base64.b64encode(pem).decode()},
        )
        try:
            await self.kube.create(secret)
        except Exception:
            await self.kube.replace(secret)

    async def user_data(self) -> Secret | None:
        return await kapi.get(self.kube, Secret, names.USER_DATA_SECRET, namespace=self.mapi)

    async def script(self) -> str | None:
        secret = await self.user_data()
        if secret is None or not secret.data:
            return None
        return base64.b64decode(secret.data[names.USER_DATA_SECRET_KEY]).decode()

    async def wait_authorised(self, *expected: userdata.PublicKey) -> Secret:
        wanted = [key.authorized_key for key in expected]

        async def check() -> bool:
            script = await self.script()
            return (
                script is not None
                and [k.authorized_key for k in userdata.authorized_keys_in(script)] == wanted
            )

        await eventually(check, f"user data authorising exactly {len(wanted)} key(s)")
        secret = await self.user_data()
        assert secret is not None
        return secret


async def events(kube: AsyncClient, namespace: str, name: str, reason: str) -> list[Event]:
    return [
        event
        async for event in kube.list(Event, namespace=namespace)
        if event.involvedObject.name == name and event.reason == reason
    ]


@contextlib.asynccontextmanager
async def running_operator(
    control_plane: ControlPlane, kube: AsyncClient, settings: Settings
) -> AsyncIterator[Operator]:
    client = kapi.make_client(control_plane.kubeconfig)
    manager = manager_mod.Manager(client, port=0)
    recorder = kapi.EventRecorder(client)
    userdata_controller.setup(manager, settings, recorder)
    task = asyncio.create_task(manager.run())
    try:
        yield Operator(kube, settings)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


@contextlib.asynccontextmanager
async def machine_api_namespace(kube: AsyncClient) -> AsyncIterator[str]:
    name = f"mapi-{uuid.uuid4().hex[:8]}"
    await kube.create(Namespace(metadata=ObjectMeta(name=name)))
    try:
        yield name
    finally:
        await kube.delete(Namespace, name)


@pytest.fixture
async def operator(
    control_plane: ControlPlane, kube: AsyncClient, namespace: str
) -> AsyncIterator[Operator]:
    async with machine_api_namespace(kube) as mapi:
        settings = Settings(namespace=namespace, machine_api_namespace=mapi, leader_election=False)
        async with running_operator(control_plane, kube, settings) as op:
            yield op


@contextlib.asynccontextmanager
async def windows_node(kube: AsyncClient, pub_key_hash: str) -> AsyncIterator[str]:
    name = f"win-{uuid.uuid4().hex[:8]}"
    await kube.create(
        Node(
            metadata=ObjectMeta(
                name=name,
                labels={names.OS_LABEL: names.OS_LABEL_WINDOWS},
                annotations={names.PUB_KEY_HASH_ANNOTATION: pub_key_hash},
            )
        )
    )
    try:
        yield name
    finally:
        await kube.delete(Node, name)


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["pem", "openssh"])
@pytest.mark.parametrize("kind", ["rsa", "ecdsa", "ed25519"])
async def test_user_data_authorises_the_public_key(operator: Operator, kind: str, fmt: str) -> None:
    pem = pem_of(new_key(kind), fmt)
    await operator.put_key(pem)
    expected = public_of(pem)

    secret = await operator.wait_authorised(expected)

    assert secret.type == "Opaque"
    assert list((secret.data or {}).keys()) == [names.USER_DATA_SECRET_KEY]
    annotations = secret.metadata.annotations or {}  # type: ignore[union-attr]
    assert annotations[names.PUB_KEY_HASH_ANNOTATION] == expected.pub_key_hash
    assert userdata_controller.PREVIOUS_PUBLIC_KEY_ANNOTATION not in annotations
    assert (secret.metadata.labels or {})[names.MANAGED_BY_LABEL] == names.MANAGED_BY_VALUE  # type: ignore[union-attr]
    script = await operator.script()
    assert script == userdata.generate_user_data(expected)

    async def announced() -> bool:
        return bool(
            await events(operator.kube, operator.mapi, names.USER_DATA_SECRET, "UserDataUpdated")
        )

    await eventually(announced, "a UserDataUpdated Event")


async def test_key_rotation_authorises_both_keys_until_every_node_switched(
    operator: Operator,
) -> None:
    old_pem = pem_of(new_key("ed25519"), "openssh")
    new_pem = pem_of(new_key("rsa"), "pem")
    old, new = public_of(old_pem), public_of(new_pem)
    async with windows_node(operator.kube, old.pub_key_hash) as node:
        await operator.put_key(old_pem)
        await operator.wait_authorised(old)

        await operator.put_key(new_pem)
        rotated = await operator.wait_authorised(new, old)
        annotations = rotated.metadata.annotations or {}  # type: ignore[union-attr]
        assert annotations[names.PUB_KEY_HASH_ANNOTATION] == new.pub_key_hash
        assert annotations[userdata_controller.PREVIOUS_PUBLIC_KEY_ANNOTATION] == old.authorized_key
        # Private material never lands in the user-data Secret.
        assert b"PRIVATE KEY" not in str(rotated.to_dict()).encode()

        # The node switches over: the previous key is dropped.
        await operator.kube.patch(
            Node,
            node,
            {"metadata": {"annotations": {names.PUB_KEY_HASH_ANNOTATION: new.pub_key_hash}}},
            patch_type=PatchType.MERGE,
        )
        done = await operator.wait_authorised(new)
        done_annotations = done.metadata.annotations or {}  # type: ignore[union-attr]
        assert userdata_controller.PREVIOUS_PUBLIC_KEY_ANNOTATION not in done_annotations
        assert done_annotations[names.PUB_KEY_HASH_ANNOTATION] == new.pub_key_hash


async def test_deleted_or_tampered_user_data_is_restored(operator: Operator) -> None:
    pem = pem_of(new_key("ecdsa"), "pem")
    await operator.put_key(pem)
    expected = public_of(pem)
    await operator.wait_authorised(expected)
    original = await operator.script()

    await operator.kube.delete(Secret, names.USER_DATA_SECRET, namespace=operator.mapi)
    await operator.wait_authorised(expected)
    assert await operator.script() == original

    intruder = public_of(pem_of(new_key("ed25519"), "pem"))
    await operator.kube.patch(
        Secret,
        names.USER_DATA_SECRET,
        {
            # Someone else's label and finalizer are not ours to remove; the script is.
            "metadata": {"labels": {"team": "windows"}, "finalizers": ["example.com/keep"]},
            "data": {
                names.USER_DATA_SECRET_KEY: base64.b64encode(
                    userdata.generate_user_data(intruder).encode()
                ).decode(),
                "extra": base64.b64encode(b"not ours").decode(),
            },
        },
        namespace=operator.mapi,
        patch_type=PatchType.MERGE,
    )

    async def restored() -> bool:
        return await operator.script() == original

    await eventually(restored, "the tampered user data to be restored")
    secret = await operator.user_data()
    assert secret is not None and secret.metadata is not None
    assert list((secret.data or {}).keys()) == [names.USER_DATA_SECRET_KEY]
    assert (secret.metadata.labels or {})["team"] == "windows"
    assert secret.metadata.finalizers == ["example.com/keep"]
    await operator.kube.patch(
        Secret,
        names.USER_DATA_SECRET,
        {"metadata": {"finalizers": None}},
        namespace=operator.mapi,
        patch_type=PatchType.MERGE,
    )

    await operator.kube.patch(
        Secret,
        names.USER_DATA_SECRET,
        {"metadata": {"annotations": {names.PUB_KEY_HASH_ANNOTATION: "0" * 64}}},
        namespace=operator.mapi,
        patch_type=PatchType.MERGE,
    )

    async def annotation_restored() -> bool:
        secret = await operator.user_data()
        annotations = (secret.metadata.annotations if secret and secret.metadata else None) or {}
        return annotations.get(names.PUB_KEY_HASH_ANNOTATION) == expected.pub_key_hash

    await eventually(annotation_restored, "the tampered pub-key-hash to be restored")
    assert await operator.script() == original


async def test_bad_key_warns_and_keeps_the_user_data(operator: Operator) -> None:
    pem = pem_of(new_key("rsa"), "openssh")
    await operator.put_key(pem)
    before = await operator.wait_authorised(public_of(pem))

    await operator.put_key(
        b"-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n"
    )

    async def warned() -> bool:
        return bool(
            await events(operator.kube, operator.ns, names.PRIVATE_KEY_SECRET, "PrivateKeyInvalid")
        )

    await eventually(warned, "a PrivateKeyInvalid Event on the private-key Secret")
    [event] = await events(
        operator.kube, operator.ns, names.PRIVATE_KEY_SECRET, "PrivateKeyInvalid"
    )
    assert event.type == "Warning"
    assert event.involvedObject.kind == "Secret"
    assert "could not be parsed" in (event.message or "")
    assert "kubectl create secret generic" in (event.message or "")
    after = await operator.user_data()
    assert after is not None
    assert after.metadata.resourceVersion == before.metadata.resourceVersion  # type: ignore[union-attr]


async def test_missing_key_warns_on_the_namespace_and_deletes_nothing(operator: Operator) -> None:
    async def warned(count: int) -> bool:
        found = await events(operator.kube, "default", operator.ns, "PrivateKeyInvalid")
        return sum(event.count or 1 for event in found) >= count

    # No key at start-up: an Event on the operator's Namespace, no user data.
    await eventually(lambda: warned(1), "a PrivateKeyInvalid Event on the Namespace")
    [event] = await events(operator.kube, "default", operator.ns, "PrivateKeyInvalid")
    assert event.type == "Warning"
    assert event.involvedObject.kind == "Namespace"
    assert "does not exist" in (event.message or "")
    assert await operator.user_data() is None

    pem = pem_of(new_key("ed25519"), "pem")
    await operator.put_key(pem)
    before = await operator.wait_authorised(public_of(pem))

    await operator.kube.delete(Secret, names.PRIVATE_KEY_SECRET, namespace=operator.ns)
    await eventually(lambda: warned(2), "a second PrivateKeyInvalid Event after deletion")
    after = await operator.user_data()
    assert after is not None
    assert after.metadata.resourceVersion == before.metadata.resourceVersion  # type: ignore[union-attr]


async def test_missing_machine_api_namespace_is_reported_not_created(
    control_plane: ControlPlane, kube: AsyncClient, namespace: str
) -> None:
    mapi = f"mapi-{uuid.uuid4().hex[:8]}"
    settings = Settings(namespace=namespace, machine_api_namespace=mapi, leader_election=False)
    pem = pem_of(new_key("ecdsa"), "openssh")
    async with running_operator(control_plane, kube, settings) as op:
        await op.put_key(pem)

        async def warned() -> bool:
            return bool(
                await events(
                    kube, "default", namespace, userdata_controller.USER_DATA_NAMESPACE_MISSING
                )
            )

        await eventually(warned, "an Event saying the Machine API namespace is missing")
        assert await kapi.get(kube, Namespace, mapi) is None

        # When the namespace appears, the user data follows without waiting for the backoff.
        await kube.create(Namespace(metadata=ObjectMeta(name=mapi)))
        try:
            await op.wait_authorised(public_of(pem))
        finally:
            await kube.delete(Namespace, mapi)


async def test_private_key_never_reaches_logs_or_events(
    operator: Operator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pem = pem_of(new_key("rsa"), "pem")
    await operator.put_key(pem)
    await operator.wait_authorised(public_of(pem))
    # A broken key whose bytes are real key material (the tail of a valid key is cut off).
    broken = pem[: len(pem) // 2] + b"\n-----END RSA PRIVATE KEY-----\n"
    await operator.put_key(broken)

    async def warned() -> bool:
        return bool(
            await events(operator.kube, operator.ns, names.PRIVATE_KEY_SECRET, "PrivateKeyInvalid")
        )

    await eventually(warned, "a PrivateKeyInvalid Event")

    body_lines = [line for line in pem.decode().splitlines() if line and "-----" not in line]
    encoded = base64.b64encode(pem).decode()
    messages = [
        event.message or ""
        for namespace in (operator.ns, operator.mapi, "default")
        async for event in operator.kube.list(Event, namespace=namespace)
    ]
    haystacks = {"logs": caplog.text, "events": "\n".join(messages)}
    for where, text in haystacks.items():
        assert text, f"nothing captured in {where}"
        for line in body_lines[:3] + body_lines[-3:]:
            assert line not in text, f"private key material in {where}"
        assert encoded[:40] not in text, f"base64 of the private key in {where}"
        assert "PRIVATE KEY-----" not in text, f"a PEM block in {where}"


# --- the pure rotation rule (no API) ------------------------------------------------------------


def test_previous_key_is_kept_only_while_vouched_for_and_needed() -> None:
    old = public_of(pem_of(new_key("ed25519"), "pem"))
    new = public_of(pem_of(new_key("ecdsa"), "pem"))
    intruder = public_of(pem_of(new_key("rsa"), "pem"))
    previous_key = userdata_controller.previous_key
    existing = userdata_controller.ExistingUserData
    as_written = existing(userdata.generate_user_data(old), old.pub_key_hash)

    # First write, or no Node left on another key: nothing to keep.
    assert previous_key(new, None, [old.pub_key_hash]) is None
    assert previous_key(new, as_written, []) is None
    assert previous_key(new, as_written, [new.pub_key_hash]) is None
    # The key changed and a Node still uses the old one.
    assert previous_key(new, as_written, [old.pub_key_hash, new.pub_key_hash]) == old
    assert previous_key(new, as_written, [""]) == old  # a Node waiting for replacement
    # A tampered script does not smuggle its key into the rotation...
    tampered = existing(userdata.generate_user_data(intruder), old.pub_key_hash)
    assert previous_key(new, tampered, [old.pub_key_hash]) is None
    # ... unless a Node vouches for it (the annotation alone may be missing: older Secrets).
    unannotated = existing(userdata.generate_user_data(old), None)
    assert previous_key(new, unannotated, [old.pub_key_hash]) == old
    # Later reconciles of the same key keep the remembered previous key until Nodes switch.
    ongoing = existing(userdata.generate_user_data(new, old), new.pub_key_hash, old.authorized_key)
    assert previous_key(new, ongoing, [old.pub_key_hash]) == old
    assert previous_key(new, ongoing, [new.pub_key_hash]) is None
