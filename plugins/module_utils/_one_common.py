# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at
# any time. Do not use this from other collections or standalone plugins/modules!
"""State tables, the VM return structure, value conversion, waiting, and shared option specs."""

from __future__ import annotations

import time

from ansible_collections.opennebula.flower.plugins.module_utils._one_http import OpenNebulaError

# --------------------------------------------------------------------------------------- states
# OneFlow service states (identical in 6.10 and 7.0); role states differ at 11 (HOLD).
SERVICE_STATES = (
    "PENDING",  # 0
    "DEPLOYING",  # 1
    "RUNNING",  # 2
    "UNDEPLOYING",  # 3
    "WARNING",  # 4
    "DONE",  # 5
    "FAILED_UNDEPLOYING",  # 6
    "FAILED_DEPLOYING",  # 7
    "SCALING",  # 8
    "FAILED_SCALING",  # 9
    "COOLDOWN",  # 10
    "DEPLOYING_NETS",  # 11
    "UNDEPLOYING_NETS",  # 12
    "FAILED_DEPLOYING_NETS",  # 13
    "FAILED_UNDEPLOYING_NETS",  # 14
    "HOLD",  # 15
)
ROLE_STATES = (
    "PENDING",
    "DEPLOYING",
    "RUNNING",
    "UNDEPLOYING",
    "WARNING",
    "DONE",
    "FAILED_UNDEPLOYING",
    "FAILED_DEPLOYING",
    "SCALING",
    "FAILED_SCALING",
    "COOLDOWN",
    "HOLD",  # 11
)
SERVICE_FAILED_STATES = frozenset((6, 7, 9, 13, 14))
SERVICE_DEPLOY_TRANSIENT = frozenset((0, 1, 8, 10, 11))  # on the way to RUNNING
SERVICE_UNDEPLOY_STATES = frozenset((3, 12))

VM_STATES = (
    "INIT",
    "PENDING",
    "HOLD",
    "ACTIVE",
    "STOPPED",
    "SUSPENDED",
    "DONE",
    "FAILED",
    "POWEROFF",
    "UNDEPLOYED",
    "CLONING",
    "CLONING_FAILURE",
)
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
    "RESTORE",
)  # fmt: skip


def to_int(value, default=None):
    if isinstance(value, bool):
        return int(value)
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def state_name(table, value, prefix="STATE"):
    """Name of a numeric state; unknown numbers get a label instead of an IndexError."""
    number = to_int(value)
    if number is None:
        return None
    if 0 <= number < len(table):
        return table[number]
    return f"{prefix}_{number}"


def service_state_name(value):
    return state_name(SERVICE_STATES, value, "SERVICE_STATE")


def role_state_name(value):
    return state_name(ROLE_STATES, value, "ROLE_STATE")


# ------------------------------------------------------------------------------- value handling
def one_value(value):
    """Render a value the way OpenNebula stores it: strings; booleans as YES/NO.

    YAML turns an unquoted ``YES`` into ``True``; mapping it back to ``YES`` keeps
    ``FL_READY: YES`` meaning what the user wrote.
    """
    if isinstance(value, bool):
        return "YES" if value else "NO"
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def template_scalar(value):
    """A TEMPLATE/USER_TEMPLATE leaf as a string: OneGate gives ``{}`` and pyone gives None for
    empty elements; both mean the empty string."""
    if value is None or value == {}:
        return ""
    if isinstance(value, dict) and set(value) == {"#text"}:
        return str(value["#text"])
    return value if isinstance(value, (dict, list)) else str(value)


def as_list(value):
    if value is None or value == {} or value == "":
        return []
    if isinstance(value, list):
        return value
    return [value]


# ------------------------------------------------------------------------------ VM description
NIC_FIELDS = (
    ("NIC_ID", "nic_id"),
    ("NAME", "name"),
    ("NETWORK", "network"),
    ("NETWORK_ID", "network_id"),
    ("MAC", "mac"),
    ("IP", "ip"),
    ("IP6", "ip6"),
    ("IP6_GLOBAL", "ip6_global"),
    ("IP6_ULA", "ip6_ula"),
    ("IP6_SITE", "ip6_site"),
    ("IP6_LINK", "ip6_link"),
    ("EXTERNAL_IP", "external_ip"),
)
IPV6_FIELDS = ("ip6", "ip6_global", "ip6_ula", "ip6_site")  # link-local stays in the NIC only


def _mapping(value):
    """pyone gives OrderedDicts, OneGate/OneFlow plain dicts; anything else is treated as empty.

    xmltodict keeps the whitespace between the children of a pretty-printed element as ``#text``
    (and attributes as ``@name``): not template attributes, so dropped.
    """
    if value is None or not hasattr(value, "items"):
        return {}
    return {k: v for k, v in value.items() if not str(k).startswith(("#", "@"))}


def vm_summary(vm, prefix="FL_"):
    """Return structure of one VM from any source (oned via pyone, OneGate ``GET /vm``, the VM
    hashes of OneGate ``GET /service?extended=true``, or a bare OneFlow ``vm_info``).

    ``vm`` is a dict with the oned names (ID, NAME, STATE, LCM_STATE, TEMPLATE, USER_TEMPLATE).
    """
    vm = _mapping(vm.get("VM") if isinstance(vm, dict) and "VM" in vm else vm)
    template = _mapping(vm.get("TEMPLATE"))
    user_template = {k: template_scalar(v) for k, v in _mapping(vm.get("USER_TEMPLATE")).items()}
    nics = []
    for kind, key in (("nic", "NIC"), ("alias", "NIC_ALIAS")):
        for raw in as_list(template.get(key)):
            raw = _mapping(raw)
            nic = {field: None for _one_key, field in NIC_FIELDS}
            for one_key, field in NIC_FIELDS:
                value = template_scalar(raw.get(one_key))
                if value not in ("", None):
                    nic[field] = value
            nic["alias"] = kind == "alias"
            nics.append(nic)
    ipv4, ipv6 = [], []
    for nic in nics:
        if nic["ip"] and nic["ip"] not in ipv4:
            ipv4.append(nic["ip"])
        for field in IPV6_FIELDS:
            if nic[field] and nic[field] not in ipv6:
                ipv6.append(nic[field])
    state = to_int(vm.get("STATE"))
    lcm_state = to_int(vm.get("LCM_STATE"))
    prefixes = tuple(prefix) if isinstance(prefix, (list, tuple)) else (prefix or "",)
    return {
        "id": to_int(vm.get("ID")),
        "name": template_scalar(vm.get("NAME")) or None,
        "state": state_name(VM_STATES, state, "VM_STATE"),
        "state_id": state,
        "lcm_state": state_name(LCM_STATES, lcm_state, "LCM_STATE"),
        "lcm_state_id": lcm_state,
        "ready": str(user_template.get("READY", "")).upper() == "YES",
        "ips": ipv4 + ipv6,
        "ipv4": ipv4,
        "ipv6": ipv6,
        "nics": nics,
        "published": {k: v for k, v in user_template.items() if k.startswith(prefixes)},
        "user_template": user_template,
    }


# ---------------------------------------------------------------------------------- conditions
def normalize_expectations(wait_for):
    """``wait_for`` as given by a user -> {KEY: expected string or None (= just present)}.

    Accepts a dict (key -> value), a list of keys, or one key. Keys are upper-cased the way oned
    stores attribute names.
    """
    if wait_for is None:
        return {}
    if isinstance(wait_for, str):
        wait_for = [wait_for]
    if isinstance(wait_for, dict):
        return {str(k).upper(): (None if v is None else one_value(v)) for k, v in wait_for.items()}
    if isinstance(wait_for, (list, tuple)):
        out = {}
        for item in wait_for:
            if isinstance(item, dict):
                out.update(normalize_expectations(item))
            else:
                out[str(item).upper()] = None
        return out
    raise OpenNebulaError(f"wait_for must be a dict, a list of keys or a key, not {wait_for!r}")


def unmet_expectations(user_template, expectations):
    """Keys of ``expectations`` that the USER_TEMPLATE does not satisfy (with what is there)."""
    unmet = {}
    for key, expected in expectations.items():
        present = key in user_template and template_scalar(user_template[key]) != ""
        actual = template_scalar(user_template[key]) if key in user_template else None
        if expected is None:
            if not present:
                unmet[key] = actual
        elif actual != expected:
            unmet[key] = actual
    return unmet


# ------------------------------------------------------------------------------------ waiting
class Backoff:
    """Delays between polls: ``fixed`` (interval) or ``exponential`` (initial * factor^n, capped).

    The seeds' edge SuperNodes poll OneGate with exponential 10 s doubling up to 300 s.
    """

    def __init__(self, policy="fixed", interval=5.0, initial=10.0, factor=2.0, cap=300.0):
        if policy not in ("fixed", "exponential"):
            raise OpenNebulaError(f"unknown backoff policy {policy!r}")
        for name, value in (("interval", interval), ("initial", initial), ("cap", cap)):
            if value is None or float(value) < 0:
                raise OpenNebulaError(f"backoff {name} must be >= 0")
        if policy == "exponential" and float(factor) < 1:
            raise OpenNebulaError("backoff factor must be >= 1")
        self.policy = policy
        self.interval = float(interval)
        self.initial = float(initial)
        self.factor = float(factor)
        self.cap = float(cap)

    @classmethod
    def from_params(cls, params):
        given = {k: v for k, v in (params or {}).items() if v is not None}
        keys = ("policy", "interval", "initial", "factor", "cap")
        return cls(**{k: given[k] for k in keys if k in given})

    def delays(self):
        if self.policy == "fixed":
            while True:
                yield self.interval
        delay = self.initial
        while True:
            yield min(delay, self.cap)
            delay = min(delay * self.factor, self.cap)


class WaitTimeout(OpenNebulaError):
    def __init__(self, message, last=None, attempts=0, elapsed=0.0):
        super().__init__(message)
        self.last = last
        self.attempts = attempts
        self.elapsed = elapsed


def wait_until(check, timeout, backoff, sleep=time.sleep, clock=time.monotonic, describe=None):
    """Call ``check()`` until it returns ``(True, value)``; sleep per ``backoff`` in between.

    ``check`` returns ``(done, value)``. Raises :class:`WaitTimeout` (carrying the last value)
    when ``timeout`` seconds pass (``None``: never). The last sleep is shortened so the deadline
    is kept, and one last check runs at the deadline. Returns ``(value, attempts, elapsed)``.
    """
    start = clock()
    deadline = float("inf") if timeout is None else start + max(0.0, float(timeout))
    delays = backoff.delays()
    attempts = 0
    last = None
    while True:
        attempts += 1
        done, last = check()
        now = clock()
        if done:
            return last, attempts, now - start
        remaining = deadline - now
        if remaining <= 0:
            what = describe(last) if describe else repr(last)
            raise WaitTimeout(
                f"timed out after {now - start:.0f}s ({attempts} checks): {what}",
                last=last,
                attempts=attempts,
                elapsed=now - start,
            )
        sleep(min(next(delays), remaining))


# ----------------------------------------------------------------------------- option specs
def connection_argument_spec():
    """Options every module of the ``opennebula.flower.opennebula`` action group accepts, so one
    ``module_defaults`` entry for the group can hold them (see the doc fragment)."""
    return {
        "oneflow_url": {"type": "str"},
        "oneflow_username": {"type": "str"},
        "oneflow_password": {"type": "str", "no_log": True},
        "one_url": {"type": "str"},
        "one_username": {"type": "str"},
        "one_password": {"type": "str", "no_log": True},
        "one_auth_file": {"type": "path", "no_log": False},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "request_timeout": {"type": "int", "default": 30},
        "retries": {"type": "int", "default": 3},
    }


def backoff_argument_spec():
    return {
        "type": "dict",
        "options": {
            "policy": {"type": "str", "choices": ["fixed", "exponential"], "default": "fixed"},
            "interval": {"type": "float", "default": 5},
            "initial": {"type": "float", "default": 10},
            "factor": {"type": "float", "default": 2},
            "cap": {"type": "float", "default": 300},
        },
    }
