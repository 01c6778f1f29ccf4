"""The ``windows-instances`` ConfigMap: bring-your-own-host instances, one entry each.

Each entry is ``<IPv4 address or DNS name>: username=<user>``. Unlike the reference operator, one
bad entry does not stop the others: :func:`parse_instances` returns the valid instances *and* a list
of per-entry errors (which entry, and why), so the controller can configure the good hosts and
report the bad ones in an Event.

Addresses and user names end up in SSH connections, Node annotations and (user names) commands, so
the rules are strict allow-lists: no quotes, ``;``, ``$``, parentheses, backticks, whitespace or
newlines can get through. Pure; no DNS lookups here (resolution is the caller's I/O).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
from collections.abc import Mapping
from typing import Final

from wmco import names

_DNS_LABEL: Final = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_USERNAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@\\-]{0,103}")
_DOMAIN_PART: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,62}")


class AddressKind(enum.StrEnum):
    """Whether an instance is named by an IPv4 address or by a DNS name."""

    IPV4 = "ipv4"
    DNS = "dns"


@dataclasses.dataclass(frozen=True, slots=True)
class Instance:
    """One valid entry of ``windows-instances``.

    Attributes:
        address: The entry's key as given (an IPv4 address, or a lower-cased DNS name).
        username: The SSH user.
        kind: Whether ``address`` is an IPv4 address or a DNS name.
    """

    address: str
    username: str
    kind: AddressKind


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceError:
    """Why one entry was rejected.

    Attributes:
        entry: The entry's key exactly as in the ConfigMap.
        reason: What is wrong and what a valid entry looks like.
    """

    entry: str
    reason: str

    def __str__(self) -> str:
        return f"windows-instances entry {self.entry!r}: {self.reason}"


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedInstances:
    """The result of :func:`parse_instances`: valid instances and per-entry errors, by entry key."""

    instances: tuple[Instance, ...]
    errors: tuple[InstanceError, ...]

    def by_address(self, address: str) -> Instance | None:
        """The instance with this address (DNS names compare case-insensitively), if any."""
        wanted = address.lower()
        for instance in self.instances:
            if instance.address.lower() == wanted:
                return instance
        return None


def validate_address(address: str) -> tuple[str, AddressKind]:
    """Validate an entry key.

    Args:
        address: An IPv4 address (loopback allowed, for local hosts) or an RFC 1123 DNS name.

    Returns:
        The normalised address (DNS names lower-cased) and its kind.

    Raises:
        ValueError: With a reason that names the rule broken.
    """
    if not address:
        raise ValueError("the address is empty")
    if any(char.isspace() for char in address):
        raise ValueError("the address contains whitespace")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if isinstance(ip, ipaddress.IPv6Address):
        raise ValueError("IPv6 addresses are not supported; use an IPv4 address or a DNS name")
    if isinstance(ip, ipaddress.IPv4Address):
        if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
            raise ValueError(f"{address} is not a host address")
        return str(ip), AddressKind.IPV4
    if re.fullmatch(r"[0-9.]+", address):
        raise ValueError("the address looks like an IPv4 address but is not a valid one")
    name = address.lower().rstrip(".")
    if len(name) > 253:
        raise ValueError("the DNS name is longer than 253 characters")
    for label in name.split("."):
        if not _DNS_LABEL.fullmatch(label):
            raise ValueError(
                "not an IPv4 address nor a valid DNS name (labels of a-z, 0-9 and '-', "
                "at most 63 characters, starting and ending with a letter or digit)"
            )
    return name, AddressKind.DNS


def validate_username(username: str) -> str:
    r"""Validate a Windows user name (``user``, ``DOMAIN\user`` or ``user@domain``).

    Raises:
        ValueError: With a reason; the rejected characters include quotes, ``;``, ``$``,
            parentheses, backticks, whitespace and newlines.
    """
    if not username:
        raise ValueError("the username is empty")
    if not _USERNAME.fullmatch(username):
        raise ValueError(
            "the username may contain only letters, digits and . _ - @ \\ "
            "(no quotes, ';', '$', '(', ')', backticks, spaces or newlines), at most 104 "
            "characters, starting with a letter or digit"
        )
    if username.count("\\") > 1 or username.count("@") > 1:
        raise ValueError("the username has more than one domain separator")
    if "\\" in username:
        domain, _, user = username.partition("\\")
        if not _DOMAIN_PART.fullmatch(domain) or not user:
            raise ValueError("the username must be DOMAIN\\user with both parts present")
    if "@" in username:
        user, _, domain = username.partition("@")
        if not user or not _DOMAIN_PART.fullmatch(domain):
            raise ValueError("the username must be user@domain with both parts present")
    return username


def parse_entry(key: str, value: str) -> Instance:
    """Parse one entry.

    The value is ``username=<user>``; surrounding whitespace (e.g. the newline a YAML ``|`` block
    adds) is ignored.

    Raises:
        ValueError: With a reason naming the rule broken.
    """
    address, kind = validate_address(key)
    text = value.strip()
    field, sep, username = text.partition("=")
    if not sep or field != names.INSTANCES_USERNAME_KEY:
        raise ValueError(
            f"the value must be '{names.INSTANCES_USERNAME_KEY}=<user>' "
            "(e.g. username=Administrator)"
        )
    return Instance(address=address, username=validate_username(username), kind=kind)


def parse_instances(data: Mapping[str, str] | None) -> ParsedInstances:
    """Parse the ConfigMap's ``data``, entry by entry.

    Args:
        data: ``ConfigMap.data``; ``None`` (no ConfigMap, or no data) means no instances.

    Returns:
        Valid instances and per-entry errors, both sorted by entry key. Two entries naming the same
        host (DNS names differing only in case) are both rejected.
    """
    instances: dict[str, Instance] = {}
    keys_by_address: dict[str, list[str]] = {}
    errors: list[InstanceError] = []
    for key in sorted(data or {}):
        value = (data or {})[key]
        try:
            instance = parse_entry(key, value)
        except ValueError as exc:
            errors.append(InstanceError(entry=key, reason=str(exc)))
            continue
        instances[key] = instance
        keys_by_address.setdefault(instance.address, []).append(key)
    for address, keys in keys_by_address.items():
        if len(keys) > 1:
            for key in keys:
                del instances[key]
                errors.append(
                    InstanceError(
                        entry=key,
                        reason=f"the host {address} is listed more than once "
                        f"({', '.join(repr(k) for k in keys)})",
                    )
                )
    return ParsedInstances(
        instances=tuple(instances[key] for key in sorted(instances)),
        errors=tuple(sorted(errors, key=lambda error: error.entry)),
    )
