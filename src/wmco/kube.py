"""The one adapter between the operator and the Kubernetes client library (lightkube).

Everything the operator does against the API server goes through this module, so that the
client library (and its HTTP stack, httpx2) could be replaced by changing one file. It offers:

* building a client (:func:`make_client`) from a kubeconfig file, the in-cluster service
  account, or the environment;
* plain verbs that translate the library's exceptions into this module's error types
  (:class:`KubeError` and subclasses) and return ``None`` on 404 where a missing object is an
  ordinary answer (:func:`get`, :func:`delete`);
* :func:`list_objects`, which returns the items together with the list's resourceVersion, and
  :func:`watch`, ONE watch stream from a resourceVersion with bookmarks, yielding typed
  :class:`WatchEvent` and raising :class:`Gone` when the resourceVersion is too old. Reconnection
  and relist-and-diff are the informer's business (``wmco.runtime.informer``), not this module's:
  lightkube's own watch silently resets the resourceVersion on 410, which hides deletions.
* :class:`EventRecorder`, which writes core/v1 Events and folds repeats into a count.

Why some private lightkube attributes are used: ``AsyncClient.watch`` neither accepts
``allowWatchBookmarks`` nor ends when the server closes the stream (it reconnects by itself), so
:func:`watch` builds the request with lightkube's request builder and reads the stream itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import email.utils
import enum
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Generic, TypeAlias, TypeVar, cast

import httpx2
import lightkube
import msgspec
from lightkube import generic_resource
from lightkube.config import client_adapter
from lightkube.core import decoders
from lightkube.core import resource as lk_resource
from lightkube.models import authentication_v1 as authentication_v1_models
from lightkube.models import coordination_v1 as coordination_v1_models
from lightkube.models import core_v1 as core_v1_models
from lightkube.models import meta_v1
from lightkube.resources import coordination_v1, core_v1
from lightkube.types import PatchType

__all__ = [
    "ALL_NAMESPACES",
    "AlreadyExists",
    "ApiError",
    "Client",
    "Conflict",
    "EventRecorder",
    "Forbidden",
    "Gone",
    "GrantedToken",
    "KubeError",
    "Lease",
    "LeaseSpec",
    "ListResult",
    "NotFound",
    "ObjectMeta",
    "ObjectRef",
    "PatchType",
    "Resource",
    "TransportError",
    "WatchEvent",
    "WatchEventType",
    "apply",
    "create",
    "delete",
    "format_micro_time",
    "get",
    "global_custom_resource",
    "list_objects",
    "make_client",
    "namespaced_custom_resource",
    "patch",
    "ref_of",
    "replace",
    "request_token",
    "watch",
]

log = logging.getLogger(__name__)

Client: TypeAlias = lightkube.AsyncClient
"""The asynchronous API client; build one with :func:`make_client`."""

Resource: TypeAlias = lk_resource.Resource
"""Base class of every typed Kubernetes object (``lightkube.resources.*``)."""

ResourceT = TypeVar("ResourceT", bound=lk_resource.Resource)
T = TypeVar("T")

# Types the runtime needs, so that it imports no lightkube module itself.
ObjectMeta: TypeAlias = meta_v1.ObjectMeta
Lease: TypeAlias = coordination_v1.Lease
LeaseSpec: TypeAlias = coordination_v1_models.LeaseSpec

ALL_NAMESPACES: Final = lightkube.ALL_NS
"""Pass as ``namespace`` to list or watch a namespaced kind in every namespace."""

DEFAULT_FIELD_MANAGER: Final = "wmco"


# ---------------------------------------------------------------------------------------------
# Errors


class KubeError(Exception):
    """Any failure talking to the API server."""


class TransportError(KubeError):
    """The request did not get an answer (connection refused, reset, timeout, TLS...)."""


class ApiError(KubeError):
    """The API server answered with an error status.

    Attributes:
        code: HTTP status code (``0`` when the server sent none).
        reason: Machine-readable reason (``NotFound``, ``Conflict``, ``AlreadyExists``, ``Expired``...).
        message: Human-readable message from the server.
        causes: The messages of the status' ``details.causes`` (a refused eviction names the
            disruption budget there).
    """

    def __init__(self, code: int, reason: str, message: str, causes: tuple[str, ...] = ()) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.causes = causes


class NotFound(ApiError):
    """404: the object (or its namespace) does not exist."""


class Conflict(ApiError):
    """409 because of a stale resourceVersion (optimistic concurrency)."""


class AlreadyExists(Conflict):
    """409 on create: an object of that name exists."""


class Forbidden(ApiError):
    """403: RBAC does not allow the request."""


class Gone(ApiError):
    """410: the requested resourceVersion is too old (compacted); relist and start again."""


def _api_error(code: int, reason: str, message: str) -> ApiError:
    if code == 404:
        return NotFound(code, reason, message)
    if code == 409:
        return (AlreadyExists if reason == "AlreadyExists" else Conflict)(code, reason, message)
    if code == 403:
        return Forbidden(code, reason, message)
    if code == 410:
        return Gone(code, reason, message)
    return ApiError(code, reason, message)


def _from_status(status: meta_v1.Status) -> ApiError:
    error = _api_error(status.code or 0, status.reason or "", status.message or "")
    details = status.details.causes if status.details else None
    error.causes = tuple(cause.message for cause in details or [] if cause.message)
    return error


def translate(exc: BaseException) -> KubeError:
    """Translate a lightkube/httpx2 exception into this module's error types.

    Args:
        exc: The exception raised by the client library.

    Returns:
        The matching :class:`KubeError`; the caller raises it ``from exc``.
    """
    if isinstance(exc, lightkube.ApiError):
        return _from_status(exc.status)
    if isinstance(exc, httpx2.HTTPStatusError):
        response = exc.response
        return _api_error(response.status_code, response.reason_phrase, str(exc))
    return TransportError(f"{type(exc).__name__}: {exc}")


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (lightkube.ApiError, httpx2.HTTPError) as exc:
        raise translate(exc) from exc


# ---------------------------------------------------------------------------------------------
# Client


def make_client(
    kubeconfig: str | Path | None = None,
    *,
    context: str | None = None,
    in_cluster: bool = False,
    field_manager: str = DEFAULT_FIELD_MANAGER,
    namespace: str | None = None,
    timeout: float = 10.0,
) -> Client:
    """Build an asynchronous API client.

    Args:
        kubeconfig: Path of a kubeconfig file. ``None`` means: the in-cluster service account when
            running in a pod, else ``$KUBECONFIG``, else ``~/.kube/config``.
        context: Context of the kubeconfig to use (default: its current context).
        in_cluster: Use the pod's service account even if ``kubeconfig`` is given.
        field_manager: Field manager recorded for every write (server-side apply needs one).
        namespace: Default namespace for namespaced calls without an explicit one.
        timeout: Per-request timeout in seconds (watches have no read timeout).

    Returns:
        A client; close it with ``await client.close()``.

    Raises:
        KubeError: The configuration cannot be loaded.
    """
    try:
        if in_cluster:
            config = lightkube.KubeConfig.from_service_account()
        elif kubeconfig is not None:
            config = lightkube.KubeConfig.from_file(kubeconfig)
        else:
            config = lightkube.KubeConfig.from_env()
        single = config.get(context_name=context)
    except (lightkube.ConfigError, KeyError) as exc:
        raise KubeError(f"cannot load Kubernetes client configuration: {exc}") from exc
    if single is None:
        raise KubeError(f"kubeconfig {kubeconfig} has no usable context")
    return lightkube.AsyncClient(
        single,
        namespace=namespace,
        timeout=httpx2.Timeout(timeout),
        field_manager=field_manager,
    )


def namespaced_custom_resource(
    group: str, version: str, kind: str, plural: str
) -> type[lk_resource.NamespacedResource]:
    """A typed handle for a namespaced custom resource (e.g. ``machine.openshift.io`` Machines).

    Args:
        group: API group.
        version: API version.
        kind: Kind.
        plural: Plural resource name used in URLs.

    Returns:
        A resource class usable with every function of this module.
    """
    return cast(
        type[lk_resource.NamespacedResource],
        generic_resource.create_namespaced_resource(group, version, kind, plural),
    )


def global_custom_resource(
    group: str, version: str, kind: str, plural: str
) -> type[lk_resource.GlobalResource]:
    """A typed handle for a cluster-scoped custom resource (e.g. OpenShift's ``Network``).

    Objects read through it are dicts (``obj.get("spec")``). Reading a kind whose CRD is not
    installed answers 404 like a missing object: :func:`get` returns ``None`` for both.

    Args:
        group: API group.
        version: API version.
        kind: Kind.
        plural: Plural resource name used in URLs.

    Returns:
        A resource class usable with every function of this module.
    """
    return cast(
        type[lk_resource.GlobalResource],
        generic_resource.create_global_resource(group, version, kind, plural),
    )


def is_namespaced(resource: type[Resource]) -> bool:
    """Whether objects of ``resource`` live in namespaces."""
    return issubclass(resource, lk_resource.NamespacedResource)


def kind_of(resource: type[Resource]) -> tuple[str, str]:
    """The ``(apiVersion, kind)`` of a resource class."""
    info = lk_resource.api_info(resource).resource
    return info.api_version, info.kind


def _list_namespace(resource: type[Resource], namespace: str | None) -> str | None:
    if not is_namespaced(resource):
        return None
    return ALL_NAMESPACES if namespace is None else namespace


# ---------------------------------------------------------------------------------------------
# Verbs


@dataclasses.dataclass(frozen=True, slots=True)
class ListResult(Generic[T]):
    """The answer to a list: the items and the resourceVersion to watch from."""

    items: list[T]
    resource_version: str


async def list_objects(
    client: Client,
    resource: type[ResourceT],
    *,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    fields: Mapping[str, str] | None = None,
) -> ListResult[ResourceT]:
    """List objects of one kind.

    Args:
        client: API client.
        resource: Resource class (e.g. ``lightkube.resources.core_v1.ConfigMap``).
        namespace: Namespace; ``None`` lists every namespace (ignored for cluster-scoped kinds).
        labels: Equality label selector.
        fields: Equality field selector.

    Returns:
        The items and the list's resourceVersion.
    """
    any_client = cast(Any, client)
    with _errors():
        iterable = any_client.list(
            resource,
            namespace=_list_namespace(resource, namespace),
            labels=dict(labels) if labels else None,
            fields=dict(fields) if fields else None,
        )
        items: list[ResourceT] = [item async for item in iterable]
        resource_version = str(iterable.resourceVersion)
    return ListResult(items, resource_version)


async def get(
    client: Client, resource: type[ResourceT], name: str, *, namespace: str | None = None
) -> ResourceT | None:
    """Read one object; ``None`` when it does not exist."""
    try:
        with _errors():
            return cast(ResourceT, await cast(Any, client).get(resource, name, namespace=namespace))
    except NotFound:
        return None


async def create(client: Client, obj: ResourceT) -> ResourceT:
    """Create an object (its namespace from ``obj.metadata.namespace``).

    Raises:
        AlreadyExists: An object of that name exists.
    """
    with _errors():
        return cast(ResourceT, await cast(Any, client).create(obj))


async def replace(client: Client, obj: ResourceT) -> ResourceT:
    """Replace an object; ``obj.metadata.resourceVersion`` makes it conditional.

    Raises:
        Conflict: The object changed since ``obj`` was read.
        NotFound: The object does not exist.
    """
    with _errors():
        return cast(ResourceT, await cast(Any, client).replace(obj))


async def patch(
    client: Client,
    resource: type[ResourceT],
    name: str,
    body: Mapping[str, Any] | list[Any],
    *,
    namespace: str | None = None,
    patch_type: PatchType = PatchType.MERGE,
) -> ResourceT | None:
    """Patch an object (merge patch by default); ``None`` when it does not exist.

    A ``metadata.resourceVersion`` in a merge patch makes it conditional (409 on mismatch).
    """
    try:
        with _errors():
            return cast(
                ResourceT,
                await cast(Any, client).patch(
                    resource,
                    name,
                    body if isinstance(body, list) else dict(body),
                    namespace=namespace,
                    patch_type=patch_type,
                ),
            )
    except NotFound:
        return None


async def apply(client: Client, obj: ResourceT, *, force: bool = True) -> ResourceT:
    """Server-side apply ``obj`` with the client's field manager."""
    with _errors():
        return cast(ResourceT, await cast(Any, client).apply(obj, force=force))


async def delete(
    client: Client, resource: type[Resource], name: str, *, namespace: str | None = None
) -> bool:
    """Delete an object.

    Returns:
        ``True`` if a delete was issued, ``False`` if the object did not exist.
    """
    try:
        with _errors():
            await cast(Any, client).delete(resource, name, namespace=namespace)
    except NotFound:
        return False
    return True


async def evict(client: Client, name: str, *, namespace: str) -> None:
    """Evict a pod through the Eviction API (honours PodDisruptionBudgets).

    Raises:
        ApiError: 429 when a disruption budget forbids it now, 404 when the pod is gone.
    """
    eviction = core_v1.PodEviction(
        metadata=meta_v1.ObjectMeta(name=name, namespace=namespace),
    )
    with _errors():
        await cast(Any, client).create(eviction, name=name, namespace=namespace)


@dataclasses.dataclass(frozen=True, slots=True)
class GrantedToken:
    """A ServiceAccount token from the TokenRequest API; :meth:`__repr__` hides the token.

    Attributes:
        token: The bearer token (a JWT): secret, never logged.
        expiration: When the API server says it expires.
    """

    token: str = dataclasses.field(repr=False)
    expiration: datetime.datetime | None


async def request_token(
    client: Client, service_account: str, *, namespace: str, expiration_seconds: int
) -> GrantedToken:
    """Ask the TokenRequest API for a token of ``namespace/service_account``.

    The token is bound to the ServiceAccount object: deleting the account revokes it.

    Raises:
        NotFound: The ServiceAccount does not exist.
        ApiError: Any other refusal (a too short ``expiration_seconds`` is a 400).
    """
    request = core_v1.ServiceAccountToken(
        metadata=meta_v1.ObjectMeta(name=service_account, namespace=namespace),
        spec=authentication_v1_models.TokenRequestSpec(expirationSeconds=expiration_seconds),
    )
    with _errors():
        granted = await cast(Any, client).create(request, name=service_account, namespace=namespace)
    status = granted.status
    if status is None or not status.token:
        raise ApiError(
            0, "NoToken", f"the TokenRequest for {namespace}/{service_account} got no token"
        )
    return GrantedToken(token=status.token, expiration=parse_time(status.expirationTimestamp))


# ---------------------------------------------------------------------------------------------
# Watch


class WatchEventType(enum.StrEnum):
    """Types of watch events the API server sends (``ERROR`` becomes an exception)."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent(Generic[T]):
    """One event of a watch stream.

    Attributes:
        type: What happened.
        object: The object after the change (the last state for DELETED); ``None`` for
            BOOKMARK, which carries only a resourceVersion.
        resource_version: The resourceVersion to resume from after this event.
    """

    type: WatchEventType
    object: T
    resource_version: str


async def watch(
    client: Client,
    resource: type[ResourceT],
    *,
    resource_version: str,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    fields: Mapping[str, str] | None = None,
    timeout_seconds: int = 300,
    bookmarks: bool = True,
) -> AsyncGenerator[WatchEvent[ResourceT], None]:
    """Open ONE watch stream from ``resource_version`` and yield its events.

    The generator returns when the server closes the stream (after ``timeout_seconds``); the
    caller resumes from the last event's ``resource_version``. A caller that stops early must
    close it (``async with contextlib.aclosing(stream)``) so the connection is released now,
    not whenever the garbage collector finalises the generator.

    Args:
        client: API client.
        resource: Resource class.
        resource_version: Where to start (from :func:`list_objects` or the last event).
        namespace: Namespace; ``None`` watches every namespace.
        labels: Equality label selector.
        fields: Equality field selector.
        timeout_seconds: Server-side duration of the stream.
        bookmarks: Ask for BOOKMARK events (they advance the resourceVersion without changes).

    Yields:
        Events in the server's order.

    Raises:
        Gone: ``resource_version`` is too old (compacted or out of the watch cache): relist.
        ApiError: Any other error status or ERROR event.
        TransportError: The connection failed or broke.
    """
    # lightkube internals: see the module docstring for why.
    generic = cast(Any, client)._client
    params: dict[str, str | None] = {
        "resourceVersion": resource_version,
        "timeoutSeconds": str(timeout_seconds),
        "allowWatchBookmarks": "true" if bookmarks else None,
        "labelSelector": ",".join(f"{k}={v}" for k, v in labels.items()) if labels else None,
        "fieldSelector": ",".join(f"{k}={v}" for k, v in fields.items()) if fields else None,
    }
    request = generic.prepare_request(
        "list",
        res=resource,
        namespace=_list_namespace(resource, namespace),
        watch=True,
        params=params,
    )
    http = cast(httpx2.AsyncClient, generic._client)
    # The server ends the stream after timeout_seconds; a read waiting much longer than that
    # means a half-open connection, which would otherwise hang the informer forever.
    read_timeout = httpx2.Timeout(http.timeout.connect, read=timeout_seconds + 30.0)
    http_request = http.build_request(
        request.method, request.url, params=request.params, timeout=read_timeout
    )
    # Shielded: cancelling httpcore2 during the TLS handshake leaks the socket (the handshake
    # is not wrapped in a close-on-error), and informers cancel streams routinely. A cancelled
    # caller returns at once; the request finishes in the background and is closed.
    sending = asyncio.ensure_future(http.send(http_request, stream=True))
    try:
        response = await asyncio.shield(sending)
    except asyncio.CancelledError:
        sending.add_done_callback(_discard_response)
        raise
    except httpx2.HTTPError as exc:
        raise translate(exc) from exc
    try:
        if response.status_code >= 400:
            await response.aread()
            raise _status_error(response)
        last_version = resource_version
        async for line in response.aiter_lines():
            if not line:
                continue
            event = decoders.decode_watch_event(line.encode())
            if event.type == "ERROR":
                raise _from_status(decoders.decode_status(event.object))
            if event.type == WatchEventType.BOOKMARK:
                # A bookmark carries only metadata.resourceVersion: decoding it as the resource
                # would fail on the resource's required fields (a CSR's spec.request, ...).
                last_version = _raw_resource_version(event.object) or last_version
                yield WatchEvent(WatchEventType.BOOKMARK, cast(ResourceT, None), last_version)
                continue
            try:
                obj = decoders.decode_object(event.object, resource)
            except msgspec.ValidationError as exc:
                # One object the models cannot read must not stop the stream for all others.
                last_version = _raw_resource_version(event.object) or last_version
                log.warning(
                    "watch %s: skipped an undecodable %s event: %s",
                    resource.__name__,
                    event.type,
                    exc,
                )
                continue
            last_version = obj.metadata.resourceVersion or last_version
            yield WatchEvent(WatchEventType(event.type), cast(ResourceT, obj), last_version)
    except httpx2.HTTPError as exc:
        raise translate(exc) from exc
    finally:
        await response.aclose()


def _raw_resource_version(raw: bytes | msgspec.Raw) -> str | None:
    try:
        decoded = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    metadata = decoded.get("metadata") if isinstance(decoded, dict) else None
    version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
    return str(version) if version else None


_closing: set[asyncio.Task[None]] = set()


def _discard_response(sending: asyncio.Future[httpx2.Response]) -> None:
    if sending.cancelled() or sending.exception() is not None:
        return
    task = asyncio.ensure_future(sending.result().aclose())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def _status_error(response: httpx2.Response) -> ApiError:
    try:
        status = decoders.decode_status(response.content)
    except Exception:
        return _api_error(response.status_code, response.reason_phrase, response.text[:200])
    if not status.code:
        status.code = response.status_code
    return _from_status(status)


# ---------------------------------------------------------------------------------------------
# Events


def format_micro_time(moment: datetime.datetime) -> str:
    """Format a timestamp as Kubernetes ``MicroTime`` (always six fractional digits, UTC).

    The API server rejects MicroTime without exactly six fractional digits, which the default
    encoder omits when the microseconds are zero; write MicroTime fields with this.
    """
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: datetime.datetime | str | None) -> datetime.datetime | None:
    """Read a Time/MicroTime field that the decoder may have left as a string."""
    if value is None or isinstance(value, datetime.datetime):
        return value
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectRef:
    """Enough of an object to point an Event at it."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None


def ref_of(obj: Resource) -> ObjectRef:
    """The :class:`ObjectRef` of a typed object read from the API server."""
    api_version, kind = kind_of(type(obj))
    metadata = cast(meta_v1.ObjectMeta, cast(Any, obj).metadata)
    return ObjectRef(
        api_version=api_version,
        kind=kind,
        name=metadata.name or "",
        namespace=metadata.namespace,
        uid=metadata.uid,
    )


@dataclasses.dataclass(slots=True)
class _Emitted:
    name: str
    namespace: str
    count: int


class EventRecorder:
    """Writes core/v1 Events about objects, folding repeats into ``count``.

    The same ``(object, type, reason, message)`` seen again patches the existing Event's
    ``count`` and ``lastTimestamp`` instead of creating a new one (what client-go's recorder
    does); the cache is in memory and bounded.
    """

    def __init__(
        self,
        client: Client,
        *,
        component: str = "wmco",
        instance: str = "",
        cache_size: int = 4096,
    ) -> None:
        self._client = client
        self._component = component
        self._instance = instance
        self._cache: dict[tuple[ObjectRef, str, str, str], _Emitted] = {}
        self._cache_size = cache_size

    async def emit_event(
        self, ref: ObjectRef, type: str, reason: str, message: str
    ) -> core_v1.Event | None:
        """Record an Event; never raises (events are best effort).

        Args:
            ref: The object the event is about.
            type: ``Normal`` or ``Warning``.
            reason: Short CamelCase reason.
            message: Human-readable message.

        Returns:
            The Event as stored, or ``None`` if it could not be written.
        """
        key = (ref, type, reason, message)
        now = datetime.datetime.now(datetime.UTC)
        try:
            seen = self._cache.get(key)
            if seen is not None:
                updated = await patch(
                    self._client,
                    core_v1.Event,
                    seen.name,
                    {"count": seen.count + 1, "lastTimestamp": _format_time(now)},
                    namespace=seen.namespace,
                )
                if updated is not None:
                    seen.count = updated.count or seen.count + 1
                    return updated
                del self._cache[key]
            event = await create(self._client, self._new_event(ref, type, reason, message, now))
        except KubeError as exc:
            log.warning("cannot record event %s on %s %s: %s", reason, ref.kind, ref.name, exc)
            return None
        if len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = _Emitted(
            event.metadata.name or "", event.metadata.namespace or "", event.count or 1
        )
        return event

    def _new_event(
        self, ref: ObjectRef, type: str, reason: str, message: str, now: datetime.datetime
    ) -> core_v1.Event:
        namespace = ref.namespace or "default"
        return core_v1.Event(
            metadata=meta_v1.ObjectMeta(
                name=f"{ref.name}.{uuid.uuid4().hex[:16]}", namespace=namespace
            ),
            involvedObject=core_v1_models.ObjectReference(
                apiVersion=ref.api_version,
                kind=ref.kind,
                name=ref.name,
                namespace=ref.namespace,
                uid=ref.uid,
            ),
            type=type,
            reason=reason,
            message=message,
            count=1,
            firstTimestamp=now.replace(microsecond=0),
            lastTimestamp=now.replace(microsecond=0),
            source=core_v1_models.EventSource(component=self._component),
            reportingComponent=self._component,
            reportingInstance=self._instance,
        )


def _format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True, slots=True)
class ServerClock:
    """The API server's clock as one request saw it (``wmco preflight``'s time-skew check).

    Attributes:
        date: The ``Date`` header of the answer (whole seconds, RFC 9110).
        sent: Local Unix time just before the request.
        received: Local Unix time just after the answer.
    """

    date: datetime.datetime
    sent: float
    received: float


async def server_clock(
    kubeconfig: str | Path | None = None, *, context: str | None = None, timeout: float = 10.0
) -> ServerClock:
    """Read the API server's clock from the ``Date`` header of ``GET /version``.

    Raises:
        KubeError: No configuration, no answer, or an answer without a ``Date`` header.
    """
    single = _single_config(kubeconfig, context)
    params = client_adapter.ConnectionParams(timeout=httpx2.Timeout(timeout))
    async with client_adapter.AsyncClient(single, params) as http:
        sent = time.time()
        try:
            response = await http.get("/version")
        except httpx2.HTTPError as exc:
            raise KubeError(f"cannot reach the API server: {type(exc).__name__}") from exc
        received = time.time()
    header = response.headers.get("date")
    if not header:
        raise KubeError("the API server's answer has no Date header")
    return ServerClock(email.utils.parsedate_to_datetime(header), sent, received)


def _single_config(kubeconfig: str | Path | None, context: str | None) -> Any:
    try:
        config = (
            lightkube.KubeConfig.from_file(kubeconfig)
            if kubeconfig is not None
            else lightkube.KubeConfig.from_env()
        )
        single = config.get(context_name=context)
    except (lightkube.ConfigError, KeyError) as exc:
        raise KubeError(f"cannot load Kubernetes client configuration: {exc}") from exc
    if single is None:
        raise KubeError(f"kubeconfig {kubeconfig} has no usable context")
    return single


def server_url(kubeconfig: str | Path | None = None, *, context: str | None = None) -> str:
    """The API server URL of a kubeconfig's context.

    Raises:
        KubeError: The configuration cannot be loaded.
    """
    return str(_single_config(kubeconfig, context).cluster.server)
