"""The cmdlets the simulated PowerShell implements, one module per area.

Importing this package registers every cmdlet in :mod:`wmco_sandbox.winhost.powershell.registry`:
files and content (``files``, ``move``), services and processes (``services``), registry, OS
identity, capabilities, firewall and reboot (``system``), Windows features as DISM and Server
Manager show them (``features``), the pipeline helpers (``util``), the read-only host checks of
``wmco preflight`` (``hostchecks``: clock, free space, DNS, firewall port filters),
``ConvertTo-Json`` (``json``), the in-box HNS cmdlets (``hns``) and ``Import-Module`` with the
hns.psm1 functions (``modules``).
"""

from wmco_sandbox.winhost.powershell.cmdlets import (
    features,
    files,
    hns,
    hostchecks,
    json,
    modules,
    move,
    services,
    system,
    util,
)
from wmco_sandbox.winhost.powershell.registry import ALIASES, CMDLETS

__all__ = [
    "ALIASES", "CMDLETS", "features", "files", "hns", "hostchecks", "json", "modules", "move", "services", "system", "util",
]  # fmt: skip
