"""OpenNebula's VM states (STATE) and life-cycle states (LCM_STATE), and what each one
means for the orchestrator: still ``building``, ``active``, ``error`` or ``deleted``.

The numbers are those of OpenNebula's XML-RPC reference (``VirtualMachine::VmState`` and
``VirtualMachine::LcmState``); the LCM state matters only while STATE is ACTIVE.
"""
from __future__ import annotations

from orchestrator.providers.base import ACTIVE, BUILDING, DELETED, ERROR

VM_STATES = ("INIT", "PENDING", "HOLD", "ACTIVE", "STOPPED", "SUSPENDED", "DONE", "FAILED",
             "POWEROFF", "UNDEPLOYED", "CLONING", "CLONING_FAILURE")

LCM_STATES = (
    "LCM_INIT", "PROLOG", "BOOT", "RUNNING", "MIGRATE", "SAVE_STOP", "SAVE_SUSPEND",
    "SAVE_MIGRATE", "PROLOG_MIGRATE", "PROLOG_RESUME", "EPILOG_STOP", "EPILOG", "SHUTDOWN",
    "CANCEL", "FAILURE", "CLEANUP_RESUBMIT", "UNKNOWN", "HOTPLUG", "SHUTDOWN_POWEROFF",
    "BOOT_UNKNOWN", "BOOT_POWEROFF", "BOOT_SUSPENDED", "BOOT_STOPPED", "CLEANUP_DELETE",
    "HOTPLUG_SNAPSHOT", "HOTPLUG_NIC", "HOTPLUG_SAVEAS", "HOTPLUG_SAVEAS_POWEROFF",
    "HOTPLUG_SAVEAS_SUSPENDED", "SHUTDOWN_UNDEPLOY", "EPILOG_UNDEPLOY", "PROLOG_UNDEPLOY",
    "BOOT_UNDEPLOY", "HOTPLUG_PROLOG_POWEROFF", "HOTPLUG_EPILOG_POWEROFF", "BOOT_MIGRATE",
    "BOOT_FAILURE", "BOOT_MIGRATE_FAILURE", "PROLOG_MIGRATE_FAILURE", "PROLOG_FAILURE",
    "EPILOG_FAILURE", "EPILOG_STOP_FAILURE", "EPILOG_UNDEPLOY_FAILURE",
    "PROLOG_MIGRATE_POWEROFF", "PROLOG_MIGRATE_POWEROFF_FAILURE", "PROLOG_MIGRATE_SUSPEND",
    "PROLOG_MIGRATE_SUSPEND_FAILURE", "BOOT_UNDEPLOY_FAILURE", "BOOT_STOPPED_FAILURE",
    "PROLOG_RESUME_FAILURE", "PROLOG_UNDEPLOY_FAILURE", "DISK_SNAPSHOT_POWEROFF",
    "DISK_SNAPSHOT_REVERT_POWEROFF", "DISK_SNAPSHOT_DELETE_POWEROFF", "DISK_SNAPSHOT_SUSPENDED",
    "DISK_SNAPSHOT_REVERT_SUSPENDED", "DISK_SNAPSHOT_DELETE_SUSPENDED", "DISK_SNAPSHOT",
    "DISK_SNAPSHOT_REVERT", "DISK_SNAPSHOT_DELETE", "PROLOG_MIGRATE_UNKNOWN",
    "PROLOG_MIGRATE_UNKNOWN_FAILURE", "DISK_RESIZE", "DISK_RESIZE_POWEROFF",
    "DISK_RESIZE_UNDEPLOYED", "HOTPLUG_NIC_POWEROFF", "HOTPLUG_RESIZE",
    "HOTPLUG_SAVEAS_UNDEPLOYED", "HOTPLUG_SAVEAS_STOPPED", "BACKUP", "BACKUP_POWEROFF",
    "RESTORE")

STATE = {name: number for number, name in enumerate(VM_STATES)}
LCM = {name: number for number, name in enumerate(LCM_STATES)}

#: LCM states of an ACTIVE VM that is up and usable (migrating or hot-plugging included)
_UP = {"RUNNING", "MIGRATE", "HOTPLUG", "HOTPLUG_SNAPSHOT", "HOTPLUG_NIC", "HOTPLUG_SAVEAS",
       "DISK_SNAPSHOT", "DISK_SNAPSHOT_REVERT", "DISK_SNAPSHOT_DELETE", "DISK_RESIZE",
       "HOTPLUG_RESIZE", "BACKUP", "SAVE_MIGRATE", "PROLOG_MIGRATE", "BOOT_MIGRATE"}
#: LCM states on the way to RUNNING
_STARTING = {"LCM_INIT", "PROLOG", "BOOT", "PROLOG_RESUME", "PROLOG_UNDEPLOY", "BOOT_UNKNOWN",
             "BOOT_POWEROFF", "BOOT_SUSPENDED", "BOOT_STOPPED", "BOOT_UNDEPLOY",
             "CLEANUP_RESUBMIT", "PROLOG_MIGRATE_POWEROFF", "PROLOG_MIGRATE_SUSPEND",
             "PROLOG_MIGRATE_UNKNOWN", "HOTPLUG_PROLOG_POWEROFF", "RESTORE"}
#: what to tell the user about the VM states that are not an error of the cloud itself
_HINTS = {
    "HOLD": "is on hold and will not be scheduled (release it with `onevm release {id}`)",
    "STOPPED": "was stopped (`onevm resume {id}` restarts it)",
    "SUSPENDED": "is suspended (`onevm resume {id}` restarts it)",
    "POWEROFF": "is powered off (`onevm resume {id}` starts it again)",
    "UNDEPLOYED": "is undeployed (`onevm resume {id}` deploys it again)",
    "FAILED": "failed",
    "CLONING_FAILURE": "failed: one of its disk images could not be cloned",
}


def state_name(state: int) -> str:
    return VM_STATES[state] if 0 <= state < len(VM_STATES) else f"STATE {state}"


def lcm_name(lcm_state: int) -> str:
    return LCM_STATES[lcm_state] if 0 <= lcm_state < len(LCM_STATES) else f"LCM_STATE {lcm_state}"


def describe(state: int, lcm_state: int) -> str:
    """'ACTIVE/BOOT', 'PENDING', ... as `onevm show` prints them."""
    name = state_name(state)
    return f"{name}/{lcm_name(lcm_state)}" if name == "ACTIVE" else name


def is_failure(state: int, lcm_state: int) -> bool:
    if state_name(state) in ("FAILED", "CLONING_FAILURE"):
        return True
    return state_name(state) == "ACTIVE" and lcm_name(lcm_state).endswith("FAILURE")


def classify(vm_id: int, state: int, lcm_state: int, error: str | None = None
             ) -> tuple[str, str | None]:
    """(status, fault) of a VM: ``fault`` explains every ``error``, with the cloud's own
    ERROR message (USER_TEMPLATE/ERROR) where it gave one."""
    name = state_name(state)
    if name == "DONE":
        return DELETED, None
    if name in ("INIT", "PENDING", "CLONING"):
        return BUILDING, None
    if name != "ACTIVE":
        hint = _HINTS.get(name, f"is in state {name}").format(id=vm_id)
        return ERROR, _fault(vm_id, name, hint, error)
    lcm = lcm_name(lcm_state)
    if lcm in _UP:
        return ACTIVE, None
    if lcm in _STARTING:
        return BUILDING, None
    if lcm.endswith("FAILURE"):
        return ERROR, _fault(vm_id, f"ACTIVE/{lcm}", "failed", error)
    if lcm == "UNKNOWN":
        return ERROR, _fault(vm_id, "ACTIVE/UNKNOWN", "is UNKNOWN: its host stopped reporting "
                             "on it (host down or monitoring failing)", error)
    return ERROR, _fault(vm_id, f"ACTIVE/{lcm}", "is shutting down or being saved", error)


def _fault(vm_id: int, shown: str, what: str, error: str | None) -> str:
    text = f"VM {vm_id} {what} ({shown})"
    return f"{text}: {error}" if error else text
