r"""windows_exporter's TLS web configuration file (``C:\k\windows_exporter\web-config.yml``).

windows_exporter 0.30 serves through the Prometheus exporter-toolkit: ``--web.config.file``
names a YAML file whose ``tls_server_config`` turns HTTPS on. The toolkit decodes it strictly
(an unknown key is an error and the exporter exits), reads the certificate and key again on
every new connection, and refuses TLS versions below ``min_version``. The operator writes the
certificate and key beside it (:mod:`wmco.nodeconfig.exportertls`), so the file itself never
changes from host to host.

The collectors are the reference operator's (``shared/reference/wmco-anchor.md`` §5.2).
"""

from __future__ import annotations

from typing import Final

from wmco.windows import layout

COLLECTORS: Final = (
    "cpu",
    "logical_disk",
    "net",
    "os",
    "service",
    "system",
    "container",
    "memory",
    "cpu_info",
)
"""``--collectors.enabled``, in the reference operator's order."""


def _quoted(path: str) -> str:
    """A YAML single-quoted scalar: backslashes stay literal, ``'`` doubles."""
    return "'" + path.replace("'", "''") + "'"


def web_config(
    cert_file: str = layout.WINDOWS_EXPORTER_CERT, key_file: str = layout.WINDOWS_EXPORTER_KEY
) -> str:
    """The exporter-toolkit web configuration: HTTPS with the host's certificate, TLS 1.2+."""
    return (
        "# Written by the Windows Machine Config Operator; changes are overwritten.\n"
        "tls_server_config:\n"
        f"  cert_file: {_quoted(cert_file)}\n"
        f"  key_file: {_quoted(key_file)}\n"
        "  min_version: TLS12\n"
    )
