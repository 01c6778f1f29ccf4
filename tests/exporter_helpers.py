"""Helpers for the windows_exporter tests: an HTTPS scrape verified with a CA, and the parser.

The scrape is a plain HTTP/1.1 GET over asyncio + ssl (not a client library), so a test sees
exactly what the exporter sent: status, headers, body and the certificate it presented.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    peer_der: bytes | None


def client_context(ca_pem: bytes) -> ssl.SSLContext:
    """Verify the server against ``ca_pem`` (and its IP/DNS SANs), TLS 1.2+."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    return status, headers, body


async def https_get(
    address: str, port: int, ca_pem: bytes, path: str = "/metrics", timeout: float = 10.0
) -> Response:
    """GET ``path`` over HTTPS, verifying the certificate for ``address``."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            address, port, ssl=client_context(ca_pem), server_hostname=address
        )
        ssl_object = writer.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {address}:{port}\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
        writer.close()
    status, headers, body = _parse(raw)
    return Response(status, headers, body, peer)


async def plain_get(address: str, port: int, path: str = "/metrics") -> bytes:
    """GET over plain HTTP (to show what an HTTPS server answers); the raw answer."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(address, port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
        writer.close()
    return raw


def families(text: str) -> dict[str, Metric]:
    """Parse exposition text with prometheus_client's own parser; by sample-family name."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called ``name`` (the full sample name, e.g. ``windows_cpu_time_total``)."""
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]
