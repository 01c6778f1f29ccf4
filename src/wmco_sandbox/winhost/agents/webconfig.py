r"""The Prometheus exporter-toolkit web configuration, read the way windows_exporter 0.30 reads it.

windows_exporter's ``--web.config.file`` goes to exporter-toolkit v0.14 (``web/tls_config.go``):

1. The file is read (``open <path>: The system cannot find the file specified.``) and decoded
   with gopkg.in/yaml.v2's ``UnmarshalStrict`` into ``web.Config``: an unknown key is
   ``line N: field <k> not found in type web.TLSConfig``, a value of the wrong kind ``line N:
   cannot unmarshal !!str `abc` into bool``, a repeated key ``line N: key "k" already set in
   map``; these are collected under ``yaml: unmarshal errors:``. ``min_version`` /
   ``max_version``, ``cipher_suites`` and ``curve_preferences`` have their own decoders
   (``unknown TLS version: TLS9``, ``unknown cipher: ...``, ``unknown curve: ...``). Headers are
   checked against the toolkit's short list.
2. No TLS field at all means plain HTTP (``TLS is disabled.``). Otherwise a certificate and a
   key are required (``missing one of cert or cert_file``), both files are read (``failed to
   read cert_file (<path>): open <path>: ...``) and must make a key pair (``failed to load
   X509KeyPair: tls: private key does not match public key``, Go's ``crypto/tls`` texts);
   ``client_auth_type`` must be one of Go's names.

Relative paths are taken from the file's folder (the toolkit's ``SetDirectory``). What is not
simulated (``docs/windows-surface.md``): ``basic_auth_users`` (any user makes the start fail
with a "not simulated" message), client certificate verification, the ``cert``/``key`` inline
forms' secrets semantics beyond "PEM text", and YAML syntax errors use PyYAML's wording, not
libyaml's.
"""

from __future__ import annotations

import dataclasses
import ntpath
import re
from collections.abc import Callable
from typing import Any, Final

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["TlsMaterial", "WebConfig", "WebConfigError", "load"]

NOT_FOUND: Final = "The system cannot find the file specified."
PATH_NOT_FOUND: Final = "The system cannot find the path specified."

TLS_VERSIONS: Final = {"TLS13": 0x0304, "TLS12": 0x0303, "TLS11": 0x0302, "TLS10": 0x0301}
CIPHERS: Final = frozenset(
    {
        "TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_AES_256_CBC_SHA",
        "TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    }
)  # fmt: skip
"""Go's ``tls.CipherSuites()`` names (the secure list the toolkit accepts)."""
CURVES: Final = frozenset({"CurveP256", "CurveP384", "CurveP521", "X25519"})
CLIENT_AUTH: Final = frozenset(
    {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert",
     "VerifyClientCertIfGiven", "RequireAndVerifyClientCert", "", "NoClientCert"}
)  # fmt: skip
_HEADERS: Final = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

_STR, _BOOL, _STRS, _MAP, _VERSION, _CIPHERS, _CURVES = (
    "string", "bool", "[]string", "map[string]string", "version", "ciphers", "curves",
)  # fmt: skip
_TLS_FIELDS: Final = {
    "cert": _STR, "key": _STR, "client_ca": _STR, "cert_file": _STR, "key_file": _STR,
    "client_auth_type": _STR, "client_ca_file": _STR, "cipher_suites": _CIPHERS,
    "curve_preferences": _CURVES, "min_version": _VERSION, "max_version": _VERSION,
    "prefer_server_cipher_suites": _BOOL, "client_allowed_sans": _STRS,
}  # fmt: skip
_HTTP_FIELDS: Final = {"http2": _BOOL, "headers": _MAP}
_CONFIG_FIELDS: Final = {
    "tls_server_config": ("web.TLSConfig", _TLS_FIELDS),
    "http_server_config": ("web.HTTPConfig", _HTTP_FIELDS),
    "basic_auth_users": _MAP,
}
_BOOL_WORDS: Final = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}  # fmt: skip
_TAGS: Final = {
    "tag:yaml.org,2002:str": "!!str", "tag:yaml.org,2002:int": "!!int",
    "tag:yaml.org,2002:float": "!!float", "tag:yaml.org,2002:bool": "!!bool",
    "tag:yaml.org,2002:null": "!!null", "tag:yaml.org,2002:map": "!!map",
    "tag:yaml.org,2002:seq": "!!seq", "tag:yaml.org,2002:timestamp": "!!timestamp",
}  # fmt: skip
_PEM: Final = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)


class WebConfigError(Exception):
    """The web config (or a file it names) is unusable; the text is exporter-toolkit's."""


@dataclasses.dataclass(frozen=True, slots=True)
class TlsMaterial:
    """What a TLS handshake needs: the chain, the key, the versions."""

    cert_chain: tuple[x509.Certificate, ...]
    key_pem: bytes = dataclasses.field(repr=False)
    min_version: int
    max_version: int


@dataclasses.dataclass(frozen=True, slots=True)
class WebConfig:
    """A decoded web config: TLS (``None``: plain HTTP), HTTP/2, extra headers."""

    tls: TlsMaterial | None
    http2: bool = True
    headers: tuple[tuple[str, str], ...] = ()


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _terror(node: yaml.Node, into: str) -> str:
    tag = _TAGS.get(node.tag, node.tag)
    if isinstance(node, yaml.ScalarNode):
        value = node.value
        shown = f" `{value[:7]}...`" if len(value) > 10 else f" `{value}`"
        return f"line {_line(node)}: cannot unmarshal {tag}{shown} into {into}"
    return f"line {_line(node)}: cannot unmarshal {tag} into {into}"


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


class _Decoder:
    """yaml.v2's strict decoding of ``web.Config``: type errors collected, custom errors raised."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def pairs(self, node: yaml.MappingNode, into: str) -> list[tuple[str, yaml.Node]]:
        seen: set[str] = set()
        result = []
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                self.errors.append(f'line {_line(key_node)}: key "{key}" already set in map')
                continue
            seen.add(key)
            result.append((key, value_node))
        return result

    def struct(self, node: yaml.Node, into: str, fields: dict[str, Any]) -> dict[str, Any]:
        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.errors.append(_terror(node, into))
            return {}
        out: dict[str, Any] = {}
        for key, value in self.pairs(node, into):
            kind = fields.get(key)
            if kind is None:
                self.errors.append(f"line {_line(value)}: field {key} not found in type {into}")
                continue
            if isinstance(kind, tuple):
                out[key] = self.struct(value, kind[0], kind[1])
            else:
                out[key] = self.value(value, kind)
        return out

    def value(self, node: yaml.Node, kind: str) -> Any:
        if _is_null(node):
            return None
        if kind in (_STR, _VERSION):
            if not isinstance(node, yaml.ScalarNode):
                self.errors.append(_terror(node, "string"))
                return None
            if kind == _VERSION and node.value not in TLS_VERSIONS:
                raise WebConfigError(f"unknown TLS version: {node.value}")
            return str(node.value)
        if kind == _BOOL:
            if not isinstance(node, yaml.ScalarNode) or node.value not in _BOOL_WORDS:
                self.errors.append(_terror(node, "bool"))
                return None
            return _BOOL_WORDS[node.value]
        if kind in (_STRS, _CIPHERS, _CURVES):
            into = {_STRS: "[]string", _CIPHERS: "[]web.Cipher", _CURVES: "[]web.Curve"}[kind]
            if not isinstance(node, yaml.SequenceNode):
                self.errors.append(_terror(node, into))
                return None
            items = [self.value(item, _STR) for item in node.value]
            for item in items:
                if kind == _CIPHERS and item not in CIPHERS:
                    raise WebConfigError(f"unknown cipher: {item}")
                if kind == _CURVES and item not in CURVES:
                    raise WebConfigError(f"unknown curve: {item}")
            return items
        if not isinstance(node, yaml.MappingNode):  # _MAP
            self.errors.append(_terror(node, "map[string]string"))
            return None
        return {key: self.value(value, _STR) for key, value in self.pairs(node, kind)}


def _join(directory: str, path: str | None) -> str:
    """``config_util.JoinDir``: relative paths are taken from the config file's folder."""
    if not path or ntpath.isabs(path):
        return path or ""
    return ntpath.join(directory, path)


Reader = Callable[[str], bytes | None]
"""Reads a Windows path; ``None`` when it is missing."""
DirExists = Callable[[str], bool]


def _open_error(path: str, exists: DirExists) -> str:
    folder = ntpath.dirname(path)
    return f"open {path}: {NOT_FOUND if not folder or exists(folder) else PATH_NOT_FOUND}"


def decode(data: bytes) -> dict[str, Any]:
    """``yaml.UnmarshalStrict`` into ``web.Config``, then the header check.

    Raises:
        WebConfigError: With exporter-toolkit's (yaml.v2's) text.
    """
    try:
        node = yaml.compose(data.decode("utf-8", "replace"), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise WebConfigError(f"yaml: {where}{problem}") from None
    decoder = _Decoder()
    config = decoder.struct(node, "web.Config", _CONFIG_FIELDS) if node is not None else {}
    if decoder.errors:
        raise WebConfigError("yaml: unmarshal errors:\n  " + "\n  ".join(decoder.errors))
    for name, value in ((config.get("http_server_config") or {}).get("headers") or {}).items():
        if name not in _HEADERS:
            raise WebConfigError(f'HTTP header "{name}" can not be configured')
        allowed = _HEADERS[name]
        if allowed is not None and value not in allowed:
            shown = "[" + " ".join(f'"{v}"' for v in allowed) + "]"
            raise WebConfigError(
                f'invalid value for {name}. Expected one of: {shown}, but got: "{value}"'
            )
    return config


def _key_pair(cert_data: bytes, key_data: bytes) -> tuple[tuple[x509.Certificate, ...], bytes]:
    """Go's ``tls.X509KeyPair``, with its error texts."""
    blocks = [(m.group(1).decode(), m.group(0)) for m in _PEM.finditer(cert_data)]
    certs = [pem for kind, pem in blocks if kind == "CERTIFICATE"]
    if not blocks:
        raise WebConfigError("tls: failed to find any PEM data in certificate input")
    if not certs:
        skipped = " ".join(kind for kind, _ in blocks)
        raise WebConfigError(
            'tls: failed to find "CERTIFICATE" PEM block in certificate input after skipping '
            f"PEM blocks of the following types: [{skipped}]"
        )
    key_blocks = [(m.group(1).decode(), m.group(0)) for m in _PEM.finditer(key_data)]
    keys = [
        pem for kind, pem in key_blocks if kind == "PRIVATE KEY" or kind.endswith(" PRIVATE KEY")
    ]
    if not key_blocks:
        raise WebConfigError("tls: failed to find any PEM data in key input")
    if not keys:
        if any(kind == "CERTIFICATE" for kind, _ in key_blocks):
            raise WebConfigError(
                "tls: found a certificate rather than a key in the PEM for the private key"
            )
        skipped = " ".join(kind for kind, _ in key_blocks)
        raise WebConfigError(
            'tls: failed to find PEM block with type ending in "PRIVATE KEY" in key input after '
            f"skipping PEM blocks of the following types: [{skipped}]"
        )
    try:
        chain = tuple(x509.load_pem_x509_certificate(pem) for pem in certs)
    except ValueError:
        raise WebConfigError("x509: malformed certificate") from None
    try:
        key = serialization.load_pem_private_key(keys[0], password=None)
    except (ValueError, TypeError):
        raise WebConfigError("tls: failed to parse private key") from None
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != chain[0].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise WebConfigError("tls: private key does not match public key")
    return chain, keys[0]


def load(path: str, read: Reader, exists: DirExists) -> WebConfig:
    """Read the web config at ``path`` and the TLS files it names, as a new connection does.

    Raises:
        WebConfigError: The first problem, in exporter-toolkit's words.
    """
    data = read(path)
    if data is None:
        raise WebConfigError(_open_error(path, exists))
    config = decode(data)
    if config.get("basic_auth_users"):
        raise WebConfigError("basic_auth_users: not simulated (docs/windows-surface.md)")
    http = config.get("http_server_config") or {}
    http2 = http.get("http2") if http.get("http2") is not None else True
    headers = tuple(sorted((http.get("headers") or {}).items()))
    tls = config.get("tls_server_config") or {}
    folder = ntpath.dirname(path)
    cert_file, key_file = _join(folder, tls.get("cert_file")), _join(folder, tls.get("key_file"))
    ca_file = _join(folder, tls.get("client_ca_file"))
    if not any(
        (cert_file, tls.get("cert"), key_file, tls.get("key"), ca_file, tls.get("client_ca"),
         tls.get("client_auth_type"))
    ):  # fmt: skip
        return WebConfig(tls=None, http2=False, headers=headers)
    if not (cert_file or tls.get("cert")):
        raise WebConfigError("missing one of cert or cert_file")
    if not (key_file or tls.get("key")):
        raise WebConfigError("missing one of key or key_file")
    if cert_file:
        cert_data = read(cert_file)
        if cert_data is None:
            raise WebConfigError(
                f"failed to read cert_file ({cert_file}): {_open_error(cert_file, exists)}"
            )
    else:
        cert_data = str(tls.get("cert")).encode()
    if key_file:
        key_data = read(key_file)
        if key_data is None:
            raise WebConfigError(
                f"failed to read key_file ({key_file}): {_open_error(key_file, exists)}"
            )
    else:
        key_data = str(tls.get("key")).encode()
    try:
        chain, key_pem = _key_pair(cert_data, key_data)
    except WebConfigError as exc:
        raise WebConfigError(f"failed to load X509KeyPair: {exc}") from None
    if ca_file and read(ca_file) is None:
        raise WebConfigError(_open_error(ca_file, exists))
    auth = tls.get("client_auth_type") or ""
    if auth not in CLIENT_AUTH:
        raise WebConfigError(f"Invalid ClientAuth: {auth}")
    if (ca_file or tls.get("client_ca")) and auth in ("", "NoClientCert"):
        raise WebConfigError("Client CA's have been configured without a Client Auth Policy")
    return WebConfig(
        tls=TlsMaterial(
            cert_chain=chain,
            key_pem=key_pem,
            min_version=TLS_VERSIONS[tls.get("min_version") or "TLS12"],
            max_version=TLS_VERSIONS[tls.get("max_version") or "TLS13"],
        ),
        http2=bool(http2),
        headers=headers,
    )
