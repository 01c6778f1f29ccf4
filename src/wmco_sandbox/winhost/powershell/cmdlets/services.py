"""Service and process cmdlets: Get/Start/Stop/Restart/Set-Service and Get-Process.

They act on the host's service control manager with the cmdlets' own error records (which
differ from sc.exe's Win32 codes): the user data uses Set-Service/Start-Service/Restart-Service
and the operator uses Get-Process to wait for a process to exit.
"""

from __future__ import annotations

import contextlib

from wmco_sandbox.winhost.core.scm import ScmError, Service, State
from wmco_sandbox.winhost.powershell.binding import Invocation, P
from wmco_sandbox.winhost.powershell.errors import ErrorRecord
from wmco_sandbox.winhost.powershell.registry import fq, register, strs
from wmco_sandbox.winhost.powershell.values import PSObject, to_str

__all__: list[str] = []


# -- services -----------------------------------------------------------------------------------
def _service_object(svc: Service) -> PSObject:
    status = {State.RUNNING: "Running", State.STOPPED: "Stopped"}.get(svc.state, "StartPending")
    return PSObject(
        "System.ServiceProcess.ServiceController",
        {"Status": status, "Name": svc.name, "DisplayName": svc.display_name},
        widths=[8, 18, 0],
    )


def _services(inv: Invocation) -> list[Service]:
    scm = inv.session.machine.scm
    out = []
    for name in strs(inv, "Name"):
        svc = scm.get(to_str(name))
        if svc is None:
            inv.error(ErrorRecord(
                f"Cannot find any service with service name '{name}'.",
                fq(inv, "NoServiceFoundForGivenName"), "ObjectNotFound", target=to_str(name),
                target_type="String", reason="ServiceCommandException",
            ))  # fmt: skip
            continue
        out.append(svc)
    return out


_SVC_PARAMS = [
    P("Name", "strings", pos=0, aliases=("servicename",)),
    P("DisplayName", "strings"),
    P("InputObject", "object"),
    P("PassThru", "switch"),
]


@register(
    "Get-Service", [*_SVC_PARAMS, P("DependentServices", "switch"), P("RequiredServices", "switch")]
)
async def get_service(inv: Invocation) -> list[object]:
    """Get-Service."""
    if "Name" not in inv.bound:
        return [_service_object(s) for s in inv.session.machine.scm.services.values()]
    return [_service_object(s) for s in _services(inv)]


def _cannot_start(inv: Invocation, svc: Service) -> ErrorRecord:
    return ErrorRecord(
        f"Service '{svc.display_name} ({svc.name})' cannot be started due to the following error: "
        f"Cannot start service {svc.name} on computer '.'.", fq(inv, "CouldNotStartService"),
        "OpenError", target="System.ServiceProcess.ServiceController", target_type="ServiceController",
        reason="ServiceCommandException",
    )  # fmt: skip


async def _start(inv: Invocation, svc: Service) -> None:
    try:
        await inv.session.machine.scm.start(svc.name)
    except ScmError as exc:
        if exc.code != 1056:
            inv.error(_cannot_start(inv, svc))


async def _stop(inv: Invocation, svc: Service) -> bool:
    scm = inv.session.machine.scm
    running = [d for d in scm.dependents(svc.name) if d.state is not State.STOPPED]
    if running and not inv.arg("Force"):
        inv.error(ErrorRecord(
            f"Cannot stop service '{svc.display_name} ({svc.name})' because it has dependent "
            "services. It can only be stopped if the Force flag is set.",
            fq(inv, "ServiceHasDependentServices"), "InvalidOperation",
            target="System.ServiceProcess.ServiceController", target_type="ServiceController",
            reason="ServiceCommandException",
        ))  # fmt: skip
        return False
    with contextlib.suppress(ScmError):
        await scm.stop(svc.name, force=True)
    return True


@register("Start-Service", _SVC_PARAMS)
async def start_service(inv: Invocation) -> list[object]:
    """Start-Service (no-op when running)."""
    for svc in _services(inv):
        await _start(inv, svc)
    return []


@register("Stop-Service", [*_SVC_PARAMS, P("Force", "switch"), P("NoWait", "switch")])
async def stop_service(inv: Invocation) -> list[object]:
    """Stop-Service (no-op when stopped; dependents need -Force)."""
    for svc in _services(inv):
        if svc.state is not State.STOPPED:
            await _stop(inv, svc)
    return []


@register("Restart-Service", [*_SVC_PARAMS, P("Force", "switch")])
async def restart_service(inv: Invocation) -> list[object]:
    """Restart-Service: stop (if running) then start."""
    for svc in _services(inv):
        if svc.state is not State.STOPPED and not await _stop(inv, svc):
            continue
        await _start(inv, svc)
    return []


@register("Set-Service", [
    P("Name", pos=0, aliases=("servicename", "sn")), P("DisplayName"), P("Description"),
    P("StartupType", aliases=("startmode", "sm", "st"), values=("Automatic", "Manual", "Disabled", "Boot", "System"),
      enum_type="System.ServiceProcess.ServiceStartMode"),
    P("Status", values=("Running", "Stopped", "Paused")), P("PassThru", "switch"), P("InputObject", "object"),
])  # fmt: skip
async def set_service(inv: Invocation) -> list[object]:
    """Set-Service -StartupType / -Status."""
    inv.bound["Name"] = [inv.arg("Name")]
    for svc in _services(inv):
        mode = inv.arg("StartupType")
        if mode is not None:
            svc.start_type = {"Automatic": "auto", "Manual": "demand", "Disabled": "disabled",
                              "Boot": "boot", "System": "system"}[to_str(mode)]  # fmt: skip
        if inv.arg("Description") is not None:
            svc.description = to_str(inv.arg("Description"))
        if inv.arg("Status") == "Running" and svc.state is State.STOPPED:
            await _start(inv, svc)
    return []


# -- processes ----------------------------------------------------------------------------------
_SYSTEM = [("Idle", 0), ("System", 4), ("smss", 312), ("csrss", 420), ("wininit", 496),
           ("services", 612), ("lsass", 628), ("svchost", 768), ("svchost", 812)]  # fmt: skip


def _process_render(objs: list[PSObject]) -> str:
    head = (
        "\r\nHandles  NPM(K)    PM(K)      WS(K)     CPU(s)     Id  SI ProcessName\r\n"
        "-------  ------    -----      -----     ------     --  -- -----------\r\n"
    )
    rows = [
        f"{o.get('Handles'):>7} {11:>7} {2048:>8} {8192:>10} {0.05:>10.2f} {o.get('Id'):>6} {0:>3} {o.get('Name')}\r\n"
        for o in objs
    ]
    return head + "".join(rows) + "\r\n\r\n"


@register("Get-Process", [P("Name", "strings", pos=0, aliases=("processname",)), P("Id", "object")])
async def get_process(inv: Invocation) -> list[object]:
    """Get-Process: system processes, this shell, and running services' images."""
    import fnmatch

    machine = inv.session.machine
    procs = [*_SYSTEM, ("powershell", 4242)]
    procs += [(svc.image_name, svc.pid) for svc in machine.scm.processes()]
    objs = [
        PSObject(
            "System.Diagnostics.Process",
            {"Name": n, "Id": pid, "Handles": 100 + pid % 400, "ProcessName": n},
            render=_process_render,
        )
        for n, pid in sorted(procs, key=lambda p: p[0].lower())
    ]
    if "Name" not in inv.bound:
        return list(objs)
    out: list[object] = []
    for want in strs(inv, "Name"):
        hits = [
            o
            for o in objs
            if fnmatch.fnmatchcase(to_str(o.get("Name")).lower(), to_str(want).lower())
        ]
        if not hits and not any(c in to_str(want) for c in "*?["):
            inv.error(ErrorRecord(
                f'Cannot find a process with the name "{want}". Verify the process name and call '
                "the cmdlet again.", fq(inv, "NoProcessFoundForGivenName"), "ObjectNotFound",
                target=to_str(want), target_type="String", reason="ProcessCommandException",
            ))  # fmt: skip
        out.extend(hits)
    return out
