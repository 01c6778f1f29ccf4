"""The simulated containerd: its configuration, its CRI (status, pod sandboxes) and CNI loading.

See :mod:`wmco_sandbox.winhost.containerd.process` for the program and
:mod:`wmco_sandbox.winhost.containerd.sandboxes` for the CRI it offers the kubelet.
"""

from wmco_sandbox.winhost.containerd.process import (
    DEFAULT_VERSION,
    ContainerdFactory,
    SimulatedContainerd,
)

__all__ = ["DEFAULT_VERSION", "ContainerdFactory", "SimulatedContainerd"]
