"""Parsing the windows-instances ConfigMap: each entry on its own, strict addresses and users."""

from __future__ import annotations

import pytest

from wmco import instances
from wmco.controllers import instances as controller


def test_valid_entries() -> None:
    parsed = instances.parse_instances(
        {
            "10.1.42.1": "username=Administrator",
            "Instance.Example.com": "username=core\n",
            "127.0.5.9": "username=CORP\\admin",
            "win-2.example.com": "username=admin@corp.example.com",
        }
    )
    assert parsed.errors == ()
    assert parsed.instances == (
        instances.Instance("10.1.42.1", "Administrator", instances.AddressKind.IPV4),
        instances.Instance("127.0.5.9", "CORP\\admin", instances.AddressKind.IPV4),
        instances.Instance("instance.example.com", "core", instances.AddressKind.DNS),
        instances.Instance(
            "win-2.example.com", "admin@corp.example.com", instances.AddressKind.DNS
        ),
    )
    assert parsed.by_address("INSTANCE.example.com") == parsed.instances[2]
    assert parsed.by_address("10.9.9.9") is None


def test_one_bad_entry_does_not_hide_the_good_ones() -> None:
    parsed = instances.parse_instances(
        {"10.0.0.1": "username=Administrator", "10.0.0.2": "user=Administrator"}
    )
    assert [i.address for i in parsed.instances] == ["10.0.0.1"]
    assert len(parsed.errors) == 1
    assert parsed.errors[0].entry == "10.0.0.2"
    assert "username=<user>" in parsed.errors[0].reason
    assert "10.0.0.2" in str(parsed.errors[0])


@pytest.mark.parametrize(
    "username",
    [
        "Admin'istrator",
        'Admin"',
        "a;b",
        "$(whoami)",
        "a`b",
        "a b",
        "a\nb",
        "",
        "(x)",
        "a\\b\\c",
        "x@",
        "\\x",
        "-x",
    ],
)
def test_dangerous_usernames_are_rejected(username: str) -> None:
    parsed = instances.parse_instances({"10.0.0.1": f"username={username}"})
    assert parsed.instances == ()
    assert parsed.errors[0].entry == "10.0.0.1"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("::1", "IPv6"),
        ("fe80::1", "IPv6"),
        ("0.0.0.0", "not a host"),
        ("224.0.0.1", "not a host"),
        ("10.0.0.256", "IPv4"),
        ("bad_name.example.com", "DNS"),
        ("-bad.example.com", "DNS"),
        ("a" * 64 + ".com", "DNS"),
        ("x;y", "DNS"),
        ("$(x)", "DNS"),
    ],
)
def test_bad_addresses_are_rejected_with_a_reason(address: str, reason: str) -> None:
    parsed = instances.parse_instances({address: "username=Administrator"})
    assert parsed.instances == ()
    assert reason in parsed.errors[0].reason


def test_duplicate_hosts_are_both_rejected() -> None:
    parsed = instances.parse_instances(
        {"win.example.com": "username=a", "WIN.example.com": "username=b"}
    )
    assert parsed.instances == ()
    assert {error.entry for error in parsed.errors} == {"win.example.com", "WIN.example.com"}
    assert all("more than once" in error.reason for error in parsed.errors)


def test_missing_configmap_means_no_instances() -> None:
    assert instances.parse_instances(None) == instances.ParsedInstances((), ())
    assert instances.parse_instances({}) == instances.ParsedInstances((), ())


def test_value_must_be_username_key() -> None:
    with pytest.raises(ValueError, match="username="):
        instances.parse_entry("10.0.0.1", "Administrator")
    with pytest.raises(ValueError, match="username="):
        instances.parse_entry("10.0.0.1", "password=x")


def test_an_edit_changes_only_the_entries_it_touched() -> None:
    before = {f"10.0.0.{n}": "username=Administrator" for n in range(1, 6)}
    after = dict(before)
    after["10.0.0.2"] = "username=core"  # changed user
    del after["10.0.0.3"]  # removed
    after["10.0.0.9"] = "username=Administrator"  # added
    after["10.0.0.4"] = "username=Administrator\n"  # the same entry, spelled otherwise
    assert controller.changed_addresses(before, after) == {"10.0.0.2", "10.0.0.3", "10.0.0.9"}
    assert controller.changed_addresses(before, dict(before)) == set()
    assert controller.changed_addresses(None, {"10.0.0.1": "username=a"}) == {"10.0.0.1"}
    assert controller.changed_addresses({"10.0.0.1": "username=a"}, None) == {"10.0.0.1"}


def test_an_entry_that_becomes_invalid_is_a_removal() -> None:
    before = {"10.0.0.1": "username=a", "bad..name": "username=a"}
    after = {"10.0.0.1": "user=a", "bad..name": "username=b"}
    assert controller.changed_addresses(before, after) == {"10.0.0.1"}
