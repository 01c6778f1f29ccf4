"""The Secret ``windows-exporter-ca``: created, kept usable, restored and rotated in one place.

Two parts of the operator need the exporter CA: the host flow, which issues each host's serving
certificate, and the monitoring controller, which owns the Secret. Both go through one
:class:`CaKeeper`, so there is one creator (under a lock: never two CAs for one cluster) and one
memory of the last good CA.

That memory is what makes a user's edit harmless: a Secret whose CA no longer parses (a key
pasted over, a field deleted, the whole Secret deleted) is written back with the CA it held,
and the hosts keep their certificates. Only when the operator has never seen a good CA (a fresh
start on an already broken Secret) does it issue a new one, and every host gets a new serving
certificate on its next pass. A Secret holding some *other* valid CA is taken as it is (reported
as adopted): that is how a user brings a CA of their own.

The operator may update this one Secret but create none (``deploy/base/rbac-monitoring.yaml``:
a created service-account-token Secret would mint tokens), so the install manifests ship it
empty (``deploy/base/windows-exporter-ca-secret.yaml``) and the first pass fills it. Where the operator runs with more rights (the tests), a missing
Secret is created. Nothing here raises on bad input; API errors are the caller's
(:class:`wmco.kube.KubeError`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime
import enum
import logging
from collections.abc import Callable

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

from wmco import kube, names
from wmco.cluster import exporterca

log = logging.getLogger(__name__)

SECRET_TYPE = "kubernetes.io/tls"
LABELS = {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE}


class Action(enum.StrEnum):
    """What :meth:`CaKeeper.ensure` had to do."""

    NONE = "none"
    CREATED = "created"
    """There was no Secret, or the empty one ``deploy/monitoring/`` ships: a new CA."""
    RESTORED = "restored"
    """The Secret was deleted or unusable: written back with the CA it held."""
    REPLACED = "replaced"
    """The Secret was unusable and its CA unknown: a new CA (hosts get new certificates)."""
    RELABELLED = "relabelled"
    """The CA was fine but the Secret had lost its labels."""
    ROTATED = "rotated"
    """The CA was due: a new one, the old one still trusted in ``ca.crt`` until it expires."""
    ADOPTED = "adopted"
    """Someone put another valid CA there: it is used (hosts get certificates of it)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """The CA in force and what was done to get it.

    Attributes:
        ca: The CA (what the Secret now holds).
        action: What was done.
        detail: Why, for an Event and a log line (never key material).
    """

    ca: exporterca.CertificateAuthority
    action: Action = Action.NONE
    detail: str = ""


def decoded(secret: Secret) -> dict[str, bytes]:
    """The Secret's data, base64-decoded (undecodable values are left out)."""
    result: dict[str, bytes] = {}
    for key, value in (secret.data or {}).items():
        try:
            result[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
    return result


def usable(secret: Secret | None) -> exporterca.CertificateAuthority | str:
    """The CA a Secret holds, or what is wrong with it."""
    if secret is None:
        return "it does not exist"
    if secret.type != SECRET_TYPE:
        return f"its type is {secret.type!r}, not {SECRET_TYPE}"
    try:
        return exporterca.parse_secret_data(decoded(secret))
    except ValueError as exc:
        return str(exc)


def _placeholder(secret: Secret) -> bool:
    """The empty Secret ``deploy/monitoring/`` ships for the operator to fill."""
    return not any((secret.data or {}).values())


def _labelled(secret: Secret) -> bool:
    labels = (secret.metadata.labels if secret.metadata else None) or {}
    return all(labels.get(key) == value for key, value in LABELS.items())


class CaKeeper:
    """Keeps the exporter CA Secret usable (see the module docstring).

    Args:
        client: API client.
        namespace: The operator's namespace.
        cached: The Secret as the informer last saw it (``None`` when absent or not synced).
        clock: The current time (tests move it).
    """

    def __init__(
        self,
        client: kube.Client,
        namespace: str,
        cached: Callable[[], Secret | None],
        *,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self._client = client
        self.namespace = namespace
        self._cached = cached
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._lock = asyncio.Lock()
        self._last_good: exporterca.CertificateAuthority | None = None
        self._parsed: tuple[str, exporterca.CertificateAuthority] | None = None
        self._outcomes: list[Outcome] = []

    def take_outcomes(self) -> list[Outcome]:
        """What :meth:`ensure` did since the last call (whoever called it), for Events."""
        taken, self._outcomes = self._outcomes, []
        return taken

    @property
    def last_good(self) -> exporterca.CertificateAuthority | None:
        """The last CA seen usable (what a broken Secret is restored with)."""
        return self._last_good

    def cached_ca(self) -> exporterca.CertificateAuthority | None:
        """The CA of the cached Secret when it is usable (parsed once per resourceVersion)."""
        secret = self._cached()
        if secret is None or secret.metadata is None:
            return None
        version = secret.metadata.resourceVersion or ""
        if self._parsed is not None and self._parsed[0] == version:
            return self._parsed[1]
        found = usable(secret)
        if isinstance(found, str):
            return None
        self._parsed = (version, found)
        self._seen(found)
        return found

    def _seen(self, found: exporterca.CertificateAuthority) -> None:
        """Remember a usable CA; one the operator did not write is reported as adopted."""
        previous, self._last_good = self._last_good, found
        if previous is not None and previous.cert_pem != found.cert_pem:
            self._outcomes.append(
                Outcome(
                    found,
                    Action.ADOPTED,
                    f"it holds another CA (valid until {found.not_after:%Y-%m-%d}), which is used "
                    "from now on: every host gets a certificate of it",
                )
            )

    async def current(self) -> exporterca.CertificateAuthority | None:
        """The CA for issuing a host's certificate; ``None`` (logged) when the API fails.

        Never raises: a host is configured without exporter TLS rather than not at all.
        """
        ca = self.cached_ca()
        if ca is not None:
            return ca
        try:
            return (await self.ensure()).ca
        except kube.KubeError as exc:
            log.warning(
                "exporter CA Secret %s/%s: %s; hosts are configured without windows_exporter "
                "until it can be read and written",
                self.namespace,
                names.WINDOWS_EXPORTER_CA_SECRET,
                exc,
            )
            return None

    async def ensure(self, *, rotate_due: bool = False) -> Outcome:
        """Make the Secret hold a usable CA; rotate it when due and ``rotate_due``.

        Every outcome but :attr:`Action.NONE` is also kept for :meth:`take_outcomes` (the host
        flow may be the one that restores the Secret; the monitoring controller reports it).

        Raises:
            kube.KubeError: The API refused a read or a write.
        """
        outcome = await self._ensure(rotate_due=rotate_due)
        if outcome.action is not Action.NONE:
            self._outcomes.append(outcome)
        return outcome

    async def _ensure(self, *, rotate_due: bool) -> Outcome:
        async with self._lock:
            secret = await kube.get(
                self._client, Secret, names.WINDOWS_EXPORTER_CA_SECRET, namespace=self.namespace
            )
            found = usable(secret)
            if isinstance(found, exporterca.CertificateAuthority):
                self._seen(found)
                outcome = Outcome(found)
                if secret is not None and not _labelled(secret):
                    await self._write(secret, found)
                    outcome = Outcome(found, Action.RELABELLED, "its labels were removed")
                if rotate_due and exporterca.ca_due_for_rotation(found, self._clock()):
                    rotated = exporterca.rotate(found, now=self._clock())
                    await self._write(secret, rotated)
                    self._last_good = rotated
                    return Outcome(
                        rotated,
                        Action.ROTATED,
                        f"the CA valid until {found.not_after:%Y-%m-%d} was due for rotation; "
                        f"the new one is valid until {rotated.not_after:%Y-%m-%d} and the old "
                        "one stays trusted in ca.crt until it expires",
                    )
                return outcome
            problem = found
            if self._last_good is not None:
                ca, action = self._last_good, Action.RESTORED
                detail = f"{problem}; restored the CA it held"
            elif secret is None or _placeholder(secret):
                ca, action, detail = exporterca.generate_ca(now=self._clock()), Action.CREATED, ""
            else:
                ca, action = exporterca.generate_ca(now=self._clock()), Action.REPLACED
                detail = f"{problem}; issued a new CA (every host gets a new certificate)"
            await self._write(secret, ca)
            self._last_good = ca
            return Outcome(ca, action, detail)

    async def _write(self, existing: Secret | None, ca: exporterca.CertificateAuthority) -> None:
        """Create the Secret, or replace it (conditionally; a wrong type means re-create)."""
        body = Secret(
            metadata=ObjectMeta(
                name=names.WINDOWS_EXPORTER_CA_SECRET,
                namespace=self.namespace,
                labels=dict(LABELS),
                annotations=(
                    existing.metadata.annotations if existing and existing.metadata else None
                ),
            ),
            type=SECRET_TYPE,
            data={
                key: base64.b64encode(value.encode()).decode()
                for key, value in ca.secret_data().items()
            },
        )
        if existing is not None and existing.type != SECRET_TYPE:
            # The type of a Secret cannot change: delete it and create it anew.
            await kube.delete(
                self._client, Secret, names.WINDOWS_EXPORTER_CA_SECRET, namespace=self.namespace
            )
            existing = None
        if existing is None:
            await kube.create(self._client, body)
            return
        assert body.metadata is not None and existing.metadata is not None
        body.metadata.resourceVersion = existing.metadata.resourceVersion
        await kube.replace(self._client, body)
