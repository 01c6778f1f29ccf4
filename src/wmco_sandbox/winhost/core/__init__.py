"""The machine underneath every shell: disk, registry, services, features, faults.

Nothing here knows SSH, PowerShell or Kubernetes. The shells act on a
:class:`~wmco_sandbox.winhost.core.machine.Machine`; the programs the service control manager
runs (kubelet, containerd, ...) plug in through :mod:`~wmco_sandbox.winhost.core.processes`.
"""
