"""The simulated Windows kubelet (see :mod:`wmco_sandbox.winhost.kubelet.process`)."""

from wmco_sandbox.winhost.kubelet.process import (
    KubeletPhase,
    SimulatedKubelet,
    factory_with,
    kubelet_factory,
)

__all__ = ["KubeletPhase", "SimulatedKubelet", "factory_with", "kubelet_factory"]
