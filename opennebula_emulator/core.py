"""What oned does: authentication, authorization, VM creation from templates, VM actions and
state transitions, images, documents. The XML-RPC layer (:mod:`.oned`), OneFlow and OneGate all
call in here with the lock of the :class:`~.state.Store` held.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import template_syntax as ts
from .state import (
    ACTIVE,
    DATASTORES,
    DONE,
    HOLD,
    IMAGE_STATE,
    IMAGE_STATE_NAMES,
    IMAGE_TYPES,
    LCM,
    PENDING,
    POWEROFF,
    STOPPED,
    SUSPENDED,
    UNDEPLOYED,
    Document,
    History,
    Image,
    Network,
    Permissions,
    Store,
    User,
    Vm,
    VmTemplate,
    now,
)
from .token import random_password, vm_token

# Request.h error codes
AUTHENTICATION = 0x100
AUTHORIZATION = 0x200
NO_EXISTS = 0x400
ACTION = 0x800
XML_RPC_API = 0x1000
INTERNAL = 0x2000
ALLOCATE = 0x4000

# PoolObjectSQL::INVALID_NAME_CHARS of oned 6.10 and 7.0 (src/pool/PoolObjectSQL.cc)
INVALID_NAME_CHARS = "&|:\\\";/'#{}$<>\t\n\v\f\r"


def name_error(name: str) -> str | None:
    """Why oned refuses this object name (``PoolObjectSQL::name_is_valid``), or None."""
    if not name:
        return "Invalid NAME, it cannot be empty"
    bad = next((char for char in name if char in INVALID_NAME_CHARS), None)
    if bad is not None:
        return f"Invalid NAME, char '{bad}' is not allowed"
    if len(name.encode()) > 128:
        return "Invalid NAME, max length is 128 chars"
    return None


class OnedError(Exception):
    """A failed oned request: ``[false, message, code, resp_id, -1]`` on the wire."""

    def __init__(self, code: int, message: str, resp_id: int = -1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resp_id = resp_id


def no_exists(method: str, obname: str, oid: int) -> OnedError:
    return OnedError(NO_EXISTS, f"[{method}] Error getting {obname} [{oid}].", oid)


# Attributes oned moves from the user template into the VM TEMPLATE; the rest stays in
# USER_TEMPLATE (VirtualMachine::insert and friends).
SYSTEM_ATTRS = frozenset(
    """AUTOMATIC_DS_REQUIREMENTS AUTOMATIC_NIC_REQUIREMENTS AUTOMATIC_REQUIREMENTS BACKUP_CONFIG
    CONTEXT CPU CPU_COST CPU_MODEL CREATED_BY DISK DISK_COST EMULATOR FEATURES GRAPHICS
    HYPERV_OPTIONS INPUT MEMORY MEMORY_COST MEMORY_MAX MEMORY_RESIZE_MODE MEMORY_SLOTS NIC
    NIC_ALIAS NIC_DEFAULT NUMA_NODE OS PCI RAW SECURITY_GROUP_RULE SPICE_OPTIONS TEMPLATE_ID
    TM_MAD_SYSTEM TOPOLOGY VCPU VCPU_MAX VIDEO VMGROUP VMID VROUTER_ID""".split()
)

NETWORK_CONTEXT = """DNS EXTERNAL GATEWAY IP IP6 IP6_GATEWAY IP6_METHOD IP6_METRIC IP6_PREFIX_LENGTH
    IP6_ULA MAC MASK METHOD METRIC MTU NETWORK SEARCH_DOMAIN VLAN_ID VROUTER_IP VROUTER_IP6
    VROUTER_MANAGEMENT""".split()

FAILURE_LCM_STATES = frozenset(
    LCM[n]
    for n in """BOOT_FAILURE BOOT_MIGRATE_FAILURE PROLOG_MIGRATE_FAILURE PROLOG_FAILURE
    EPILOG_FAILURE EPILOG_STOP_FAILURE EPILOG_UNDEPLOY_FAILURE PROLOG_MIGRATE_POWEROFF_FAILURE
    PROLOG_MIGRATE_SUSPEND_FAILURE PROLOG_MIGRATE_UNKNOWN_FAILURE BOOT_UNDEPLOY_FAILURE
    BOOT_STOPPED_FAILURE PROLOG_RESUME_FAILURE PROLOG_UNDEPLOY_FAILURE""".split()
)


@dataclass
class Timings:
    """Delays of the emulated cloud, in seconds. ``Timings.fast()`` suits tests."""

    tick: float = 0.5  # period of the background ticker
    vm_step: float = 1.0  # one VM state step (PENDING→PROLOG→BOOT→RUNNING, SHUTDOWN→EPILOG→DONE)
    nets: float = 0.2  # DEPLOYING_NETS / UNDEPLOYING_NETS duration when there is nothing to do
    cooldown_scale: float = 1.0  # multiplies every role cooldown (300 s by default)

    @classmethod
    def fast(cls) -> Timings:
        return cls(tick=0.01, vm_step=0.01, nets=0.01, cooldown_scale=0.01)


@dataclass
class Hooks:
    """Callbacks run in a worker thread, outside the lock.

    ``on_vm_create(vm)`` right after a VM is allocated (state PENDING or HOLD);
    ``on_vm_delete(vm)`` when a VM reaches DONE. The ``Vm`` object is live: read it, but
    change it only through :class:`~.server.Emulator` methods.
    """

    on_vm_create: Callable[[Vm], Any] | None = None
    on_vm_delete: Callable[[Vm], Any] | None = None


@dataclass
class CloudConfig:
    version: str = "7.0"  # "7.0" (7.0.2 behaviour) or "6.10"
    onegate_endpoint: str = "http://127.0.0.1:5030"
    auto_boot: bool = True  # VMs leave PENDING on their own; False: wait for Emulator.boot_vm
    default_cooldown: int = 300
    hostname: str = "dummy-host"
    extra: dict[str, Any] = field(default_factory=dict)


VM_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)(?:\[([A-Za-z0-9_]+)\])?")


class Cloud:
    """oned. All methods expect ``store.lock`` to be held by the caller."""

    def __init__(self, store: Store, config: CloudConfig, timings: Timings) -> None:
        self.store = store
        self.config = config
        self.timings = timings
        self.events: list[tuple[str, Vm]] = []

    # ------------------------------------------------------------------------------ users
    def add_user(self, name: str, password: str, group: str | int = "users") -> User:
        st = self.store
        gid = (
            group
            if isinstance(group, int)
            else next(g.id for g in st.groups.values() if g.name == group)
        )
        uid = st.next_id("user")
        user = User(
            id=uid,
            name=name,
            password=password,
            gid=gid,
            gname=st.groups[gid].name,
            groups=[gid],
            template={"TOKEN_PASSWORD": random_password(st.rng)},
        )
        st.users[uid] = user
        return user

    def authenticate(self, session: Any, method: str) -> User:
        """``UserPool::authenticate`` for the core driver: ``user:password``."""
        if isinstance(session, str) and ":" in session:
            name, secret = session.split(":", 1)
            user = self.store.user_by_name(name)
            if user and user.enabled and secret in (user.password, user.password_hash):
                return user
        raise OnedError(
            AUTHENTICATION, f"[{method}] User couldn't be authenticated, aborting call."
        )

    def can(self, user: User, owner_uid: int, owner_gid: int, perms: Permissions, op: str) -> bool:
        if user.is_admin():
            return True
        bit = {"USE": "u", "MANAGE": "m", "ADMIN": "a"}[op]
        if owner_uid == user.id and getattr(perms, f"owner_{bit}"):
            return True
        if owner_gid in user.groups and getattr(perms, f"group_{bit}"):
            return True
        return bool(getattr(perms, f"other_{bit}"))

    def authorize(self, user: User, obj: Any, op: str, kind: str, method: str) -> None:
        if not self.can(user, obj.uid, obj.gid, obj.perms, op):
            raise OnedError(
                AUTHORIZATION,
                f"[{method}] User [{user.id}] : Not authorized to perform {op} {kind} [{obj.id}].",
                obj.id,
            )

    def user_info(self, user: User, uid: int, method: str = "one.user.info") -> User:
        target = user if uid == -1 else self.store.users.get(uid)
        if target is None:
            raise no_exists(method, "user", uid)
        if target.id != user.id and not user.is_admin():
            raise OnedError(
                AUTHORIZATION,
                f"[{method}] User [{user.id}] : Not authorized to perform USE USER [{uid}].",
                uid,
            )
        return target

    # -------------------------------------------------------------------------------- pools
    def visible(
        self, user: User, objs: list[Any], filter_flag: int, start: int, end: int
    ) -> list[Any]:
        """``RequestManagerPoolInfoFilter``: filter flag, id range, ACLs; DESC order
        (``API_LIST_ORDER = "DESC"`` is the oned.conf default, as the recorded pools show)."""
        out = []
        for obj in objs:
            if filter_flag == -3 and obj.uid != user.id:
                continue
            if filter_flag == -1 and obj.uid != user.id and obj.gid not in user.groups:
                continue
            if filter_flag == -4 and obj.gid not in user.groups:
                continue
            if filter_flag >= 0 and obj.uid != filter_flag:
                continue
            if start >= 0 and obj.id < start:
                continue
            if end >= 0 and obj.id > end:
                continue
            if not self.can(user, obj.uid, obj.gid, obj.perms, "USE"):
                continue
            out.append(obj)
        out.sort(key=lambda o: o.id, reverse=True)
        if end < -1:
            out = out[:-end]
        return out

    # -------------------------------------------------------------------------------- VMs
    def get_vm(self, user: User, vm_id: int, method: str = "one.vm.info", op: str = "USE") -> Vm:
        vm = self.store.vms.get(vm_id)
        if vm is None:
            raise no_exists(method, "virtual machine", vm_id)
        self.authorize(user, vm, op, "VM", method)
        return vm

    def vm_update(
        self, user: User, vm_id: int, text: str, append: int, method: str = "one.vm.update"
    ) -> int:
        vm = self.get_vm(user, vm_id, method, "MANAGE")
        try:
            new = ts.parse_str_or_xml(text) if text.strip() else {}
        except ts.TemplateParseError as exc:
            raise OnedError(INTERNAL, f"[{method}] Parse error: {exc}", vm_id) from None
        if append == 1:
            ts.merge(vm.user_template, new)
        else:
            vm.user_template = new
        vm.changed()
        return vm_id

    def vm_rename(self, user: User, vm_id: int, name: str, method: str = "one.vm.rename") -> int:
        vm = self.get_vm(user, vm_id, method, "MANAGE")
        if name == vm.name:
            return vm_id
        reason = name_error(name)
        if reason:
            raise OnedError(ACTION, f"[{method}] {reason}")
        vm.name = name
        vm.changed()
        return vm_id

    def vm_chmod(
        self, user: User, vm_id: int, bits: list[int], method: str = "one.vm.chmod"
    ) -> int:
        vm = self.get_vm(user, vm_id, method, "MANAGE")
        vm.perms.set_list(bits)
        vm.changed()
        return vm_id

    def vm_chown(
        self, user: User, vm_id: int, uid: int, gid: int, method: str = "one.vm.chown"
    ) -> int:
        vm = self.get_vm(user, vm_id, method, "MANAGE")
        if uid >= 0:
            owner = self.store.users.get(uid)
            if owner is None:
                raise no_exists(method, "user", uid)
            vm.uid, vm.uname = owner.id, owner.name
        if gid >= 0:
            group = self.store.groups.get(gid)
            if group is None:
                raise no_exists(method, "group", gid)
            vm.gid, vm.gname = group.id, group.name
        vm.changed()
        return vm_id

    def vm_updateconf(
        self, user: User, vm_id: int, text: str, append: int, method: str = "one.vm.updateconf"
    ) -> int:
        vm = self.get_vm(user, vm_id, method, "MANAGE")
        new = ts.parse_str_or_xml(text) if text.strip() else {}
        for name, value in new.items():
            current = ts.first(vm.template, name)
            if append and isinstance(current, dict) and isinstance(value, dict):
                current.update(value)
            else:
                vm.template[name] = ts.copy_value(value)
        vm.changed()
        return vm_id

    def vm_action(self, user: User, action: str, vm_id: int, method: str = "one.vm.action") -> int:
        """``VirtualMachineAction`` with the DispatchManager state checks."""
        vm = self.get_vm(user, vm_id, method, "MANAGE")
        hard = action.endswith("-hard")
        base = action[:-5] if hard else action
        state, lcm = vm.state, vm.lcm_state
        running = state == ACTIVE and lcm in (LCM["RUNNING"], LCM["UNKNOWN"])

        def not_available() -> OnedError:
            return OnedError(
                ACTION,
                f'[{method}] Error performing action "{action}": This action is not available '
                f"for state {vm.state_str}",
                vm_id,
            )

        if base == "terminate":
            if state == DONE:
                raise OnedError(
                    ACTION,
                    f'[{method}] Error performing action "{action}": Could not terminate VM '
                    f"{vm_id}, wrong state {vm.state_str}.",
                    vm_id,
                )
            if state in (PENDING, HOLD) or (
                state == ACTIVE and not running and lcm not in FAILURE_LCM_STATES
            ):
                self._schedule(vm, [(DONE, 0)])
            elif state == ACTIVE:
                self._schedule(vm, [(ACTIVE, LCM["SHUTDOWN"]), (ACTIVE, LCM["EPILOG"]), (DONE, 0)])
            else:  # POWEROFF, SUSPENDED, STOPPED, UNDEPLOYED, failure states
                self._schedule(vm, [(ACTIVE, LCM["EPILOG"]), (DONE, 0)])
        elif base == "poweroff":
            if not running:
                raise not_available()
            self._schedule(vm, [(ACTIVE, LCM["SHUTDOWN_POWEROFF"]), (POWEROFF, 0)])
        elif base == "undeploy":
            if not (running or state == POWEROFF):
                raise not_available()
            self._schedule(
                vm,
                [
                    (ACTIVE, LCM["SHUTDOWN_UNDEPLOY"]),
                    (ACTIVE, LCM["EPILOG_UNDEPLOY"]),
                    (UNDEPLOYED, 0),
                ],
            )
        elif base == "suspend" and not hard:
            if not running:
                raise not_available()
            self._schedule(vm, [(ACTIVE, LCM["SAVE_SUSPEND"]), (SUSPENDED, 0)])
        elif base == "stop" and not hard:
            if not running:
                raise not_available()
            self._schedule(
                vm, [(ACTIVE, LCM["SAVE_STOP"]), (ACTIVE, LCM["EPILOG_STOP"]), (STOPPED, 0)]
            )
        elif base == "resume" and not hard:
            if state == POWEROFF:
                self._schedule(vm, [(ACTIVE, LCM["BOOT_POWEROFF"]), (ACTIVE, LCM["RUNNING"])])
            elif state == SUSPENDED:
                self._schedule(vm, [(ACTIVE, LCM["BOOT_SUSPENDED"]), (ACTIVE, LCM["RUNNING"])])
            elif state in (STOPPED, UNDEPLOYED):
                vm.set_state(PENDING, 0)
                self._boot(vm)
            elif state == ACTIVE and lcm == LCM["UNKNOWN"]:
                # DispatchManager::resume: ACTIVE/UNKNOWN is restarted like POWEROFF
                self._schedule(vm, [(ACTIVE, LCM["BOOT_UNKNOWN"]), (ACTIVE, LCM["RUNNING"])])
            else:
                raise not_available()
        elif base == "reboot":
            if not running:
                raise not_available()
        elif base == "hold" and not hard:
            if state != PENDING:
                raise not_available()
            vm.transitions.clear()
            vm.set_state(HOLD, 0)
        elif base == "release" and not hard:
            if state != HOLD:
                raise not_available()
            vm.set_state(PENDING, 0)
            self._boot(vm)
        elif base in ("resched", "unresched") and not hard:
            if not running:
                raise not_available()
            vm.resched = 1 if base == "resched" else 0
            vm.changed()
        else:
            raise OnedError(ACTION, f'[{method}] Action "{action}" is not supported', vm_id)
        return vm_id

    # ------------------------------------------------------------------------ VM lifecycle
    def _schedule(self, vm: Vm, steps: list[tuple[int, int]], *, immediate: bool = True) -> None:
        """Queue state steps ``vm_step`` apart; the first one is applied at once when
        ``immediate`` (the DispatchManager changes the state before the call returns)."""
        t = time.monotonic()
        vm.transitions = []
        if immediate and steps:
            state, lcm = steps[0]
            steps = steps[1:]
            self._enter(vm, state, lcm)
        for i, (state, lcm) in enumerate(steps, start=1):
            vm.transitions.append((t + i * self.timings.vm_step, state, lcm))

    def _boot(self, vm: Vm) -> None:
        if vm.boot_requested:
            steps = [(ACTIVE, LCM["PROLOG"]), (ACTIVE, LCM["BOOT"]), (ACTIVE, LCM["RUNNING"])]
            self._schedule(vm, steps, immediate=False)

    def boot_vm(self, vm: Vm) -> None:
        """Let a PENDING VM deploy (used when ``auto_boot`` is off)."""
        vm.boot_requested = True
        if vm.state == PENDING and not vm.transitions:
            self._boot(vm)

    def tick(self) -> bool:
        """Apply due VM transitions. Returns True when something changed."""
        t = time.monotonic()
        changed = self._image_tick(t)
        for vm in self.store.vms.values():
            while vm.transitions and vm.transitions[0][0] <= t:
                _, state, lcm = vm.transitions.pop(0)
                self._enter(vm, state, lcm)
                changed = True
        if changed:
            return changed

    def _enter(self, vm: Vm, state: int, lcm: int) -> None:
        ts_now = now()
        if state == ACTIVE and lcm == LCM["PROLOG"] and not vm.history:
            vm.history.append(
                History(
                    seq=0,
                    hostname=self.config.hostname,
                    hid=0,
                    stime=ts_now,
                    pstime=ts_now,
                    petime=ts_now,
                    rstime=ts_now,
                )
            )
        if state == ACTIVE and lcm == LCM["RUNNING"]:
            vm.deploy_id = vm.deploy_id or f"{self.config.hostname}:{vm.name}:dummy"
            vm.template.setdefault("TM_MAD_SYSTEM", "dummy")
            self.refresh_monitoring(vm)
        vm.set_state(state, lcm)
        if state == DONE:
            vm.etime = ts_now
            if vm.history:
                vm.history[-1].etime = ts_now
            for net in self.store.networks.values():
                net.release(vm.id)
            vm.transitions.clear()
            self.events.append(("delete", vm))
        vm.changed()

    def refresh_monitoring(self, vm: Vm) -> None:
        ts_now = now()
        rng = self.store.rng
        mem = ts.first(vm.template, "MEMORY")
        mem_kb = int(mem) * 1024 if isinstance(mem, str) and mem.isdigit() else 131072
        vm.last_poll = ts_now
        vm.monitoring = {
            "CPU": "0",
            "DISKRDBYTES": str(rng.randint(0, 999)),
            "DISKRDIOPS": str(rng.randint(0, 999)),
            "DISKWRBYTES": str(rng.randint(0, 999)),
            "DISKWRIOPS": str(rng.randint(0, 999)),
            "ID": str(vm.id),
            "MEMORY": str(rng.randint(mem_kb // 4, mem_kb)),
            "NETRX": str(rng.randint(7000, 9000)),
            "NETTX": str(rng.randint(7000, 9000)),
            "TIMESTAMP": str(ts_now),
        }
        vm.changed()

    # ---------------------------------------------------------------------- VM allocation
    def get_template(self, user: User, tid: int, method: str, op: str = "USE") -> VmTemplate:
        tmpl = self.store.vm_templates.get(tid)
        if tmpl is None:
            raise no_exists(method, "virtual machine template", tid)
        self.authorize(user, tmpl, op, "TEMPLATE", method)
        return tmpl

    def add_vm_template(self, user: User, name: str, template: ts.Template) -> VmTemplate:
        st = self.store
        tid = st.next_id("template")
        vmt = VmTemplate(
            tid, user.id, user.gid, user.name, user.gname, name, now(), ts.copy_template(template)
        )
        st.vm_templates[tid] = vmt
        return vmt

    def template_instantiate(
        self,
        user: User,
        tid: int,
        name: str,
        hold: bool,
        extra: ts.Template | str | None,
        method: str = "one.template.instantiate",
    ) -> Vm:
        vmt = self.get_template(user, tid, method)
        tmpl = ts.copy_template(vmt.template)
        if isinstance(extra, str):
            try:
                extra = ts.parse_str_or_xml(extra) if extra.strip() else {}
            except ts.TemplateParseError as exc:
                raise OnedError(INTERNAL, f"[{method}] Parse error: {exc}", tid) from None
        if extra:
            ts.merge(tmpl, extra)
        if not name:
            name = f"{vmt.name}-{self.store.next_ids['vm']}"
        return self.allocate_vm(user, tmpl, name, hold, tid, method)

    def allocate_vm(
        self,
        user: User,
        tmpl: ts.Template,
        name: str,
        hold: bool = False,
        template_id: int | None = None,
        method: str = "one.vm.allocate",
        *,
        running: bool = False,
        ip: str | None = None,
    ) -> Vm:
        """Create a VM the way oned does: NIC leases, context, user/system template split.

        ``running=True`` creates it directly in ACTIVE/RUNNING with a history record (used to
        populate big pools quickly); ``ip`` forces the address of the first NIC.
        """
        reason = name_error(name)
        if reason:
            raise OnedError(
                ALLOCATE, f"[{method}] Error allocating a new virtual machine. {reason}"
            )
        st = self.store
        vm_id = st.next_id("vm")
        stime = now()
        system: ts.Template = {}
        user_tmpl: ts.Template = {}
        for key, value in tmpl.items():
            if key == "NAME":
                continue
            (system if key in SYSTEM_ATTRS else user_tmpl)[key] = ts.copy_value(value)
        if template_id is not None:
            system["TEMPLATE_ID"] = str(template_id)
        system["VMID"] = str(vm_id)
        system["AUTOMATIC_DS_REQUIREMENTS"] = '("CLUSTERS/ID" @> 0)'
        system["AUTOMATIC_NIC_REQUIREMENTS"] = '("CLUSTERS/ID" @> 0)'
        system["AUTOMATIC_REQUIREMENTS"] = "(CLUSTER_ID = 0) & !(PIN_POLICY = PINNED)"
        nics: list[ts.Vector] = []
        nets_used: list[Network] = []
        try:
            if "DISK" in system:
                disks = self._disks(system, user, method)
                system["DISK"] = disks if len(disks) > 1 else disks[0]
            for index, raw in enumerate(ts.values(system, "NIC")):
                nic = dict(raw) if isinstance(raw, dict) else {}
                net = self._find_network(nic)
                if net is None:
                    raise OnedError(
                        ALLOCATE,
                        f"[{method}] Error allocating a new virtual machine. Cannot get IP/MAC "
                        f"lease from virtual network {nic.get('NETWORK_ID', nic.get('NETWORK'))}.",
                    )
                _, addr, mac = net.lease(vm_id, ip if index == 0 else None)
                nets_used.append(net)
                nic.update(
                    {
                        "AR_ID": "0",
                        "BRIDGE": net.bridge,
                        "BRIDGE_TYPE": "linux",
                        "CLUSTER_ID": "0",
                        "DNS": net.dns,
                        "GATEWAY": net.gateway,
                        "IP": addr,
                        "MAC": mac,
                        "NAME": nic.get("NAME", f"NIC{index}"),
                        "NETWORK": net.name,
                        "NETWORK_ID": str(net.id),
                        "NETWORK_UNAME": net.uname,
                        "NIC_ID": str(index),
                        "SECURITY_GROUPS": "0",
                        "TARGET": f"one-{vm_id}-{index}",
                        "VN_MAD": net.vn_mad,
                    }
                )
                nics.append(nic)
        except (OnedError, LookupError) as exc:
            for net in nets_used:
                net.release(vm_id)
            st.next_ids["vm"] = vm_id  # oned does not consume the id of a failed allocation
            if isinstance(exc, OnedError):
                raise
            raise OnedError(
                ALLOCATE, f"[{method}] Error allocating a new virtual machine. {exc}"
            ) from None
        if nics:
            system["NIC"] = nics if len(nics) > 1 else nics[0]
            system["SECURITY_GROUP_RULE"] = [
                {
                    "PROTOCOL": "ALL",
                    "RULE_TYPE": "OUTBOUND",
                    "SECURITY_GROUP_ID": "0",
                    "SECURITY_GROUP_NAME": "default",
                },
                {
                    "PROTOCOL": "ALL",
                    "RULE_TYPE": "INBOUND",
                    "SECURITY_GROUP_ID": "0",
                    "SECURITY_GROUP_NAME": "default",
                },
            ]
        graphics = ts.first(system, "GRAPHICS")
        if isinstance(graphics, dict) and "PORT" not in graphics:
            graphics["PORT"] = str(5900 + vm_id)
        os_attr = ts.first(system, "OS")
        if isinstance(os_attr, dict):
            os_attr.setdefault("UUID", st.uuid())
        else:
            system["OS"] = {"UUID": st.uuid()}
        vm = Vm(
            id=vm_id,
            uid=user.id,
            gid=user.gid,
            uname=user.name,
            gname=user.gname,
            name=name,
            perms=Permissions.from_umask(0o177),
            stime=stime,
            template=system,
            user_template=user_tmpl,
            boot_requested=self.config.auto_boot,
        )
        context = ts.first(system, "CONTEXT")
        if isinstance(context, dict):
            system["CONTEXT"] = self._context(vm, user, context, nics)
        st.vms[vm_id] = vm
        if running:
            vm.history.append(
                History(
                    seq=0,
                    hostname=self.config.hostname,
                    hid=0,
                    stime=stime,
                    pstime=stime,
                    petime=stime,
                    rstime=stime,
                )
            )
            vm.state = vm.prev_state = ACTIVE
            vm.lcm_state = vm.prev_lcm_state = LCM["RUNNING"]
            vm.deploy_id = f"{self.config.hostname}:{name}:dummy"
            system.setdefault("TM_MAD_SYSTEM", "dummy")
        else:
            if hold:
                vm.state = vm.prev_state = HOLD
            else:
                self._boot(vm)
            self.events.append(("create", vm))
        return vm

    def _find_network(self, nic: dict[str, str]) -> Network | None:
        st = self.store
        if "NETWORK_ID" in nic:
            try:
                return st.networks.get(int(nic["NETWORK_ID"]))
            except ValueError:
                return None
        if "NETWORK" in nic:
            return st.network_by_name(nic["NETWORK"])
        return next(iter(st.networks.values()), None)

    def _context(self, vm: Vm, owner: User, context: ts.Vector, nics: list[ts.Vector]) -> ts.Vector:
        """``VirtualMachine::parse_context``: variables, network context, token, disk/target."""
        ctx = {k: self._resolve_vars(vm, owner, v) for k, v in context.items()}
        if ctx.get("NETWORK", "").upper() == "YES":
            for nic in nics:
                net = self._find_network(nic)
                prefix = f"ETH{nic['NIC_ID']}_"
                values = {key: "" for key in NETWORK_CONTEXT}
                values.update(
                    {
                        "IP": nic.get("IP", ""),
                        "MAC": nic.get("MAC", ""),
                        "DNS": net.dns if net else "",
                        "GATEWAY": net.gateway if net else "",
                        "MASK": net.network_mask if net else "",
                        "NETWORK": net.network_address if net else "",
                    }
                )
                for key, value in values.items():
                    ctx.setdefault(prefix + key, value)
        ndisks = len(ts.values(vm.template, "DISK"))
        ctx["DISK_ID"] = str(ndisks)
        ctx["TARGET"] = "hd" + chr(ord("a") + ndisks)
        if ctx.get("TOKEN", "").upper() == "YES":
            ctx["ONEGATE_ENDPOINT"] = self.config.onegate_endpoint
            ctx["VMID"] = str(vm.id)
            vm.template["CREATED_BY"] = str(owner.id)
        return ctx

    def _resolve_vars(self, vm: Vm, owner: User, value: str) -> str:
        def repl(m: re.Match[str]) -> str:
            var, attr = m.group(1).upper(), (m.group(2) or "").upper()
            special = {
                "UID": vm.uid,
                "UNAME": vm.uname,
                "GID": vm.gid,
                "GNAME": vm.gname,
                "NAME": vm.name,
                "VMID": vm.id,
            }
            if var in special and not attr:
                return str(special[var])
            if var == "USER":
                found = ts.first(owner.template, attr)
                return found if isinstance(found, str) else ""
            found = ts.first(vm.template, var)
            if found is None:
                found = ts.first(vm.user_template, var)
            if isinstance(found, dict):
                return found.get(attr, "") if attr else ""
            return found if isinstance(found, str) and not attr else ""

        return VM_VAR.sub(repl, value)

    def onegate_token(self, vm: Vm) -> str | None:
        """Contents of the VM's ``token.txt`` (None when the VM has no TOKEN=YES context)."""
        created_by = ts.first(vm.template, "CREATED_BY")
        if not isinstance(created_by, str):
            return None
        user = self.store.users.get(int(created_by))
        if user is None or not user.token_password:
            return None
        return vm_token(vm.id, vm.stime, user.token_password)

    # ----------------------------------------------------------------------------- images
    # ImageAllocate (RequestManagerAllocate.cc), Image::insert/to_xml/disk_attribute
    # (src/image/Image.cc), ImageManager acquire/release/delete, with the dummy datastore
    # drivers: an image is LOCKED while the driver "copies" it (one vm_step), then READY; a
    # deleted image shows DELETE for one vm_step, then it is gone.
    def get_image(
        self, user: User, image_id: int, method: str = "one.image.info", op: str = "USE"
    ) -> Image:
        image = self.store.images.get(image_id)
        if image is None:
            raise no_exists(method, "image", image_id)
        self.authorize(user, image, op, "IMAGE", method)
        return image

    def image_vms(self, image: Image) -> list[int]:
        """IDs of the VMs (not DONE) with a DISK of this image: ``RUNNING_VMS`` / ``VMS``."""
        found = []
        for vm in self.store.vms.values():
            if vm.state == DONE:
                continue
            for disk in ts.values(vm.template, "DISK"):
                if isinstance(disk, dict) and disk.get("IMAGE_ID") == str(image.id):
                    found.append(vm.id)
                    break
        return sorted(found)

    def image_state(self, image: Image, vms: list[int] | None = None) -> int:
        """The state oned reports: READY becomes USED (USED_PERS) while VMs use the image."""
        vms = self.image_vms(image) if vms is None else vms
        if image.state == IMAGE_STATE["READY"] and vms:
            return IMAGE_STATE["USED_PERS" if image.persistent else "USED"]
        return image.state

    def image_allocate(
        self, user: User, tmpl: ts.Template, ds_id: int, method: str = "one.image.allocate"
    ) -> Image:
        st = self.store
        if ds_id not in DATASTORES:
            raise no_exists(method, "datastore", ds_id)
        if DATASTORES[ds_id][1] == "SYSTEM_DS":
            raise OnedError(
                ALLOCATE, f"[{method}] New images cannot be allocated in a system datastore."
            )
        tmpl = ts.copy_template(tmpl)

        def take(key: str) -> str:
            value = tmpl.pop(key, "")
            return value if isinstance(value, str) else ""

        def fail(reason: str) -> OnedError:
            return OnedError(ALLOCATE, f"[{method}] Error allocating a new image. {reason}")

        name = take("NAME")
        if not name:
            raise fail("NAME cannot be empty.")
        for other in st.images.values():
            if other.name == name and other.uid == user.id:
                raise fail(f"NAME is already taken by IMAGE {other.id}.")
        kind = (take("TYPE") or "OS").upper()
        if kind not in IMAGE_TYPES:
            raise fail(f"Unknown type {kind}")
        persistent = int(take("PERSISTENT").upper() == "YES" and kind in IMAGE_TYPES[:3])
        size_attr = take("SIZE")
        for key in ("FS", "DRIVER", "TM_MAD"):
            tmpl.pop(key, None)
        path, source, fmt = take("PATH"), take("SOURCE"), take("FORMAT")
        if source and path:
            raise fail("PATH and SOURCE cannot be both set.")
        if source and not fmt:
            raise fail("SOURCE needs FORMAT to be set.")
        if not source and not path and kind not in ("OS", "DATABLOCK"):
            raise fail("No PATH nor SOURCE in template.")
        size_mb, found_fmt = _stat_image(path)
        if path:
            fmt = found_fmt  # filled by the datastore driver from the file
            size_mb = size_mb or 1024  # the dummy driver answers without reading the file
        else:
            fmt = fmt or "raw"
            size_mb = int(size_attr) if size_attr.isdigit() else 0
        if kind in ("OS", "DATABLOCK", "CDROM") and not ts.first(tmpl, "DEV_PREFIX"):
            tmpl["DEV_PREFIX"] = "hd" if kind == "CDROM" else "vd"
        image_id = st.next_id("image")
        digest = hashlib.md5(f"{image_id}:{name}:{now()}".encode(), usedforsecurity=False)
        image = Image(
            id=image_id,
            uid=user.id,
            gid=user.gid,
            uname=user.name,
            gname=user.gname,
            name=name,
            regtime=now(),
            template=tmpl,
            type=IMAGE_TYPES.index(kind),
            persistent=persistent,
            path=path,
            source=source or f"/var/lib/one//datastores/{ds_id}/{digest.hexdigest()}",
            format=fmt,
            size_mb=size_mb,
            datastore_id=ds_id,
            perms=Permissions.from_umask(0o177),
            ready_at=time.monotonic() + self.timings.vm_step,
        )
        st.images[image_id] = image
        return image

    def image_delete(self, user: User, image_id: int, method: str = "one.image.delete") -> int:
        image = self.get_image(user, image_id, method, "MANAGE")
        vms = self.image_vms(image)
        if vms:
            raise OnedError(
                ACTION,
                f"[{method}] Cannot delete image {image_id}: it is used by VMs "
                + ",".join(map(str, vms)),
                image_id,
            )
        if image.state != IMAGE_STATE["DELETE"]:
            image.prev_state, image.state = image.state, IMAGE_STATE["DELETE"]
            image.ready_at = time.monotonic() + self.timings.vm_step
        return image_id

    def image_rename(self, user: User, image_id: int, name: str, method: str) -> int:
        image = self.get_image(user, image_id, method, "MANAGE")
        for other in self.store.images.values():
            if other.name == name and other.uid == image.uid and other.id != image_id:
                raise OnedError(
                    ACTION, f"[{method}] NAME is already taken by IMAGE {other.id}.", image_id
                )
        image.name = name
        return image_id

    def image_enable(self, user: User, image_id: int, enable: bool, method: str) -> int:
        image = self.get_image(user, image_id, method, "MANAGE")
        allowed = ("READY", "DISABLED", "ERROR") if enable else ("READY", "DISABLED")
        state = IMAGE_STATE_NAMES[self.image_state(image)]
        if state not in allowed:
            raise OnedError(
                ACTION,
                f"[{method}] Could not {'enable' if enable else 'disable'} image {image_id}: "
                f"image is in state {state}",
                image_id,
            )
        image.prev_state = image.state
        image.state = IMAGE_STATE["READY" if enable else "DISABLED"]
        return image_id

    def image_persistent(self, user: User, image_id: int, persistent: bool, method: str) -> int:
        image = self.get_image(user, image_id, method, "MANAGE")
        if self.image_vms(image):
            raise OnedError(
                ACTION,
                f"[{method}] Cannot change the persistent attribute of image {image_id}: "
                "it is used by VMs",
                image_id,
            )
        image.persistent = int(persistent)
        return image_id

    def _image_tick(self, t: float) -> bool:
        changed = False
        for image in list(self.store.images.values()):
            if image.ready_at and image.ready_at <= t:
                image.ready_at = 0.0
                if image.state == IMAGE_STATE["LOCKED"]:
                    image.prev_state, image.state = image.state, IMAGE_STATE["READY"]
                    changed = True
                elif image.state == IMAGE_STATE["DELETE"]:
                    del self.store.images[image.id]
                    changed = True
        return changed

    def _disks(self, system: ts.Template, owner: User, method: str) -> list[ts.Vector]:
        """The VM's DISKs as oned completes them (``VirtualMachineDisks::get_images``)."""
        disks: list[ts.Vector] = []
        targets: dict[str, int] = {}
        for index, raw in enumerate(ts.values(system, "DISK")):
            disk = dict(raw) if isinstance(raw, dict) else {}
            if "IMAGE_ID" in disk or "IMAGE" in disk:
                self._disk_from_image(disk, self._disk_image(disk, owner, method))
            prefix = disk.get("DEV_PREFIX") or "vd"
            if not disk.get("TARGET"):
                letter = targets.get(prefix, 0)
                disk["TARGET"] = prefix + chr(ord("a") + letter)
                targets[prefix] = letter + 1
            disk["DISK_ID"] = str(index)
            disks.append(disk)
        return disks

    def _disk_image(self, disk: ts.Vector, owner: User, method: str) -> Image:
        def fail(reason: str) -> OnedError:
            return OnedError(
                ALLOCATE, f"[{method}] Error allocating a new virtual machine. {reason}"
            )

        if "IMAGE_ID" in disk:
            try:
                image = self.store.images.get(int(disk["IMAGE_ID"]))
            except ValueError:
                image = None
            if image is None:
                raise fail(f"Image with ID: {disk['IMAGE_ID']} does not exist")
        else:
            uid = owner.id
            if disk.get("IMAGE_UID", "").isdigit():
                uid = int(disk["IMAGE_UID"])
            elif disk.get("IMAGE_UNAME"):
                named = self.store.user_by_name(disk["IMAGE_UNAME"])
                uid = named.id if named else -1
            image = next(
                (i for i in self.store.images.values() if i.name == disk["IMAGE"] and i.uid == uid),
                None,
            )
            if image is None:
                raise fail(
                    f"User {uid} does not own an image with name: {disk['IMAGE']} . Set "
                    "IMAGE_UNAME or IMAGE_UID of owner in DISK."
                )
        if not self.can(owner, image.uid, image.gid, image.perms, "USE"):
            raise fail(f"User [{owner.id}] : Not authorized to perform USE IMAGE [{image.id}].")
        state = IMAGE_STATE_NAMES[self.image_state(image)]
        if state == "USED_PERS":
            raise fail(f"Cannot acquire image {image.id}, it is persistent and already in use")
        if state not in ("READY", "USED"):
            raise fail(f"Cannot acquire image {image.id}, it is in state {state}")
        return image

    def _disk_from_image(self, disk: ts.Vector, image: Image) -> None:
        """``Image::disk_attribute`` and the datastore attributes (dummy TM)."""
        dev_prefix = disk.get("DEV_PREFIX") or ts.first(image.template, "DEV_PREFIX") or "vd"
        persistent = bool(image.persistent)
        disk.update(
            {
                "CLONE": "NO" if persistent else "YES",
                "CLONE_TARGET": "SYSTEM",
                "CLUSTER_ID": "0",
                "DATASTORE": DATASTORES[image.datastore_id][0],
                "DATASTORE_ID": str(image.datastore_id),
                "DEV_PREFIX": dev_prefix if isinstance(dev_prefix, str) else "vd",
                "DISK_SNAPSHOT_TOTAL_SIZE": "0",
                "DISK_TYPE": "FILE",
                "IMAGE": image.name,
                "IMAGE_ID": str(image.id),
                "IMAGE_STATE": str(IMAGE_STATE["USED_PERS" if persistent else "USED"]),
                "IMAGE_UID": str(image.uid),
                "IMAGE_UNAME": image.uname,
                "LN_TARGET": "NONE",
                "ORIGINAL_SIZE": str(image.size_mb),
                "READONLY": disk.get("READONLY", "NO"),
                "SAVE": "YES" if persistent else "NO",
                "SOURCE": image.source,
                "TM_MAD": "dummy",
                "TYPE": "FILE",
            }
        )
        if persistent:
            disk["PERSISTENT"] = "YES"
        if image.format:
            disk["DRIVER"] = disk["FORMAT"] = image.format.lower()
        disk.setdefault("SIZE", str(image.size_mb))

    # -------------------------------------------------------------------------- documents
    def get_document(
        self, user: User, doc_id: int, method: str = "one.document.info", op: str = "USE"
    ) -> Document:
        doc = self.store.documents.get(doc_id)
        if doc is None:
            raise no_exists(method, "document", doc_id)
        self.authorize(user, doc, op, "DOCUMENT", method)
        return doc

    def document_allocate(
        self, user: User, name: str, doc_type: int, body: Any, method: str = "one.document.allocate"
    ) -> Document:
        st = self.store
        doc_id = st.next_id("document")
        if len(name) > 128:
            st.next_ids["document"] = doc_id
            raise OnedError(
                ALLOCATE,
                f"[{method}] Error allocating a new document. "
                "NAME is too long; max length is 128 chars.",
            )
        doc = Document(
            id=doc_id,
            uid=user.id,
            gid=user.gid,
            uname=user.name,
            gname=user.gname,
            name=name or f"document-{doc_id}",
            type=doc_type,
            body=body,
            perms=Permissions.from_umask(0o177),
        )
        st.documents[doc_id] = doc
        return doc

    def document_delete(self, user: User, doc_id: int, method: str = "one.document.delete") -> int:
        self.get_document(user, doc_id, method, "MANAGE")
        del self.store.documents[doc_id]
        return doc_id

    def documents_of_type(
        self, user: User, doc_type: int, filter_flag: int = -2, start: int = -1, end: int = -1
    ) -> list[Document]:
        docs = [d for d in self.store.documents.values() if d.type == doc_type]
        return self.visible(user, docs, filter_flag, start, end)


def _stat_image(path: str) -> tuple[int, str]:
    """(size in MB, format) of a local image file, as the datastore's ``stat``/``cp`` would
    find them: the virtual size of a qcow2 (its header), else the file size; (0, "raw") when
    the file cannot be read (a URL, or a path on another machine)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(32)
            handle.seek(0, 2)
            length = handle.tell()
    except OSError:
        return 0, "qcow2" if path.endswith(".qcow2") else "raw"
    if header[:4] == b"QFI\xfb" and len(header) >= 32:
        return max(1, math.ceil(int.from_bytes(header[24:32], "big") / 2**20)), "qcow2"
    return max(1, math.ceil(length / 2**20)), "raw"
