"""The generated configuration files, parsed back: containerd (TOML), CNI and kube-proxy (JSON).

Expected values are contract §4 and windows-networking.md §1.3 / §1.5, written out literally.
"""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from wmco import settings
from wmco.windows import configfiles

OVN = settings.NetworkProfile.OVN_HYBRID
HOSTPROCESS = settings.NetworkProfile.HOSTPROCESS
CRI = "io.containerd.grpc.v1.cri"


def test_containerd_config_for_ovn_hybrid_is_the_contract() -> None:
    text = configfiles.containerd_config(OVN, "mcr.microsoft.com/oss/kubernetes/pause:3.10.2")
    assert tomllib.loads(text) == {
        "version": 2,
        "root": "C:\\ProgramData\\containerd\\root",
        "state": "C:\\ProgramData\\containerd\\state",
        "grpc": {"address": "\\\\.\\pipe\\containerd-containerd"},
        "plugins": {
            CRI: {
                "sandbox_image": "mcr.microsoft.com/oss/kubernetes/pause:3.10.2",
                "containerd": {
                    "snapshotter": "windows",
                    "default_runtime_name": "runhcs-wcow-process",
                    "runtimes": {
                        "runhcs-wcow-process": {"runtime_type": "io.containerd.runhcs.v1"}
                    },
                },
                "cni": {
                    "bin_dir": "C:\\k\\cni",
                    "conf_dir": "C:\\k\\cni\\config",
                    "max_conf_num": 1,
                    "conf_template": "",
                    "ip_pref": "ipv4",
                },
                "registry": {"config_path": "C:\\k\\containerd\\registries"},
            }
        },
    }


def test_containerd_config_for_hostprocess_uses_the_daemonsets_dirs() -> None:
    cni = tomllib.loads(configfiles.containerd_config(HOSTPROCESS, "p:1"))["plugins"][CRI]["cni"]
    assert (cni["bin_dir"], cni["conf_dir"]) == ("C:\\opt\\cni\\bin", "C:\\etc\\cni\\net.d")


def test_containerd_config_escapes_and_refuses() -> None:
    text = configfiles.containerd_config(OVN, 'registry.local/pause:"x"\\y')
    assert tomllib.loads(text)["plugins"][CRI]["sandbox_image"] == 'registry.local/pause:"x"\\y'
    with pytest.raises(ValueError, match="control"):
        configfiles.containerd_config(OVN, "pause\n[evil]")
    with pytest.raises(ValueError, match="resolved"):
        configfiles.containerd_config(settings.NetworkProfile.AUTO, "p:1")


@pytest.mark.parametrize("build", [17763, 20348, 26100, 30000])
def test_pause_image_for_every_build_serves_it(build: int) -> None:
    image = configfiles.pause_image(build)
    assert image == "mcr.microsoft.com/oss/kubernetes/pause:3.10.2"
    assert configfiles.pause_serves_build(image, build) is True


def test_pause_override_and_old_pause_on_2025() -> None:
    assert configfiles.pause_image(26100, "mirror.local/pause:3.9") == "mirror.local/pause:3.9"
    old = "mcr.microsoft.com/oss/kubernetes/pause:3.9"
    assert configfiles.pause_serves_build(old, 26100) is False
    assert configfiles.pause_serves_build(old, 20348) is True
    assert (
        configfiles.pause_serves_build("mcr.microsoft.com/oss/kubernetes/pause:3.10.1", 26100)
        is False
    )
    assert configfiles.pause_serves_build("mirror.local/pause:3.9", 26100) is None


def test_cni_config_is_windows_networking_1_3() -> None:
    text = configfiles.cni_config(
        configfiles.OverlayNetwork("10.132.0.0/24", "10.0.0.5"), "172.30.0.0/16"
    )
    assert json.loads(text) == {
        "cniVersion": "0.2.0",
        "name": "OVNKubernetesHybridOverlayNetwork",
        "type": "win-overlay",
        "apiVersion": 2,
        "capabilities": {"portMappings": True, "dns": True},
        "ipam": {"type": "host-local", "subnet": "10.132.0.0/24"},
        "policies": [
            {
                "name": "EndpointPolicy",
                "value": {
                    "type": "OutBoundNAT",
                    "settings": {
                        "exceptionList": ["172.30.0.0/16"],
                        "destinationPrefix": "",
                        "needEncap": False,
                    },
                },
            },
            {
                "name": "EndpointPolicy",
                "value": {
                    "type": "SDNRoute",
                    "settings": {
                        "exceptionList": [],
                        "destinationPrefix": "172.30.0.0/16",
                        "needEncap": True,
                    },
                },
            },
            {
                "name": "EndpointPolicy",
                "value": {"type": "ProviderAddress", "settings": {"providerAddress": "10.0.0.5"}},
            },
        ],
    }


@pytest.mark.parametrize(
    ("prefix", "management", "services"),
    [("nope", "10.0.0.5", "172.30.0.0/16"), ("10.132.0.0/24", "host", "172.30.0.0/16")],
)
def test_cni_config_refuses_what_is_not_an_address(
    prefix: str, management: str, services: str
) -> None:
    with pytest.raises(ValueError):
        configfiles.cni_config(configfiles.OverlayNetwork(prefix, management), services)


def test_kube_proxy_config_is_the_contract() -> None:
    text = configfiles.kube_proxy_config(
        configfiles.KubeProxyInputs("win-1", "10.132.0.0/24", "10.132.0.2")
    )
    assert "\n" not in text
    assert json.loads(text) == {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": "C:\\k\\kubeconfig"},
        "clusterCIDR": "10.132.0.0/24",
        "featureGates": {"WinDSR": True, "WinOverlay": True},
        "hostnameOverride": "win-1",
        "mode": "kernelspace",
        "winkernel": {
            "enableDSR": True,
            "networkName": "OVNKubernetesHybridOverlayNetwork",
            "sourceVip": "10.132.0.2",
        },
        "logging": {"verbosity": 2},
    }
    debug = configfiles.KubeProxyInputs("win-1", "10.132.0.0/24", "10.132.0.2", debug=True)
    assert json.loads(configfiles.kube_proxy_config(debug))["logging"] == {"verbosity": 4}


def test_kube_proxy_config_refuses_a_bad_vip() -> None:
    with pytest.raises(ValueError):
        configfiles.kube_proxy_config(configfiles.KubeProxyInputs("w", "10.132.0.0/24", "vip"))


def test_hns_module_ships_as_package_data_with_exactly_the_three_functions() -> None:
    text = configfiles.hns_module().decode("utf-8")
    declared = re.findall(r"(?im)^\s*function\s+([\w-]+)", text)
    assert declared == ["Invoke-HNSRequest", "New-HNSEndpoint", "Attach-HNSHostEndpoint"]
    # No other "function <Name>" anywhere (comments included): the simulated host reads them.
    assert len(re.findall(r"(?i)\bfunction\s+[\w-]+", text)) == 3
    assert '[DllImport("vmcompute.dll")]' in text
    assert "public static extern void HNSCall(" in text
    assert "-Method POST -Type endpoints -Data $data" in text
    assert "-Id $EndpointID -Action attach" in text
    assert "SystemType    = 'Host'" in text and "CompartmentId = $CompartmentID" in text
    assert "Write-Error $reply.Error" in text and "return $reply.Output" in text
