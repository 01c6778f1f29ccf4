"""A simulated machine with containerd as the operator installs it (issue 8 contract §1, §4).

Shared by the containerd tests (``tests/winhost``) and the kubelet tests (``tests/integration``):
the containerd binaries and configuration, the CNI plugin binaries, the ovn-hybrid CNI config
and the HNS overlay network hybrid-overlay-node would create, made directly with ``machine.hns``.
"""

from __future__ import annotations

import json
import secrets

from wmco_sandbox.winhost.containerd import ContainerdFactory
from wmco_sandbox.winhost.core.disk import VirtualDisk
from wmco_sandbox.winhost.core.faults import Faults
from wmco_sandbox.winhost.core.machine import IMAGES, Machine
from wmco_sandbox.winhost.core.processes import HostFacts
from wmco_sandbox.winhost.network.hns import HnsNetwork, HnsSubnet

CONF = "C:\\k\\containerd\\containerd_conf.toml"
LOG_FILE = "C:\\var\\log\\containerd\\containerd.log"
BIN_PATH = (
    f"C:\\k\\containerd\\containerd.exe --config {CONF} --log-file {LOG_FILE} "
    "--run-service --log-level info"
)
CNI_CONF = "C:\\k\\cni\\config\\cni.conf"
OVERLAY = "OVNKubernetesHybridOverlayNetwork"
NODE_SUBNET = "10.132.0.0/24"
SERVICE_CIDR = "172.30.0.0/16"

WMCO_TOML = b"""version = 2
root = "C:\\\\ProgramData\\\\containerd\\\\root"
state = "C:\\\\ProgramData\\\\containerd\\\\state"

[grpc]
  address = "\\\\\\\\.\\\\pipe\\\\containerd-containerd"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "mcr.microsoft.com/oss/kubernetes/pause:3.10.2"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "windows"
  default_runtime_name = "runhcs-wcow-process"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runhcs-wcow-process]
  runtime_type = "io.containerd.runhcs.v1"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "C:\\\\k\\\\cni"
  conf_dir = "C:\\\\k\\\\cni\\\\config"
  max_conf_num = 1
  conf_template = ""
  ip_pref = "ipv4"

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "C:\\\\k\\\\containerd\\\\registries"
"""


def new_facts(address: str | None = None, image: str = "2022") -> HostFacts:
    win = IMAGES[image]
    suffix = secrets.token_hex(3).upper()
    return HostFacts(
        hostname=f"WIN-{suffix}",
        address=address
        or f"10.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 2}",
        windows_build=f"10.0.{win.build}",
        os_image=win.product_name,
        kernel_version=f"10.0.{win.build}.{win.ubr}",
    )


def new_machine(
    facts: HostFacts | None = None,
    *,
    image: str = "2022",
    containerd_version: str | None = None,
    config: bytes | None = WMCO_TOML,
) -> Machine:
    """A machine with containerd's and the CNI plugins' files, containerd's factory registered."""
    machine = Machine(facts or new_facts(image=image), IMAGES[image], Faults(), VirtualDisk())
    machine.program_factories["containerd"] = ContainerdFactory(machine.container_behaviours)
    header = b"MZ"
    if containerd_version:
        header += f" WMCO-FAKE-BINARY containerd.exe {containerd_version}+test\n".encode()
    machine.disk.mkdir("C:\\k\\containerd")
    machine.disk.write_file("C:\\k\\containerd\\containerd.exe", header)
    machine.disk.write_file("C:\\k\\containerd\\containerd-shim-runhcs-v1.exe", b"MZ")
    machine.disk.mkdir("C:\\k\\cni\\config")
    for plugin in ("win-overlay", "win-bridge", "host-local"):
        machine.disk.write_file(f"C:\\k\\cni\\{plugin}.exe", b"MZ")
    if config is not None:
        machine.disk.write_file(CONF, config)
    return machine


async def start_containerd(machine: Machine) -> None:
    """Create (once) and start the containerd service with the operator's command line."""
    if machine.scm.get("containerd") is None:
        machine.scm.create("containerd", BIN_PATH, start_type="auto")
    await machine.scm.start("containerd")


def make_overlay(machine: Machine, subnet: str = NODE_SUBNET) -> HnsNetwork:
    """The overlay network hybrid-overlay-node creates for the node subnet."""
    gateway = subnet.rsplit(".", 1)[0] + ".1"
    return machine.hns.create_network(
        OVERLAY,
        "Overlay",
        [HnsSubnet(subnet, gateway, 4097)],
        management_ip=machine.facts.address,
        dr_mac_address="0E-2A-0A-84-00-01",
        persistent=False,
        created_by="test",
    )


def cni_conf(subnet: str = NODE_SUBNET, management_ip: str = "10.0.0.5") -> bytes:
    """The ovn-hybrid CNI configuration (``windows-networking.md`` §1.3)."""
    return json.dumps(
        {
            "cniVersion": "0.2.0",
            "name": OVERLAY,
            "type": "win-overlay",
            "apiVersion": 2,
            "capabilities": {"portMappings": True, "dns": True},
            "ipam": {"type": "host-local", "subnet": subnet},
            "policies": [
                {
                    "name": "EndpointPolicy",
                    "value": {
                        "type": "OutBoundNAT",
                        "settings": {
                            "exceptionList": [SERVICE_CIDR],
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
                            "destinationPrefix": SERVICE_CIDR,
                            "needEncap": True,
                        },
                    },
                },
                {
                    "name": "EndpointPolicy",
                    "value": {
                        "type": "ProviderAddress",
                        "settings": {"providerAddress": management_ip},
                    },
                },
            ],
        },
        indent=2,
    ).encode()


def configure_network(machine: Machine) -> HnsNetwork:
    """What the ovn-hybrid profile leaves on a host: the overlay network and ``cni.conf``."""
    network = make_overlay(machine)
    machine.disk.write_file(CNI_CONF, cni_conf(management_ip=machine.facts.address))
    return network
