"""The simulated OpenShift Machine API (``machine.openshift.io/v1beta1``) of the sandbox.

Real CRDs on the real API server, and controllers that behave like OpenShift's
machine-api-operator: the MachineSet controller (:mod:`.machineset`), the machine controller with a
simulated cloud actuator (:mod:`.machine`, :mod:`.cloud`), drain (:mod:`.drain`) and nodelink
(:mod:`.nodelink`). Behaviour and names follow ``shared/reference/machine-api.md``.

Entry point: :class:`MachineAPI`. The cloud is pluggable (:class:`HostProvider`): the sandbox boots
simulated Windows hosts, tests use :class:`InMemoryHostProvider`.
"""

from wmco_sandbox.machineapi.api import MachineAPI
from wmco_sandbox.machineapi.cloud import (
    BootedHost,
    HostProvider,
    InMemoryHostProvider,
    windows_build,
)
from wmco_sandbox.machineapi.crds import install_crds
from wmco_sandbox.machineapi.resources import Machine, MachineSet

__all__ = [
    "BootedHost",
    "HostProvider",
    "InMemoryHostProvider",
    "Machine",
    "MachineAPI",
    "MachineSet",
    "install_crds",
    "windows_build",
]
