"""wmco: a Windows Machine Config Operator that turns Windows Server VMs into Kubernetes nodes."""

__version__ = "0.1.0"
