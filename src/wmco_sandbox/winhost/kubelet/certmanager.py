r"""The kubelet's two certificate managers: client (TLS bootstrap, rotation) and serving.

Client certificate (``kubernetes.io/kube-apiserver-client-kubelet``):

* :meth:`ClientCertificateManager.bootstrap` obtains the first certificate with the bootstrap
  token: fresh ECDSA key per attempt, CSR, wait for approval and signature, retry with backoff.
  With no certificate after ``client_cert_timeout`` (5 minutes in a real kubelet) while the API
  server answers, the kubelet exits (:class:`~kubelet_context.KubeletExit`); a rejected token
  (401) ends that way too, after the same delay, as on a real host.
* :meth:`ClientCertificateManager.run` then sleeps until the rotation deadline (uniformly in
  70-90 % of the certificate's lifetime, with ``rotateCertificates``), renews with the node's own
  identity and raises :class:`~kubelet_context.Rotated`, so that the process restarts its loops
  with the new certificate (a real kubelet closes all connections on rotation). If the
  certificate expires first, the kubelet exits.

Serving certificate (``kubernetes.io/kubelet-serving``, ``serverTLSBootstrap: true``): requested
as the node, with the Node's addresses as SANs, stored when issued; Ready never waits for it. A
CSR still pending when the client identity rotates is resumed, not duplicated.

Certificates are stored as ``<cert-dir>\kubelet-<client|server>-<ts>.pem`` plus the
``-current.pem`` copy (the virtual disk has no symbolic links).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random

import httpx2
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from lightkube import ApiError, AsyncClient

from wmco_sandbox.winhost.kubelet import context as kubelet_context
from wmco_sandbox.winhost.kubelet import csr as kubelet_csr
from wmco_sandbox.winhost.kubelet import node as kubelet_node
from wmco_sandbox.winhost.kubelet import options as kubelet_options
from wmco_sandbox.winhost.kubelet import pki as kubelet_pki

__all__ = [
    "CLIENT_PREFIX",
    "SERVER_PREFIX",
    "ClientCertificateManager",
    "ServingCertificateManager",
    "server_responsive",
    "store_certificate",
]

CLIENT_PREFIX = "kubelet-client"
SERVER_PREFIX = "kubelet-server"
_CLIENT_LOGGER = 'logger="kubernetes.io/kube-apiserver-client-kubelet"'
_SERVING_LOGGER = 'logger="kubernetes.io/kubelet-serving"'
_REQUEST_FAILED = '"Failed while requesting a signed certificate from the control plane"'


async def server_responsive(raw: httpx2.AsyncClient) -> bool:
    """Whether the API server answers at all (any HTTP status counts)."""
    try:
        await raw.get("/healthz")
    except httpx2.HTTPError:
        return False
    return True


def store_certificate(
    kubelet: kubelet_context.Kubelet, prefix: str, cert_pem: bytes, key: ec.EllipticCurvePrivateKey
) -> kubelet_pki.CertBundle:
    """Write the timestamped PEM and its ``-current`` copy to the cert dir; return the bundle."""
    data = kubelet_pki.bundle_pem(cert_pem, key)
    cert_dir = kubelet.opts.cert_dir
    stamped = kubelet_pki.timestamped_name(prefix, kubelet_context.utcnow())
    kubelet.env.write_file(kubelet_options.win_join(cert_dir, stamped), data)
    kubelet.env.write_file(kubelet_options.win_join(cert_dir, f"{prefix}-current.pem"), data)
    kubelet.log.info(
        "certificate_manager.go",
        f'"Certificate rotation detected, shutting down client connections to start using new '
        f'credentials" logger="{prefix}"',
        v=2,
    )
    bundle = kubelet_pki.split_bundle(data)
    assert bundle is not None
    return bundle


class ClientCertificateManager:
    """Bootstraps, rotates and watches the expiry of the kubelet's client certificate."""

    def __init__(self, kubelet: kubelet_context.Kubelet) -> None:
        self._k = kubelet
        self.csr_name: str | None = None
        self._deadline: tuple[int, float] | None = None  # (cert serial, loop time)

    def _created(self, name: str, uid: str) -> None:
        self.csr_name = name
        self._k.log.info(
            "csr.go", f'"Waiting for client certificate to be issued" csr="{name}"', v=2
        )

    async def _request(self, client: AsyncClient) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
        key = kubelet_pki.new_key()
        cert = await kubelet_csr.request_certificate(
            client,
            kubelet_pki.client_csr(key, self._k.opts.node_name),
            signer=kubelet_pki.CLIENT_SIGNER,
            usages=kubelet_pki.CLIENT_USAGES,
            on_created=self._created,
        )
        return cert, key

    async def _until_issued(self, client: AsyncClient, errors: list[str]) -> kubelet_pki.CertBundle:
        attempt = 0
        while True:
            try:
                cert, key = await self._request(client)
            except (ApiError, httpx2.HTTPError, kubelet_csr.CertificateRequestError) as err:
                errors.append(kubelet_context.describe(err))
                self._k.log.error(
                    "certificate_manager.go",
                    f'{_REQUEST_FAILED} err="cannot create certificate signing request: '
                    f'{errors[-1]}" {_CLIENT_LOGGER}',
                )
                await asyncio.sleep(
                    kubelet_context.cert_backoff(self._k.timings.backoff_base, attempt)
                )
                attempt += 1
                continue
            return store_certificate(self._k, CLIENT_PREFIX, cert, key)

    async def bootstrap(
        self, client: AsyncClient, raw: httpx2.AsyncClient
    ) -> kubelet_pki.CertBundle:
        """Obtain the first client certificate with the bootstrap credentials.

        Args:
            client: A client authenticated with the bootstrap token.
            raw: A plain HTTP client to the same server (to tell whether it answers).

        Returns:
            The stored certificate and key.

        Raises:
            KubeletExit: No certificate within ``client_cert_timeout`` while the server answers.
        """
        loop = asyncio.get_running_loop()
        if self._k.timings.bootstrap_delay:
            await asyncio.sleep(self._k.timings.bootstrap_delay)
        timeout = self._k.timings.client_cert_timeout
        deadline = loop.time() + timeout
        errors: list[str] = []
        while True:
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.0)):
                    return await self._until_issued(client, errors)
            except TimeoutError:
                if await server_responsive(raw):
                    last = errors[-1] if errors else "certificate signing request still pending"
                    raise kubelet_context.KubeletExit(
                        1,
                        f"It has been {kubelet_context.go_duration(timeout)} since a valid client "
                        f"cert was found and the server is responsive, exiting. (last error: {last})",
                    ) from None
                deadline = loop.time() + min(timeout, 10.0)

    async def run(
        self, bundle: kubelet_pki.CertBundle, client: AsyncClient, raw: httpx2.AsyncClient
    ) -> None:
        """Rotate the current certificate in time, or exit when it expires.

        Args:
            bundle: The certificate in use.
            client: A client with the node's identity.
            raw: A plain HTTP client to the same server.

        Raises:
            Rotated: A new certificate was stored.
            KubeletExit: The certificate expired while the server answers.
        """
        cert = x509.load_pem_x509_certificates(bundle.cert_pem)[0]
        loop = asyncio.get_running_loop()
        now = kubelet_context.utcnow()
        if self._k.opts.rotate_certificates:
            if self._deadline is None or self._deadline[0] != cert.serial_number:
                delay = self._k.timings.client_rotation_after
                if delay is None:
                    total = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds()
                    elapsed = (now - cert.not_valid_before_utc).total_seconds()
                    delay = total * random.uniform(0.7, 0.9) - elapsed
                self._deadline = (cert.serial_number, loop.time() + delay)
                self._k.log.info(
                    "certificate_manager.go",
                    f'"Waiting for next certificate rotation" '
                    f'sleep="{kubelet_context.go_duration(max(delay, 0.0))}" {_CLIENT_LOGGER}',
                    v=2,
                )
            await asyncio.sleep(max(0.0, self._deadline[1] - loop.time()))
            remaining = (cert.not_valid_after_utc - kubelet_context.utcnow()).total_seconds()
            try:
                async with asyncio.timeout(max(remaining, 0.0)):
                    new = await self._until_issued(client, [])
            except TimeoutError:
                pass
            else:
                raise kubelet_context.Rotated(new)
        else:
            await asyncio.sleep(max((cert.not_valid_after_utc - now).total_seconds(), 0.0))
        while True:  # the kubelet only gives up while the API server answers
            if await server_responsive(raw):
                break
            await asyncio.sleep(10.0)
        raise kubelet_context.KubeletExit(
            1,
            "The currently active client certificate has expired and the server is responsive, "
            "exiting.",
        )


class ServingCertificateManager:
    """Requests the kubelet's serving certificate once the node's addresses are known."""

    def __init__(self, kubelet: kubelet_context.Kubelet) -> None:
        self._k = kubelet
        self.csr_name: str | None = None
        self.ready = asyncio.Event()
        self._pending: tuple[str, str, ec.EllipticCurvePrivateKey] | None = None

    def _template(self, host: kubelet_node.HostView) -> tuple[list[str], list[str]]:
        opts = self._k.opts
        addresses = kubelet_node.node_addresses(opts.node_name, opts.node_ip, host)
        dns, ips = [], []
        for address in addresses:
            value, kind = address["address"], address["type"]
            if kind in ("InternalIP", "ExternalIP") or (kind == "Hostname" and _is_ip(value)):
                ips.append(value)
            elif kind in ("Hostname", "InternalDNS", "ExternalDNS"):
                dns.append(value)
        return dns, ips

    async def run(self, client: AsyncClient, host: kubelet_node.HostView) -> None:
        """Ensure a serving certificate covering the node's addresses (returns once stored).

        Args:
            client: A client with the node's identity.
            host: The host (for the addresses).
        """
        opts = self._k.opts
        dns, ips = self._template(host)
        if not ips:
            self._k.log.error(
                "certificate_manager.go",
                f'{_REQUEST_FAILED} err="no template available" {_SERVING_LOGGER}',
            )
            return
        current = self._k.env.read_file(
            kubelet_options.win_join(opts.cert_dir, f"{SERVER_PREFIX}-current.pem")
        )
        bundle = kubelet_pki.split_bundle(current) if current else None
        now = kubelet_context.utcnow()
        if bundle and kubelet_pki.covers(bundle.cert_pem, opts.node_name, dns, ips, now):
            self.ready.set()
            return
        attempt = 0
        while True:
            try:
                if self._pending is None:
                    key = kubelet_pki.new_key()
                    name, uid = await kubelet_csr.create_csr(
                        client,
                        kubelet_pki.serving_csr(key, opts.node_name, dns, ips),
                        signer=kubelet_pki.SERVING_SIGNER,
                        usages=kubelet_pki.SERVING_USAGES,
                    )
                    self.csr_name, self._pending = name, (name, uid, key)
                    self._k.log.info(
                        "csr.go",
                        f'"Waiting for serving certificate to be issued" csr="{name}"',
                        v=2,
                    )
                name, uid, key = self._pending
                cert = await kubelet_csr.wait_for_certificate(client, name, uid)
            except (ApiError, httpx2.HTTPError, kubelet_csr.CertificateRequestError) as err:
                if isinstance(err, kubelet_csr.CertificateRequestError):
                    self._pending = None  # denied, failed or gone: start over with a new key
                self._k.log.error(
                    "certificate_manager.go",
                    f'{_REQUEST_FAILED} err="{kubelet_context.describe(err)}" {_SERVING_LOGGER}',
                )
                await asyncio.sleep(
                    kubelet_context.cert_backoff(self._k.timings.backoff_base, attempt)
                )
                attempt += 1
                continue
            self._pending = None
            store_certificate(self._k, SERVER_PREFIX, cert, key)
            self.ready.set()
            return


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
