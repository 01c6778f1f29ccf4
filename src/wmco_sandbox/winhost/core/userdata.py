"""User data as a cloud agent (EC2Launch-style) runs it at boot.

Only the ``<powershell>...</powershell>`` part is run, through the same PowerShell interpreter as
SSH commands, as SYSTEM with a console. ``<persist>true</persist>`` makes it run at every boot.
The host learns nothing else from user data: keys, firewall, OpenSSH and the default shell exist
only if the script created them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["UserData", "parse_user_data"]

_PS = re.compile(r"<powershell>(.*?)</powershell>", re.DOTALL | re.IGNORECASE)
_PERSIST = re.compile(r"<persist>\s*true\s*</persist>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class UserData:
    """The runnable part of user data.

    Attributes:
        script: The PowerShell script (None when there is no ``<powershell>`` block).
        persist: Run at every boot, not only the first.
    """

    script: str | None
    persist: bool


def parse_user_data(text: str | None) -> UserData:
    """Extract the PowerShell script and the persist flag."""
    if not text:
        return UserData(None, False)
    m = _PS.search(text)
    return UserData(m.group(1).strip("\r\n") if m else None, bool(_PERSIST.search(text)))
