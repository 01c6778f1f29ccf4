"""The cmdlets the simulated PowerShell implements, one module per area.

Importing this package registers every cmdlet in :mod:`wmco_sandbox.winhost.powershell.registry`:
files and content (``files``), services and processes (``services``), registry, OS identity,
features, firewall and reboot (``system``), and the pipeline helpers (``util``).
"""

from wmco_sandbox.winhost.powershell.cmdlets import files, services, system, util
from wmco_sandbox.winhost.powershell.registry import ALIASES, CMDLETS

__all__ = ["ALIASES", "CMDLETS", "files", "services", "system", "util"]
