r"""windows_exporter's TLS on one host: its web config, and a new serving certificate only when due.

Every pass writes the web config (it never changes, so it is only compared). A serving
certificate is issued from the exporter CA (:mod:`wmco.cluster.exporterca`) only when the Node's
record (``exporter-cert`` annotation) says the one on the host is no good any more: issued by
another CA, past its renewal time, not naming one of the node's addresses, or absent; or when
the files on the host are not the ones recorded (``Get-FileHash``; the key itself is never read
back). A new certificate and key are files that differ, so the flow stops windows_exporter,
writes them and starts it again, and nothing else restarts.

The certificate names the node (its name and every address in its status) and the address the
operator reaches it at. A node registered under a DNS name gets its InternalIP into the
certificate on the pass after the kubelet reports it: the fast path (:func:`is_current`) sees an
address the record does not cover.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from lightkube.resources.core_v1 import Node

from wmco import names
from wmco.cluster import exporterca
from wmco.nodeconfig.instance import Instance
from wmco.nodeconfig.runner import Runner
from wmco.windows import exporterconfig, layout, transfer

_ADDRESS_TYPES = frozenset({"InternalIP", "ExternalIP", "Hostname", "InternalDNS", "ExternalDNS"})


@dataclasses.dataclass(frozen=True, slots=True)
class ExporterTls:
    """The exporter's files for this pass and the record for the Node.

    Attributes:
        files: The web config, plus certificate and key when newly issued.
        record: The certificate in force afterwards.
        reason: Why a certificate was issued (``None``: the host keeps its own).
    """

    files: tuple[transfer.Content, ...]
    record: exporterca.ServingRecord
    reason: str | None = None


def web_config_content() -> transfer.Content:
    """The web config file, the same on every host."""
    return transfer.Content.of_bytes(
        layout.WINDOWS_EXPORTER_WEB_CONFIG,
        exporterconfig.web_config().encode(),
        "windows_exporter web config",
    )


def node_names(node: Node | None) -> list[str]:
    """The node's name, its status addresses and the address the operator reaches it at."""
    if node is None or node.metadata is None:
        return []
    found = [node.metadata.name or ""]
    for address in (node.status.addresses if node.status else None) or []:
        if address.type in _ADDRESS_TYPES:
            found.append(address.address)
    annotation = (node.metadata.annotations or {}).get(names.INSTANCE_ADDRESS_ANNOTATION)
    return [*found, *([annotation] if annotation else [])]


def host_names(node_name: str, instance: Instance, node: Node | None) -> tuple[str, ...]:
    """Every name the certificate of this host must cover (canonical, sorted)."""
    extra: Iterable[str] = (instance.address, *((instance.node_ip,) if instance.node_ip else ()))
    return exporterca.canonical_names((node_name, *extra, *node_names(node)))


def record_of(node: Node | None) -> exporterca.ServingRecord | None:
    """The record on the Node, if it has a readable one."""
    annotations = (node.metadata.annotations if node and node.metadata else None) or {}
    return exporterca.ServingRecord.from_annotation(annotations.get(names.EXPORTER_CERT_ANNOTATION))


def is_current(node: Node | None, ca: exporterca.CertificateAuthority | None) -> bool:
    """Whether the host's certificate needs nothing (the no-SSH check); ``True`` without a CA.

    Without a usable CA nothing can be issued, so a host is not sent through the flow for it.
    """
    if ca is None:
        return True
    record = record_of(node)
    return record is not None and record.why_reissue(ca, node_names(node)) is None


def plan(
    runner: Runner,
    ca: exporterca.CertificateAuthority,
    instance: Instance,
    node_name: str,
    node: Node | None,
    hashes: Mapping[str, str],
) -> ExporterTls:
    """The exporter's files for this pass: keep the host's certificate, or issue one.

    Args:
        runner: The host (for messages).
        ca: The exporter CA.
        instance: The instance.
        node_name: Its node name.
        node: Its Node, if any (the record of the certificate issued last).
        hashes: Lower-case path to lower-case SHA-256 of the host's files (the flow's look).

    Raises:
        ConfigurationError: A certificate cannot be issued for these names.
    """
    wanted = host_names(node_name, instance, node)
    web = web_config_content()
    record = record_of(node)
    reason = (
        record.why_reissue(ca, wanted) if record is not None else "the host has none of ours yet"
    )
    if record is not None and reason is None:
        cert = hashes.get(layout.WINDOWS_EXPORTER_CERT.lower())
        key = hashes.get(layout.WINDOWS_EXPORTER_KEY.lower())
        if cert == record.cert_sha256 and key == record.key_sha256:
            return ExporterTls((web,), record)
        reason = "the certificate or key on the host is not the one issued"
    try:
        serving = exporterca.issue_serving(ca, node_name, wanted)
    except ValueError as exc:
        raise runner.fail(f"cannot issue the windows_exporter certificate: {exc}") from None
    return ExporterTls(
        (
            web,
            transfer.Content.of_bytes(
                layout.WINDOWS_EXPORTER_CERT, serving.cert_pem, "windows_exporter certificate"
            ),
            transfer.Content.of_bytes(
                layout.WINDOWS_EXPORTER_KEY, serving.key_pem, "windows_exporter key"
            ),
        ),
        serving.record,
        reason,
    )
