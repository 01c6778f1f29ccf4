"""What the operator leaves on a host so that it survives a reboot on its own.

Every managed service is automatic with its dependencies declared (the SCM's boot order), and
the sourceVip address is reserved in host-local's state, so that a pod re-created after a reboot
cannot take it before kube-proxy re-creates its endpoint.
"""

from __future__ import annotations

import pytest

from wmco import names, settings
from wmco.nodeconfig import network
from wmco.windows import answers, commands, services


def test_the_source_vip_is_reserved_where_host_local_looks() -> None:
    endpoint = answers.HnsEndpoint(
        id="0B1C", name=names.VIP_ENDPOINT, virtual_network="AAAA", ip_address="10.132.0.2"
    )
    content = network.ipam_reservation(endpoint)
    assert content.destination == (
        "C:\\var\\lib\\cni\\networks\\OVNKubernetesHybridOverlayNetwork\\10.132.0.2"
    )
    assert content.data == b"VIPEndpoint\r\neth0"  # host-local's own record: id CRLF interface


def test_an_endpoint_without_an_address_reserves_nothing() -> None:
    with pytest.raises(ValueError, match="VIPEndpoint has no IP address"):
        network.ipam_reservation(answers.HnsEndpoint(id="0B1C", name=names.VIP_ENDPOINT))


@pytest.mark.parametrize(
    "profile", [settings.NetworkProfile.OVN_HYBRID, settings.NetworkProfile.HOSTPROCESS]
)
def test_every_service_starts_at_boot_after_its_dependencies(
    profile: settings.NetworkProfile,
) -> None:
    specs = services.node_services(
        services.NodeServiceOptions(
            network_profile=profile, node_name="win-a", api_server_url="https://api:6443"
        )
    )
    by_name = {spec.name: spec for spec in specs}
    # The boot chain the SCM follows: each dependency is itself a declared (automatic) service.
    for spec in specs:
        assert set(spec.depends_on) <= set(by_name), spec.name
        create = commands.create_service(spec.name, spec.command_line, spec.depends_on)
        assert "start= auto" in create
    order = services.start_order(specs)
    expected = ["containerd", "kubelet"]
    if profile is settings.NetworkProfile.OVN_HYBRID:
        expected += ["hybrid-overlay-node", "kube-proxy"]
    assert [name for name in order if name != services.WINDOWS_EXPORTER] == expected
    assert by_name[services.KUBELET].depends_on == (services.CONTAINERD,)
