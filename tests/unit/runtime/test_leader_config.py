"""Leader election timing rules (client-go's): lease > renew deadline > 1.2 x retry period."""

from __future__ import annotations

import pytest

from wmco.runtime import leader, manager


def test_valid_config() -> None:
    config = leader.LeaderElectionConfig("ns", "lock", "me", 15, 10, 2)
    assert config.release_on_cancel


@pytest.mark.parametrize(
    ("lease", "renew", "retry", "identity"),
    [(10, 10, 2, "me"), (15, 2.4, 2, "me"), (15, 10, 0, "me"), (15, 10, 2, "")],
)
def test_invalid_configs_are_rejected(
    lease: float, renew: float, retry: float, identity: str
) -> None:
    with pytest.raises(ValueError):
        leader.LeaderElectionConfig("ns", "lock", identity, lease, renew, retry)


def test_parse_bind_address() -> None:
    assert manager.parse_bind_address("0.0.0.0:9182") == ("0.0.0.0", 9182)
    assert manager.parse_bind_address(":8081") == ("0.0.0.0", 8081)
    assert manager.parse_bind_address("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError):
        manager.parse_bind_address("localhost")
