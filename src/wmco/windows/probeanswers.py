r"""Parsers of the drift probe's answer and of the kubelet client certificate read (pure).

:func:`wmco.windows.commands.drift_probe` sends ONE command whose answer is a sequence of
sections, each opened by a ``wmco-probe <section>`` line; every section is read by the parser the
flow uses for the same single command (:mod:`wmco.windows.answers`: ``sc.exe qc`` / ``query``
blocks, the OS build, the HNS listings), so the probe and the configure flow cannot disagree about
what a host said. An answer without its ``end`` line was cut off and is refused whole.

:func:`parse_certificate` reads the certificate block that
:func:`wmco.windows.commands.certificate_block` answers. That text never appears in an error: the
file it comes from also holds the kubelet's private key.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Final

from cryptography import x509

from wmco.windows import answers, commands, planner

_KIND: Final = "drift probe"
_NOT_INSTALLED: Final = f"FAILED {int(answers.ScExitCode.SERVICE_DOES_NOT_EXIST)}"
_CERT_BEGIN: Final = "-----BEGIN CERTIFICATE-----"


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeReport:
    """Everything one probe answered.

    Attributes:
        build: The OS build number.
        services: By service name, every service the probe asked about (as the planner
            records them: no ``config`` when not installed).
        hashes: Lower-case path to lower-case SHA-256, for the files that exist.
            The files of the ``glob`` sections are in it as well.
        networks: The HNS networks (empty when not asked).
        endpoints: The HNS endpoints (empty when not asked).
        node_name: The host name, lower-cased (``None`` when not asked).
        feature: The Containers feature's state (``None`` when not asked).
        certificate: The validity of the certificate asked for (``None``: not asked, no file,
            or a certificate that does not parse; see :func:`parse_certificate`).
    """

    build: int
    services: dict[str, planner.ObservedService]
    hashes: dict[str, str]
    networks: tuple[answers.HnsNetwork, ...] = ()
    endpoints: tuple[answers.HnsEndpoint, ...] = ()
    node_name: str | None = None
    feature: answers.FeatureState | None = None
    certificate: Certificate | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Certificate:
    """The validity of a certificate read from a host."""

    not_before: datetime.datetime
    not_after: datetime.datetime

    def valid_for(self, now: datetime.datetime, margin: datetime.timedelta) -> bool:
        """Whether it is valid now and still ``margin`` from now."""
        return self.not_before <= now and now + margin < self.not_after


def _sections(output: str) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    prefix = commands.PROBE_MARK + " "
    for line in output.replace("\r", "").split("\n"):
        if line.startswith(prefix):
            name = line[len(prefix) :].strip()
            if name in found:
                raise answers.CommandOutputError(_KIND, f"section {name!r} twice", output)
            current = found.setdefault(name, [])
            continue
        if current is None:
            if line.strip():
                raise answers.CommandOutputError(_KIND, "text before the first section", output)
            continue
        current.append(line)
    if "end" not in found or "build" not in found:
        raise answers.CommandOutputError(_KIND, "cut off (no build or end section)", output)
    return {name: "\n".join(lines) for name, lines in found.items()}


def _hashes(text: str) -> dict[str, str]:
    if not text.strip():
        return {}
    try:
        items = json.loads(text)
    except ValueError:
        raise answers.CommandOutputError(_KIND, "the file hashes are not JSON", text) from None
    if not isinstance(items, list):
        raise answers.CommandOutputError(_KIND, "the file hashes are not a JSON array", text)
    result: dict[str, str] = {}
    for item in items:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("Path"), str)
            and isinstance(item.get("Hash"), str)
        ):
            raise answers.CommandOutputError(_KIND, "a file hash without Path or Hash", text)
        result[item["Path"].lower()] = item["Hash"].lower()
    return result


def parse_probe(output: str) -> ProbeReport:
    """Parse the answer of :func:`wmco.windows.commands.drift_probe`.

    Raises:
        CommandOutputError: A section is missing, repeated or of another shape, or the answer was
            cut off.
    """
    sections = _sections(output)
    services: dict[str, planner.ObservedService] = {}
    for name, text in sections.items():
        kind, _, service = name.partition(" ")
        if kind != "qc":
            continue
        if _NOT_INSTALLED in text:
            services[service] = planner.ObservedService(service)
            continue
        state_text = sections.get(f"query {service}", "")
        state = None if _NOT_INSTALLED in state_text else answers.parse_sc_query(state_text).state
        services[service] = planner.ObservedService(service, answers.parse_sc_qc(text), state)
    networks = sections.get("hns-networks")
    endpoints = sections.get("hns-endpoints")
    hashes = _hashes(sections.get("files", ""))
    for name, text in sections.items():
        if name.startswith("glob "):
            hashes.update(_hashes(text))
    hostname = sections.get("hostname")
    feature = sections.get("feature")
    certificate = sections.get("cert")
    return ProbeReport(
        build=answers.parse_os_build(sections["build"]),
        services=services,
        hashes=hashes,
        networks=answers.parse_hns_networks(networks) if networks is not None else (),
        endpoints=answers.parse_hns_endpoints(endpoints) if endpoints is not None else (),
        node_name=answers.parse_node_name(hostname) if hostname is not None else None,
        feature=answers.parse_feature_state(feature) if feature is not None else None,
        certificate=parse_certificate(certificate) if certificate is not None else None,
    )


def parse_certificate(output: str) -> Certificate | None:
    """Parse :func:`wmco.windows.commands.certificate_block`'s answer.

    Returns:
        The first certificate's validity; ``None`` when there is none or it does not parse (the
        caller then treats the kubelet as having no valid certificate).
    """
    text = output.replace("\r", "")
    start = text.find(_CERT_BEGIN)
    if start < 0:
        return None
    body = text[start:].strip() + "\n-----END CERTIFICATE-----\n"
    try:
        cert = x509.load_pem_x509_certificate(body.encode("ascii"))
    except ValueError:
        return None
    return Certificate(cert.not_valid_before_utc, cert.not_valid_after_utc)
