r"""The kubelet's own HTTPS API on ``<host>:<port>`` (10250): ``/containerLogs`` for the API server.

What ``kubectl logs`` reaches through the API server (``pkg/kubelet/server/server.go``):

* **Listening.** Only while the host firewall lets inbound TCP reach the port (the simulation
  binds and unbinds as rules change; a real kubelet always listens and the firewall drops the
  packets). A port already taken is the kubelet's fatal ``"Failed to listen and serve"
  err="listen tcp 0.0.0.0:10250: bind: Only one usage of each socket address ..."``: exit 1.
* **TLS.** The serving certificate is ``<cert-dir>\kubelet-server-current.pem`` from the serving
  CSR with ``serverTLSBootstrap`` (handshakes fail until it is issued), else ``tlsCertFile`` /
  ``tlsPrivateKeyFile``, else a self-signed ``<cert-dir>\kubelet.crt``. Client certificates are
  requested, never required (:mod:`~wmco_sandbox.winhost.kubelet.tlsconn`).
* **Authentication.** The client chain against the *current* ``clientCAFile``
  (:mod:`~wmco_sandbox.winhost.kubelet.authn`); none or untrusted: 401 ``Unauthorized``.
* **Authorization.** ``Webhook`` (the default): a SubjectAccessReview, created as the node, for
  verb ``get`` (``create`` for POST...) on ``nodes/<subresource>`` named after the node; the
  subresource is ``proxy`` for ``/containerLogs``. Denied: 403 ``Forbidden (user=<u>,
  verb=get, resource=nodes, subresource(s)=[proxy])``. ``AlwaysAllow`` skips it. Decisions are
  not cached (a real kubelet caches them for 5 min / 30 s).
* ``GET /containerLogs/<ns>/<pod>/<container>`` answers the container's log from the CRI
  (``tailLines`` and ``limitBytes`` apply); every other path is ``404 page not found``.

HTTP is minimal HTTP/1.1: one request per connection, ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import urllib.parse
from typing import Any, cast

import httpx2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lightkube import ApiError, AsyncClient
from lightkube.resources.authorization_v1 import SubjectAccessReview

from wmco_sandbox.winhost.kubelet import authn as kubelet_authn
from wmco_sandbox.winhost.kubelet import certmanager as kubelet_certmanager
from wmco_sandbox.winhost.kubelet import context as kubelet_context
from wmco_sandbox.winhost.kubelet import options as kubelet_options
from wmco_sandbox.winhost.kubelet import pki as kubelet_pki
from wmco_sandbox.winhost.kubelet import tlsconn as kubelet_tlsconn

__all__ = ["KubeletServer", "subresource_of"]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}
_REASONS.update({404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"})
_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}
_VERBS["DELETE"] = "delete"
_BIND_IN_USE = (
    "bind: Only one usage of each socket address (protocol/network address/port) is normally "
    "permitted."
)
_SOURCE = "server.go"


def subresource_of(path: str) -> str:
    """The ``nodes`` subresource a kubelet API path is authorized as (``auth.go``)."""
    for prefix, subresource in (
        ("/stats", "stats"),
        ("/metrics", "metrics"),
        ("/logs", "log"),
        ("/spec", "spec"),
    ):
        if path == prefix or path.startswith(prefix + "/"):
            return subresource
    return "proxy"


def _response(code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class KubeletServer:
    """Serves the kubelet API while the firewall allows its port."""

    def __init__(self, kubelet: kubelet_context.Kubelet) -> None:
        self._k = kubelet
        self._server: asyncio.Server | None = None
        self._client: AsyncClient | None = None
        self._self_signed: tuple[list[x509.Certificate], kubelet_tlsconn.ServingKey] | None = None

    @property
    def listening(self) -> bool:
        """Whether the port is bound now."""
        return self._server is not None

    async def run(self, client: AsyncClient) -> None:
        """Bind and unbind with the firewall until cancelled (a taken port ends the kubelet).

        Args:
            client: A client with the node's identity (for SubjectAccessReviews).

        Raises:
            KubeletExit: The port cannot be bound.
        """
        self._client = client
        port = self._k.opts.port
        try:
            while True:
                allowed = self._k.env.firewall_allows(port)
                if allowed and self._server is None:
                    await self._listen(port)
                elif not allowed and self._server is not None:
                    await self._close()
                await asyncio.sleep(self._k.timings.runtime_check_interval)
        finally:
            await self._close()

    async def _listen(self, port: int) -> None:
        address = str(self._k.opts.config.get("address") or "0.0.0.0")
        try:
            self._server = await asyncio.start_server(
                self._handle, host=self._k.env.facts.address, port=port, reuse_address=True
            )
        except OSError:
            error = f"listen tcp {address}:{port}: {_BIND_IN_USE}"
            self._k.log.error(_SOURCE, f'"Failed to listen and serve" err="{error}"')
            raise kubelet_context.KubeletExit(1, f"Failed to listen and serve: {error}") from None
        self._k.log.info(_SOURCE, f'"Starting to listen" address="{address}" port={port}')

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    # ------------------------------------------------------------------------------ TLS

    def _read(self, path: str | None) -> bytes | None:
        return self._k.env.read_file(path) if path else None

    def _serving(self) -> tuple[list[x509.Certificate], kubelet_tlsconn.ServingKey] | None:
        opts = self._k.opts
        if opts.server_tls_bootstrap:
            name = f"{kubelet_certmanager.SERVER_PREFIX}-current.pem"
            bundle = kubelet_pki.split_bundle(
                self._read(kubelet_options.win_join(opts.cert_dir, name)) or b""
            )
            if bundle is None:
                return None  # "no serving certificate available for the kubelet"
            cert_pem, key_pem = bundle.cert_pem, bundle.key_pem
        else:
            cert_pem = self._read(opts.config.get("tlsCertFile")) or b""
            key_pem = self._read(opts.config.get("tlsPrivateKeyFile")) or b""
            if not (cert_pem and key_pem):
                return self._self_signed_pair()
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
        return x509.load_pem_x509_certificates(cert_pem), key

    def _self_signed_pair(self) -> tuple[list[x509.Certificate], kubelet_tlsconn.ServingKey]:
        if self._self_signed is None:
            facts, now = self._k.env.facts, kubelet_context.utcnow()
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name(
                [
                    x509.NameAttribute(
                        NameOID.COMMON_NAME, f"{facts.hostname}@{int(now.timestamp())}"
                    )
                ]
            )
            san = x509.SubjectAlternativeName([x509.DNSName(facts.hostname.lower())])
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=1))
                .not_valid_after(now + dt.timedelta(days=365))
                .add_extension(san, critical=False)
                .sign(key, hashes.SHA256())
            )
            cert_dir = self._k.opts.cert_dir
            self._k.env.write_file(
                kubelet_options.win_join(cert_dir, "kubelet.crt"),
                cert.public_bytes(serialization.Encoding.PEM),
            )
            self._k.env.write_file(
                kubelet_options.win_join(cert_dir, "kubelet.key"), kubelet_pki.key_pem(key)
            )
            self._self_signed = ([cert], key)
        return self._self_signed

    def _client_ca(self) -> bytes | None:
        authentication = self._k.opts.config.get("authentication") or {}
        path = (authentication.get("x509") or {}).get("clientCAFile")
        return self._read(path) if path else None

    # ----------------------------------------------------------------------------- requests

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ca_bundle = self._client_ca()
        try:
            client_cas = x509.load_pem_x509_certificates(ca_bundle) if ca_bundle else []
        except ValueError:
            client_cas = []
        serving = self._serving()
        chain, key = serving if serving is not None else (None, None)
        context = kubelet_tlsconn.server_context(chain, key, client_cas)
        stream = kubelet_tlsconn.TlsStream(context, reader, writer)
        try:
            await stream.handshake()
            raw = await stream.read_until(b"\r\n\r\n")
            await stream.write(await self._answer(raw, stream.peer_chain(), ca_bundle))
        except (kubelet_tlsconn.TlsError, ConnectionError, OSError) as err:
            self._k.log.info(_SOURCE, f'"http: TLS handshake error" err="{err}"', v=2)
        finally:
            await stream.close()

    async def _answer(
        self, raw: bytes, chain: list[x509.Certificate], ca_bundle: bytes | None
    ) -> bytes:
        try:
            request_line = raw.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _version = request_line.split(" ", 2)
        except ValueError:
            return _response(400, b"400 Bad Request")
        url = urllib.parse.urlsplit(target)
        try:
            user = kubelet_authn.authenticate(chain, ca_bundle, kubelet_context.utcnow())
        except kubelet_authn.AuthError as err:
            self._k.log.error(
                "authentication.go",
                f'"Unable to authenticate the request due to an error" err="{err}"',
            )
            user = None
        if user is None:
            return _response(401, b"Unauthorized")
        verb = _VERBS.get(method, "get")
        subresource = subresource_of(url.path)
        allowed, reason = await self._authorize(user, verb, subresource)
        if not allowed:
            message = (
                f"Forbidden (user={user.name}, verb={verb}, resource=nodes, "
                f"subresource(s)=[{subresource}])"
            )
            self._k.log.info(
                _SOURCE,
                f'"Forbidden" user="{user.name}" verb="{verb}" subresource="{subresource}" '
                f'reason="{reason}"',
                v=2,
            )
            return _response(403, message.encode())
        parts = url.path.split("/")
        if len(parts) == 5 and parts[1] == "containerLogs" and method in ("GET", "HEAD"):
            return self._container_logs(parts[2], parts[3], parts[4], url.query)
        return _response(404, b"404 page not found\n")

    async def _authorize(
        self, user: kubelet_authn.User, verb: str, subresource: str
    ) -> tuple[bool, str]:
        authorization = self._k.opts.config.get("authorization") or {}
        if authorization.get("mode") == "AlwaysAllow":
            return True, ""
        assert self._client is not None
        review = cast(
            SubjectAccessReview,
            SubjectAccessReview.from_dict(
                {
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SubjectAccessReview",
                    "spec": {
                        "user": user.name,
                        "groups": list(user.groups),
                        "resourceAttributes": {
                            "verb": verb,
                            "resource": "nodes",
                            "subresource": subresource,
                            "name": self._k.opts.node_name,
                            "version": "v1",
                        },
                    },
                }
            ),
        )
        try:
            answer = await self._client.create(review)
        except (ApiError, httpx2.HTTPError) as err:
            return False, kubelet_context.describe(err)
        status = answer.status
        return bool(status and status.allowed), (status.reason or "") if status else ""

    def _container_logs(self, namespace: str, pod_name: str, container: str, query: str) -> bytes:
        pod: dict[str, Any] | None = self._k.state.pods.get((namespace, pod_name))
        if pod is None:
            return _response(404, f'pod "{pod_name}" does not exist\n'.encode())
        spec = pod.get("spec") or {}
        names = [
            c.get("name")
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        ]
        if container not in names:
            return _response(
                404, f'container "{container}" not found in pod "{pod_name}"\n'.encode()
            )
        cri = self._k.env.cri()
        if cri is None:
            return _response(500, b"container runtime is down\n")
        text = cri.container_log(str(pod["metadata"].get("uid")), container)
        if text is None:
            return _response(
                400,
                f'container "{container}" in pod "{pod_name}" is waiting to start: '
                "ContainerCreating\n".encode(),
            )
        params = urllib.parse.parse_qs(query)
        with contextlib.suppress(ValueError, IndexError, KeyError):
            tail = int(params["tailLines"][0])
            text = "".join(text.splitlines(keepends=True)[-tail:] if tail > 0 else [])
        body = text.encode()
        with contextlib.suppress(ValueError, IndexError, KeyError):
            body = body[: int(params["limitBytes"][0])]
        return _response(200, body)
