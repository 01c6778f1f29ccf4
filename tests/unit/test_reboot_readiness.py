"""What the operator leaves on a host so that it survives a reboot on its own.

Every managed service is automatic with its dependencies declared (the SCM's boot order), and
the sourceVip address is reserved in host-local's state, so that a pod re-created after a reboot
cannot take it before kube-proxy re-creates its endpoint.
"""

from __future__ import annotations

import pytest

from wmco import names, settings
from wmco.nodeconfig import network
from wmco.windows import answers, commands, services, transfer


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


OVERLAY = answers.HnsNetwork(
    id="AAAA-1",
    name=names.HYBRID_OVERLAY_NETWORK,
    type="Overlay",
    address_prefix="10.132.0.0/24",
    management_ip="10.0.0.5",
)


def proxy_config(endpoint: answers.HnsEndpoint) -> transfer.Content:
    return network.kube_proxy_content("win-a", "10.132.0.0/24", endpoint, debug=False)


def test_kube_proxys_own_source_vip_endpoint_is_adopted_after_a_reboot() -> None:
    mine = answers.HnsEndpoint(
        id="E1", name="E1", virtual_network="aaaa-1", ip_address="10.132.0.2"
    )
    pod = answers.HnsEndpoint(
        id="E2", name="c0ffee_OVNKubernetesHybridOverlayNetwork", virtual_network="AAAA-1",
        ip_address="10.132.0.7",
    )  # fmt: skip
    configured = proxy_config(mine).sha256  # the host's kube-proxy.conf names 10.132.0.2
    assert network.adoptable_source_vip((pod, mine), OVERLAY, configured, proxy_config) == mine
    # Nothing to adopt: no kube-proxy.conf yet, another address configured, another network.
    assert network.adoptable_source_vip((pod, mine), OVERLAY, None, proxy_config) is None
    other = proxy_config(pod).sha256
    assert network.adoptable_source_vip((mine,), OVERLAY, other, proxy_config) is None
    elsewhere = answers.HnsEndpoint(
        id="E3", name="", virtual_network="BBBB", ip_address="10.132.0.2"
    )
    assert network.adoptable_source_vip((elsewhere,), OVERLAY, configured, proxy_config) is None


def test_an_endpoint_without_a_name_is_listed() -> None:
    listed = answers.parse_hns_endpoints(
        '[{"ID":"E1","Name":"","VirtualNetwork":"AAAA-1","IPAddress":"10.132.0.2"},'
        '{"ID":"E2","VirtualNetwork":"AAAA-1","IPAddress":"10.132.0.3"}]'
    )
    assert [(e.id, e.name) for e in listed] == [("E1", ""), ("E2", "")]
