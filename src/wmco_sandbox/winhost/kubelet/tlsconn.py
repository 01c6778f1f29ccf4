"""TLS for the kubelet's API over asyncio streams, with pyOpenSSL memory BIOs.

The kubelet asks for a client certificate but does not let the TLS layer judge it (Go's
``tls.RequestClientCert``): the handshake completes whatever the client sends, and the
authenticator then verifies the chain against the current ``clientCAFile`` and answers 401 when
it does not verify. Python's ``ssl`` module cannot do that (an untrusted client certificate
fails the handshake), so the server side is pyOpenSSL with a verify callback that accepts every
certificate, driven through memory BIOs over an asyncio stream. The CA subjects of the client CA
file are announced in the CertificateRequest, as Go's server does with ``ClientCAs``.
"""

from __future__ import annotations

import asyncio
import contextlib

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL

__all__ = ["ServingKey", "TlsError", "TlsStream", "server_context"]

ServingKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
"""The private key types a serving certificate of the kubelet may have."""

_CHUNK = 65536


class TlsError(Exception):
    """The TLS handshake or record layer failed (the connection is dropped)."""


def _accept_any(connection: SSL.Connection, cert: object, errno: int, depth: int, ok: int) -> bool:
    return True


def server_context(
    chain: list[x509.Certificate] | None,
    key: ServingKey | None,
    client_cas: list[x509.Certificate],
) -> SSL.Context:
    """A TLS 1.2+ server context; without a certificate every handshake fails.

    Args:
        chain: The serving certificate and its intermediates, or ``None`` (none issued yet).
        key: Its private key.
        client_cas: CAs whose subjects the CertificateRequest names.
    """
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_verify(SSL.VERIFY_PEER, _accept_any)
    if chain and key is not None:
        context.use_certificate(chain[0])
        for extra in chain[1:]:
            context.add_extra_chain_cert(extra)
        context.use_privatekey(key)
    for ca in client_cas:
        context.add_client_ca(ca)
    return context


class TlsStream:
    """One server-side TLS connection over an asyncio stream pair."""

    def __init__(
        self,
        context: SSL.Context,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        initial: bytes = b"",
    ) -> None:
        """Wrap the stream; ``initial`` is what was already read from it (a peek at the start)."""
        self._conn = SSL.Connection(context, None)
        self._conn.set_accept_state()
        self._reader = reader
        self._writer = writer
        if initial:
            self._conn.bio_write(initial)

    async def _flush(self) -> None:
        while True:
            try:
                data = self._conn.bio_read(_CHUNK)
            except SSL.WantReadError:
                break
            if not data:
                break
            self._writer.write(data)
        await self._writer.drain()

    async def _feed(self) -> None:
        data = await self._reader.read(_CHUNK)
        if not data:
            raise TlsError("connection closed by the client")
        self._conn.bio_write(data)

    async def handshake(self) -> None:
        """Complete the server handshake.

        Raises:
            TlsError: The handshake failed (the alert, if any, has been sent).
        """
        while True:
            try:
                self._conn.do_handshake()
            except SSL.WantReadError:
                await self._flush()
                await self._feed()
                continue
            except SSL.Error as err:
                await self._flush()
                raise TlsError(f"TLS handshake error: {err}") from None
            await self._flush()
            return

    def peer_chain(self) -> list[x509.Certificate]:
        """The certificates the client sent, leaf first (empty when it sent none).

        On the server side OpenSSL's peer chain leaves out the leaf: it is read on its own.
        """
        leaf = self._conn.get_peer_certificate(as_cryptography=True)
        if leaf is None:
            return []
        rest = list(self._conn.get_peer_cert_chain(as_cryptography=True) or [])
        return [leaf, *(c for c in rest if c != leaf)]

    async def read_until(self, marker: bytes, limit: int = 65536) -> bytes:
        """Read decrypted bytes until ``marker`` appears (or the client stops sending)."""
        buffer = b""
        while marker not in buffer and len(buffer) < limit:
            try:
                buffer += self._conn.recv(_CHUNK)
            except SSL.WantReadError:
                await self._flush()
                try:
                    await self._feed()
                except TlsError:
                    break
            except SSL.ZeroReturnError:
                break
            except SSL.Error as err:
                raise TlsError(f"TLS read error: {err}") from None
        return buffer

    async def write(self, data: bytes) -> None:
        """Encrypt and send ``data``."""
        view = memoryview(data)
        while view:
            sent = self._conn.send(bytes(view[:_CHUNK]))
            view = view[sent:]
            await self._flush()

    async def close(self) -> None:
        """Send close_notify and close the stream."""
        try:
            self._conn.shutdown()
            await self._flush()
        except (SSL.Error, ConnectionError, OSError):
            pass
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
