"""User data: keep Secret ``windows-user-data`` in step with the private key in ``cloud-private-key``.

The user puts an SSH private key in Secret ``cloud-private-key`` (key ``private-key.pem``) in the
operator's namespace. Windows MachineSets reference Secret ``windows-user-data`` (key ``userData``)
in the Machine API namespace: a first-boot PowerShell script that installs sshd and authorises the
key's public half (:mod:`wmco.userdata`). This controller writes that Secret at start-up and
whenever either Secret changes, so deleting or tampering with the user data is reverted.

One key, ``<operator namespace>/cloud-private-key``, is reconciled. Watches:

* the private-key Secret (its own key);
* the user-data Secret, mapped to the private-key key (tampering and deletion are reverted);
* the Machine API Namespace, so a namespace created late is used at once;
* Windows Nodes, when their ``pub-key-hash`` annotation changes (it ends a key rotation).

**Key rotation without downtime.** When the key changes, hosts set up with the old key must stay
reachable until they have been switched over. The user-data Secret remembers the public key it
authorised before, in annotation :data:`PREVIOUS_PUBLIC_KEY_ANNOTATION` (public material only; the
private key is never copied anywhere), and the script authorises both keys while any Windows Node
still carries a ``pub-key-hash`` other than the new key's. Once every such Node has the new hash,
the previous key is dropped. The previous key is taken from the script as it was, but only if its
hash matches the Secret's ``pub-key-hash`` annotation or a Node's: a script someone tampered with
does not smuggle a foreign key into the rotation. Whoever can write the user-data Secret could
already make new hosts trust any key until it is reverted; the operator trusts it no further.
A second rotation during a rotation keeps only the most recent previous key.

**A missing or unusable key** stops nothing and destroys nothing: the existing user data is left
as it is, a Warning Event ``PrivateKeyInvalid`` says what is wrong and what to do (on the
private-key Secret, or on the operator's Namespace when the Secret does not exist), and the next
change of the Secret triggers a new attempt. No message ever contains key material; keys are named
by their ``SHA256:`` fingerprint.

**The Machine API namespace is never created** by the operator: when it is missing, a log line and
a Warning Event on the operator's Namespace, then retries with backoff (and at once when the
Namespace appears). On plain Kubernetes without the Machine API, point
``settings.machine_api_namespace`` at the operator's own namespace.

Not done here (yet): the copy in ``openshift-cluster-api`` that the reference operator keeps, and
patching the Nodes' ``pub-key-hash`` (that is the Node/Machine controllers' roll-out).
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Node, Secret

from wmco import kube, names, userdata
from wmco.runtime import controller as controller_mod
from wmco.runtime import informer as informer_mod
from wmco.runtime import keys
from wmco.runtime import manager as manager_mod
from wmco.settings import Settings

log = logging.getLogger(__name__)

CONTROLLER_NAME: Final = "userdata"

PREVIOUS_PUBLIC_KEY_ANNOTATION: Final = "windowsmachineconfig.openshift.io/previous-public-key"
"""On the user-data Secret during a key rotation: the previous public key (authorized_keys form).

Belongs in :mod:`wmco.names`; kept here until it moves there.
"""

USER_DATA_NAMESPACE_MISSING: Final = "UserDataNamespaceMissing"
"""Event reason: the Machine API namespace for the user-data Secret does not exist.

Belongs in :class:`wmco.names.EventReason`; kept here until it moves there.
"""

SECRET_TYPE_OPAQUE: Final = "Opaque"

_FIX_HINT: Final = (
    "create it with: kubectl create secret generic {secret} "
    "--from-file={key}=<path to an unencrypted RSA, ECDSA or Ed25519 private key> -n {namespace}"
)


# ---------------------------------------------------------------------------------------------
# Pure decisions


@dataclasses.dataclass(frozen=True, slots=True)
class ExistingUserData:
    """What the current user-data Secret says.

    Attributes:
        user_data: The decoded script, or ``None`` when absent or undecodable.
        pub_key_hash: Its ``pub-key-hash`` annotation.
        previous_public_key: Its :data:`PREVIOUS_PUBLIC_KEY_ANNOTATION`.
    """

    user_data: str | None
    pub_key_hash: str | None = None
    previous_public_key: str | None = None

    @classmethod
    def from_secret(cls, secret: Secret) -> ExistingUserData:
        """Read a user-data Secret as stored."""
        annotations = (secret.metadata.annotations if secret.metadata else None) or {}
        return cls(
            user_data=_decode_text((secret.data or {}).get(names.USER_DATA_SECRET_KEY)),
            pub_key_hash=annotations.get(names.PUB_KEY_HASH_ANNOTATION),
            previous_public_key=annotations.get(PREVIOUS_PUBLIC_KEY_ANNOTATION),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class DesiredUserData:
    """The user-data Secret's content as it should be.

    Attributes:
        user_data: The script.
        current: The key in use.
        previous: The key still authorised during a rotation.
    """

    user_data: str
    current: userdata.PublicKey
    previous: userdata.PublicKey | None = None

    @property
    def annotations(self) -> dict[str, str | None]:
        """The annotations to set (``None``: remove)."""
        return {
            names.PUB_KEY_HASH_ANNOTATION: self.current.pub_key_hash,
            PREVIOUS_PUBLIC_KEY_ANNOTATION: (
                self.previous.authorized_key if self.previous is not None else None
            ),
        }

    def describe(self) -> str:
        """A message for people: fingerprints and hashes, never key material."""
        text = (
            f"user data authorises public key {userdata.fingerprint(self.current)} "
            f"(pub-key-hash {self.current.pub_key_hash})"
        )
        if self.previous is not None:
            text += (
                f" and, until every Windows Node has switched, the previous key "
                f"{userdata.fingerprint(self.previous)}"
            )
        return text


def private_key_data(secret: Secret | None) -> bytes | None:
    """The ``private-key.pem`` bytes of the private-key Secret, or ``None``.

    Returns ``None`` when the Secret or the key is missing, or the value is not base64.
    """
    if secret is None:
        return None
    encoded = (secret.data or {}).get(names.PRIVATE_KEY_SECRET_KEY)
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None


def node_key_hashes(nodes: Iterable[Node]) -> list[str]:
    """The ``pub-key-hash`` annotations of the Nodes that carry one (``""`` included)."""
    hashes: list[str] = []
    for node in nodes:
        annotations = (node.metadata.annotations if node.metadata else None) or {}
        value = annotations.get(names.PUB_KEY_HASH_ANNOTATION)
        if value is not None:
            hashes.append(value)
    return hashes


def previous_key(
    current: userdata.PublicKey, existing: ExistingUserData | None, node_hashes: Iterable[str]
) -> userdata.PublicKey | None:
    """The key to keep authorising next to ``current`` (key rotation), if any.

    Args:
        current: The key now in the private-key Secret.
        existing: The user-data Secret as it is (``None`` when absent).
        node_hashes: ``pub-key-hash`` of every Windows Node that carries one.

    Returns:
        The previous key while some Node still has another hash than ``current``'s; else ``None``.
    """
    hashes = list(node_hashes)
    if existing is None or all(value == current.pub_key_hash for value in hashes):
        return None
    candidate: userdata.PublicKey | None = None
    if existing.pub_key_hash == current.pub_key_hash:
        # Same key as last time: an ongoing rotation keeps the key it remembered.
        if existing.previous_public_key:
            try:
                candidate = userdata.parse_authorized_key(existing.previous_public_key)
            except userdata.PrivateKeyError:
                candidate = None
    elif existing.user_data is not None:
        # The key changed: the key the script authorised as current becomes the previous one,
        # provided the Secret's own annotation or a Node vouches for it.
        trusted = {value for value in (existing.pub_key_hash, *hashes) if value}
        authorised = userdata.authorized_keys_in(existing.user_data)
        if authorised and authorised[0].pub_key_hash in trusted:
            candidate = authorised[0]
    if candidate is None or candidate.authorized_key == current.authorized_key:
        return None
    return candidate


def desired_user_data(
    key_data: bytes | None,
    existing: ExistingUserData | None,
    node_hashes: Iterable[str],
    *,
    ssh_port: int = 22,
) -> DesiredUserData:
    """What the user-data Secret must hold for the private key ``key_data``.

    Raises:
        userdata.PrivateKeyError: The key is missing or unusable (the message holds no key bytes).
    """
    current = userdata.public_key(userdata.load_private_key(key_data))
    previous = previous_key(current, existing, node_hashes)
    return DesiredUserData(
        user_data=userdata.generate_user_data(current, previous, ssh_port=ssh_port),
        current=current,
        previous=previous,
    )


def is_up_to_date(secret: Secret, desired: DesiredUserData) -> bool:
    """Whether a stored user-data Secret already has exactly the desired content."""
    metadata = secret.metadata or ObjectMeta()
    annotations = metadata.annotations or {}
    labels = metadata.labels or {}
    expected_data = {names.USER_DATA_SECRET_KEY: _encode_text(desired.user_data)}
    return (
        (secret.type or SECRET_TYPE_OPAQUE) == SECRET_TYPE_OPAQUE
        and (secret.data or {}) == expected_data
        and not secret.stringData
        and all(annotations.get(k) == v for k, v in desired.annotations.items())
        and labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE
    )


def user_data_secret(
    desired: DesiredUserData, namespace: str, base: ObjectMeta | None = None
) -> Secret:
    """The user-data Secret to write, keeping the other metadata of ``base`` (labels...)."""
    annotations = dict((base.annotations if base else None) or {})
    for key, value in desired.annotations.items():
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
    labels = dict((base.labels if base else None) or {})
    labels[names.MANAGED_BY_LABEL] = names.MANAGED_BY_VALUE
    # Keep everything else of the stored metadata (finalizers, owners...): this is a PUT.
    metadata = copy.deepcopy(base) if base is not None else ObjectMeta()
    metadata.name = names.USER_DATA_SECRET
    metadata.namespace = namespace
    metadata.labels = labels
    metadata.annotations = annotations
    return Secret(
        metadata=metadata,
        type=SECRET_TYPE_OPAQUE,
        data={names.USER_DATA_SECRET_KEY: _encode_text(desired.user_data)},
    )


def key_problem_message(
    error: userdata.PrivateKeyError, settings: Settings, *, exists: bool
) -> str:
    """The Event message for an unusable key: what is wrong, what to do, what was kept."""
    where = f"{settings.namespace}/{names.PRIVATE_KEY_SECRET}"
    if not exists:
        what = f"Secret {where} does not exist"
    else:
        what = f"Secret {where} key {names.PRIVATE_KEY_SECRET_KEY}: {error}"
    hint = _FIX_HINT.format(
        secret=names.PRIVATE_KEY_SECRET,
        key=names.PRIVATE_KEY_SECRET_KEY,
        namespace=settings.namespace,
    )
    return (
        f"{what}; {hint}. The user data "
        f"{settings.machine_api_namespace}/{names.USER_DATA_SECRET} was left unchanged."
    )


def _encode_text(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _decode_text(encoded: str | None) -> str | None:
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Effects


async def current_private_key(client: kube.Client, settings: Settings) -> bytes | None:
    """The private key bytes the operator should use now, for the configure flow.

    Args:
        client: API client.
        settings: Operator settings (the namespace of the private-key Secret).

    Returns:
        The ``private-key.pem`` bytes, or ``None`` when the Secret or the key is missing.
        The bytes are secret: never log them.
    """
    secret = await kube.get(client, Secret, names.PRIVATE_KEY_SECRET, namespace=settings.namespace)
    return private_key_data(secret)


class UserDataReconciler:
    """Reconciles the one key ``<operator namespace>/cloud-private-key``."""

    def __init__(
        self,
        client: kube.Client,
        settings: Settings,
        recorder: kube.EventRecorder,
        nodes: informer_mod.Informer[Node],
    ) -> None:
        """Create the reconciler.

        Args:
            client: API client.
            settings: Operator settings.
            recorder: Where Events go.
            nodes: Informer of the Windows Nodes (their ``pub-key-hash`` ends a rotation).
        """
        self._client = client
        self._settings = settings
        self._recorder = recorder
        self._nodes = nodes

    async def __call__(self, key: str) -> controller_mod.Result | None:
        """Bring the user-data Secret in line with the private key."""
        settings = self._settings
        private = await kube.get(
            self._client, Secret, names.PRIVATE_KEY_SECRET, namespace=settings.namespace
        )
        existing = await kube.get(
            self._client,
            Secret,
            names.USER_DATA_SECRET,
            namespace=settings.machine_api_namespace,
        )
        try:
            desired = desired_user_data(
                private_key_data(private),
                ExistingUserData.from_secret(existing) if existing is not None else None,
                node_key_hashes(self._nodes.store.objects()),
                ssh_port=settings.ssh_port,
            )
        except userdata.PrivateKeyError as error:
            await self._report_key_problem(error, private)
            return None
        if existing is not None and is_up_to_date(existing, desired):
            return None
        try:
            written = await self._write(desired, existing)
        except kube.NotFound:
            await self._report_missing_namespace()
            return controller_mod.Result(requeue=True)
        log.info(
            "%s/%s written: %s",
            settings.machine_api_namespace,
            names.USER_DATA_SECRET,
            desired.describe(),
        )
        await self._recorder.emit_event(
            kube.ref_of(written), "Normal", names.EventReason.USER_DATA_UPDATED, desired.describe()
        )
        return None

    async def _write(self, desired: DesiredUserData, existing: Secret | None) -> Secret:
        namespace = self._settings.machine_api_namespace
        if existing is not None and (existing.type or SECRET_TYPE_OPAQUE) != SECRET_TYPE_OPAQUE:
            # A Secret's type is immutable: replace the object.
            log.warning(
                "%s/%s has type %s, not %s; recreating it",
                namespace,
                names.USER_DATA_SECRET,
                existing.type,
                SECRET_TYPE_OPAQUE,
            )
            await kube.delete(self._client, Secret, names.USER_DATA_SECRET, namespace=namespace)
            existing = None
        if existing is None:
            return await kube.create(self._client, user_data_secret(desired, namespace))
        return await kube.replace(
            self._client, user_data_secret(desired, namespace, existing.metadata)
        )

    async def _report_key_problem(
        self, error: userdata.PrivateKeyError, private: Secret | None
    ) -> None:
        message = key_problem_message(error, self._settings, exists=private is not None)
        log.warning("cannot write the user data: %s", message)
        ref = kube.ref_of(private) if private is not None else await self._namespace_ref()
        await self._recorder.emit_event(
            ref, "Warning", names.EventReason.PRIVATE_KEY_INVALID, message
        )

    async def _report_missing_namespace(self) -> None:
        settings = self._settings
        message = (
            f"namespace {settings.machine_api_namespace} for Secret {names.USER_DATA_SECRET} "
            "does not exist; the operator does not create it. Install the Machine API, or on "
            "a cluster without it set the Machine API namespace to the operator's namespace. "
            "Retrying."
        )
        log.warning("cannot write the user data: %s", message)
        await self._recorder.emit_event(
            await self._namespace_ref(), "Warning", USER_DATA_NAMESPACE_MISSING, message
        )

    async def _namespace_ref(self) -> kube.ObjectRef:
        namespace = await kube.get(self._client, Namespace, self._settings.namespace)
        if namespace is not None:
            return kube.ref_of(namespace)
        return kube.ObjectRef(api_version="v1", kind="Namespace", name=self._settings.namespace)


# ---------------------------------------------------------------------------------------------
# Wiring


def _pub_key_hash_changed(event: informer_mod.Event[Any]) -> bool:
    if event.type is not informer_mod.EventType.MODIFIED or event.old is None:
        return True
    return _annotation(event.obj, names.PUB_KEY_HASH_ANNOTATION) != _annotation(
        event.old, names.PUB_KEY_HASH_ANNOTATION
    )


def _private_key_changed(event: informer_mod.Event[Any]) -> bool:
    if event.type is not informer_mod.EventType.MODIFIED or event.old is None:
        return True
    new: Mapping[str, str] = event.obj.data or {}
    old: Mapping[str, str] = event.old.data or {}
    return new.get(names.PRIVATE_KEY_SECRET_KEY) != old.get(names.PRIVATE_KEY_SECRET_KEY)


def _annotation(obj: Any, name: str) -> str | None:
    annotations: Mapping[str, str] | None = obj.metadata.annotations
    return (annotations or {}).get(name)


def setup(
    manager: manager_mod.Manager, settings: Settings, recorder: kube.EventRecorder
) -> controller_mod.Controller:
    """Register the user-data controller and its watches with ``manager``.

    Args:
        manager: The manager that owns informers and controllers.
        settings: Operator settings (namespaces, SSH port).
        recorder: Where Events go.

    Returns:
        The controller (already registered).
    """
    key = keys.make_key(names.PRIVATE_KEY_SECRET, settings.namespace)

    def to_key(obj: Any) -> Iterable[str]:
        return (key,)

    private_keys = manager.informer(
        Secret, namespace=settings.namespace, fields={"metadata.name": names.PRIVATE_KEY_SECRET}
    )
    user_data = manager.informer(
        Secret,
        namespace=settings.machine_api_namespace,
        fields={"metadata.name": names.USER_DATA_SECRET},
    )
    namespaces = manager.informer(
        Namespace, fields={"metadata.name": settings.machine_api_namespace}
    )
    nodes = manager.informer(Node, labels={names.OS_LABEL: names.OS_LABEL_WINDOWS})
    reconciler = UserDataReconciler(manager.client, settings, recorder, nodes)
    controller = manager.controller(
        CONTROLLER_NAME, reconciler, workers=1, backoff_base=0.5, backoff_max=300.0
    )
    controller.watch(private_keys, to_key, _private_key_changed)
    controller.watch(user_data, to_key)
    controller.watch(namespaces, to_key)
    controller.watch(nodes, to_key, _pub_key_hash_changed)
    # Reconcile at start-up even when neither Secret exists yet (missing key -> Event).
    controller.enqueue(key)
    return controller
