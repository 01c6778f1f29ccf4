"""The cmdlets the simulated PowerShell implements, one module per area.

Importing this package registers every cmdlet in :mod:`wmco_sandbox.winhost.powershell.registry`:
files and content (``files``, ``move``), services and processes (``services``), registry, OS
identity, features, firewall and reboot (``system``), the pipeline helpers (``util``),
``ConvertTo-Json`` (``json``), the in-box HNS cmdlets (``hns``) and ``Import-Module`` with the
hns.psm1 functions (``modules``).
"""

from wmco_sandbox.winhost.powershell.cmdlets import (
    files,
    hns,
    json,
    modules,
    move,
    services,
    system,
    util,
)
from wmco_sandbox.winhost.powershell.registry import ALIASES, CMDLETS

__all__ = [
    "ALIASES", "CMDLETS", "files", "hns", "json", "modules", "move", "services", "system", "util",
]  # fmt: skip
