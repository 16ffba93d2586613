"""Data model of the emulated cloud: users, groups, VMs, VM templates, images, networks,
documents.

Everything lives in one :class:`Store` guarded by one re-entrant lock. Objects carry an XML cache
that must be dropped with :meth:`Vm.changed` (etc.) whenever a field that oned would serialise
changes; the pool answers for thousands of VMs are built from those caches.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import template_syntax as ts

# VM states (include/VirtualMachine.h)
INIT, PENDING, HOLD, ACTIVE, STOPPED, SUSPENDED, DONE, FAILED, POWEROFF, UNDEPLOYED = range(10)
CLONING, CLONING_FAILURE = 10, 11
VM_STATE_NAMES = """INIT PENDING HOLD ACTIVE STOPPED SUSPENDED DONE FAILED POWEROFF UNDEPLOYED
    CLONING CLONING_FAILURE""".split()
LCM_STATE_NAMES = """LCM_INIT PROLOG BOOT RUNNING MIGRATE SAVE_STOP SAVE_SUSPEND SAVE_MIGRATE
    PROLOG_MIGRATE PROLOG_RESUME EPILOG_STOP EPILOG SHUTDOWN CANCEL FAILURE CLEANUP_RESUBMIT UNKNOWN
    HOTPLUG SHUTDOWN_POWEROFF BOOT_UNKNOWN BOOT_POWEROFF BOOT_SUSPENDED BOOT_STOPPED CLEANUP_DELETE
    HOTPLUG_SNAPSHOT HOTPLUG_NIC HOTPLUG_SAVEAS HOTPLUG_SAVEAS_POWEROFF HOTPLUG_SAVEAS_SUSPENDED
    SHUTDOWN_UNDEPLOY EPILOG_UNDEPLOY PROLOG_UNDEPLOY BOOT_UNDEPLOY HOTPLUG_PROLOG_POWEROFF
    HOTPLUG_EPILOG_POWEROFF BOOT_MIGRATE BOOT_FAILURE BOOT_MIGRATE_FAILURE PROLOG_MIGRATE_FAILURE
    PROLOG_FAILURE EPILOG_FAILURE EPILOG_STOP_FAILURE EPILOG_UNDEPLOY_FAILURE
    PROLOG_MIGRATE_POWEROFF
    PROLOG_MIGRATE_POWEROFF_FAILURE PROLOG_MIGRATE_SUSPEND PROLOG_MIGRATE_SUSPEND_FAILURE
    BOOT_UNDEPLOY_FAILURE BOOT_STOPPED_FAILURE PROLOG_RESUME_FAILURE PROLOG_UNDEPLOY_FAILURE
    DISK_SNAPSHOT_POWEROFF DISK_SNAPSHOT_REVERT_POWEROFF DISK_SNAPSHOT_DELETE_POWEROFF
    DISK_SNAPSHOT_SUSPENDED DISK_SNAPSHOT_REVERT_SUSPENDED DISK_SNAPSHOT_DELETE_SUSPENDED
    DISK_SNAPSHOT DISK_SNAPSHOT_REVERT DISK_SNAPSHOT_DELETE PROLOG_MIGRATE_UNKNOWN
    PROLOG_MIGRATE_UNKNOWN_FAILURE DISK_RESIZE DISK_RESIZE_POWEROFF DISK_RESIZE_UNDEPLOYED
    HOTPLUG_NIC_POWEROFF HOTPLUG_RESIZE HOTPLUG_SAVEAS_UNDEPLOYED HOTPLUG_SAVEAS_STOPPED""".split()
LCM = {name: i for i, name in enumerate(LCM_STATE_NAMES)}

# Image states (include/Image.h) and the datastores images can be registered in
IMAGE_STATE_NAMES = """INIT READY USED DISABLED LOCKED ERROR CLONE DELETE USED_PERS LOCKED_USED
    LOCKED_USED_PERS""".split()
IMAGE_STATE = {name: i for i, name in enumerate(IMAGE_STATE_NAMES)}
IMAGE_TYPES = ("OS", "CDROM", "DATABLOCK", "KERNEL", "RAMDISK", "CONTEXT", "BACKUP")
# id -> (name, type): the three datastores of a fresh front-end (0 system, 1 images, 2 files)
DATASTORES = {0: ("system", "SYSTEM_DS"), 1: ("default", "IMAGE_DS"), 2: ("files", "FILE_DS")}

DOC_SERVICE = 100
DOC_SERVICE_TEMPLATE = 101


def now() -> int:
    return int(time.time())


@dataclass
class Permissions:
    owner_u: int = 1
    owner_m: int = 1
    owner_a: int = 0
    group_u: int = 0
    group_m: int = 0
    group_a: int = 0
    other_u: int = 0
    other_m: int = 0
    other_a: int = 0

    FIELDS = tuple(
        "OWNER_U OWNER_M OWNER_A GROUP_U GROUP_M GROUP_A OTHER_U OTHER_M OTHER_A".split()
    )

    def as_list(self) -> list[int]:
        return [getattr(self, f.lower()) for f in self.FIELDS]

    def set_list(self, values: list[int]) -> None:
        for name, value in zip(self.FIELDS, values, strict=True):
            if value != -1:
                setattr(self, name.lower(), 1 if value else 0)

    def set_octet(self, octet: str) -> None:
        digits = [int(c) for c in octet.strip()[-3:].rjust(3, "0")]
        bits: list[int] = []
        for d in digits:
            bits += [(d >> 2) & 1, (d >> 1) & 1, d & 1]
        self.set_list(bits)

    @classmethod
    def from_umask(cls, umask: int = 0o177) -> Permissions:
        perms = cls()
        mode = 0o777 & ~umask
        perms.set_octet(f"{mode:03o}")
        return perms


@dataclass
class Group:
    id: int
    name: str


@dataclass
class User:
    id: int
    name: str
    password: str
    gid: int
    gname: str
    groups: list[int]
    auth_driver: str = "core"
    enabled: bool = True
    template: ts.Template = field(default_factory=dict)

    @property
    def password_hash(self) -> str:
        return hashlib.sha256(self.password.encode()).hexdigest()

    @property
    def token_password(self) -> str | None:
        value = ts.first(self.template, "TOKEN_PASSWORD")
        return value if isinstance(value, str) else None

    def is_admin(self) -> bool:
        return self.id == 0 or 0 in self.groups


@dataclass
class History:
    seq: int
    hostname: str
    hid: int
    stime: int
    etime: int = 0
    cid: int = 0
    vm_mad: str = "dummy"
    tm_mad: str = "dummy"
    ds_id: int = 0
    action: int = 0
    pstime: int = 0
    petime: int = 0
    rstime: int = 0
    retime: int = 0
    estime: int = 0
    eetime: int = 0


@dataclass
class Vm:
    id: int
    uid: int
    gid: int
    uname: str
    gname: str
    name: str
    perms: Permissions = field(default_factory=Permissions)
    state: int = PENDING
    lcm_state: int = 0
    prev_state: int = PENDING
    prev_lcm_state: int = 0
    resched: int = 0
    stime: int = 0
    etime: int = 0
    deploy_id: str = ""
    last_poll: int = 0
    monitoring: dict[str, str] = field(default_factory=dict)
    template: ts.Template = field(default_factory=dict)
    user_template: ts.Template = field(default_factory=dict)
    history: list[History] = field(default_factory=list)
    # emulator bookkeeping (not serialised by oned)
    transitions: list[tuple[float, int, int]] = field(default_factory=list)
    boot_requested: bool = True
    cache: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def changed(self) -> None:
        self.cache.clear()

    def set_state(self, state: int, lcm_state: int) -> None:
        # oned calls set_prev_state() after writing the VM to the DB, so what clients read has
        # PREV_STATE/PREV_LCM_STATE equal to STATE/LCM_STATE (as in the recorded samples).
        self.state = self.prev_state = state
        self.lcm_state = self.prev_lcm_state = lcm_state
        self.changed()

    @property
    def state_str(self) -> str:
        if self.state == ACTIVE:
            return LCM_STATE_NAMES[self.lcm_state]
        return VM_STATE_NAMES[self.state]

    def nics(self) -> list[ts.Vector]:
        return [n for n in ts.values(self.template, "NIC") if isinstance(n, dict)]


@dataclass
class VmTemplate:
    id: int
    uid: int
    gid: int
    uname: str
    gname: str
    name: str
    regtime: int
    template: ts.Template
    perms: Permissions = field(default_factory=Permissions)


@dataclass
class Image:
    """``Image`` of oned. ``state`` is the stored one; READY shows as USED/USED_PERS while
    VMs use the image (derived from the VMs' DISKs, see ``Cloud.image_vms``)."""

    id: int
    uid: int
    gid: int
    uname: str
    gname: str
    name: str
    regtime: int
    template: ts.Template
    type: int = 0  # OS
    persistent: int = 0
    path: str = ""
    source: str = ""
    format: str = ""
    size_mb: int = 0
    state: int = IMAGE_STATE["LOCKED"]
    prev_state: int = IMAGE_STATE["INIT"]
    datastore_id: int = 1
    perms: Permissions = field(default_factory=Permissions)
    ready_at: float = 0.0  # emulator bookkeeping: when LOCKED -> READY, or DELETE -> gone


@dataclass
class Network:
    id: int
    name: str
    ar_start: str = "10.0.0.10"
    ar_size: int = 65000
    network_address: str = "10.0.0.0"
    network_mask: str = "255.255.255.0"
    gateway: str = "10.0.0.1"
    dns: str = "10.0.0.1"
    bridge: str = "br0"
    vn_mad: str = "dummy"
    uid: int = 0
    uname: str = "oneadmin"
    leases: dict[int, int] = field(default_factory=dict)  # address index -> vm id
    next_index: int = 0

    def lease(self, vm_id: int, ip: str | None = None) -> tuple[int, str, str]:
        """Returns (index, ip, mac); first free address after the last one handed out."""
        start = ipaddress.IPv4Address(self.ar_start)
        if ip is not None:
            index = int(ipaddress.IPv4Address(ip)) - int(start)
        else:
            index = -1
            for step in range(self.ar_size):
                candidate = (self.next_index + step) % self.ar_size
                if candidate not in self.leases:
                    index = candidate
                    break
            if index < 0:
                raise LookupError(f"Cannot get IP/MAC lease from virtual network {self.id}.")
            self.next_index = index + 1
        self.leases[index] = vm_id
        addr = ipaddress.IPv4Address(int(start) + index)
        return index, str(addr), mac_for(str(addr))

    def release(self, vm_id: int) -> None:
        for index in [i for i, v in self.leases.items() if v == vm_id]:
            del self.leases[index]


def mac_for(ip: str) -> str:
    """OpenNebula's default MAC: ``02:00`` followed by the IPv4 address bytes."""
    octets = [int(o) for o in ip.split(".")]
    return "02:00:" + ":".join(f"{o:02x}" for o in octets)


@dataclass
class Document:
    id: int
    uid: int
    gid: int
    uname: str
    gname: str
    name: str
    type: int
    body: Any  # parsed JSON body (dict) or the raw BODY text when it is not JSON
    perms: Permissions = field(default_factory=Permissions)

    def body_text(self) -> str:
        from .compat import ruby_json

        return self.body if isinstance(self.body, str) else ruby_json(self.body)


@dataclass
class Host:
    id: int
    name: str
    cluster_id: int = 0
    cluster: str = "default"
    state: int = 2
    total_cpu: int = 800
    total_mem: int = 16777216


class Store:
    """All objects plus id counters; ``lock`` must be held for any access."""

    def __init__(self, seed: int | None = None, version: str = "7.0") -> None:
        self.lock = threading.RLock()
        self.rng = random.Random(seed)  # noqa: S311 - oned's random_password is not a secret here
        self.version = version
        self.groups: dict[int, Group] = {0: Group(0, "oneadmin"), 1: Group(1, "users")}
        self.users: dict[int, User] = {}
        self.vms: dict[int, Vm] = {}
        self.vm_templates: dict[int, VmTemplate] = {}
        self.images: dict[int, Image] = {}
        self.networks: dict[int, Network] = {}
        self.documents: dict[int, Document] = {}
        self.hosts: dict[int, Host] = {0: Host(0, "dummy-host")}
        self.next_ids: dict[str, int] = dict.fromkeys(
            ["user", "vm", "template", "image", "network", "document"], 0
        )
        self.next_ids["group"] = 2

    def next_id(self, kind: str) -> int:
        value = self.next_ids[kind]
        self.next_ids[kind] = value + 1
        return value

    def user_by_name(self, name: str) -> User | None:
        for user in self.users.values():
            if user.name == name:
                return user
        return None

    def network_by_name(self, name: str) -> Network | None:
        for net in self.networks.values():
            if net.name == name:
                return net
        return None

    def uuid(self) -> str:
        return "%08x-%04x-4%03x-%04x-%012x" % (  # noqa: UP031 - fixed-width hex fields
            self.rng.getrandbits(32),
            self.rng.getrandbits(16),
            self.rng.getrandbits(12),
            0x8000 | self.rng.getrandbits(14),
            self.rng.getrandbits(48),
        )

    # ---------------------------------------------------------------------------- persistence
    def dump(self) -> dict[str, Any]:
        def ser(obj: Any) -> Any:
            if hasattr(obj, "__dataclass_fields__"):
                out = {}
                for name in obj.__dataclass_fields__:
                    if name in ("cache", "transitions"):
                        continue
                    out[name] = ser(getattr(obj, name))
                return out
            if isinstance(obj, dict):
                return {str(k): ser(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [ser(v) for v in obj]
            return obj

        return {
            "format": "opennebula-emulator-state/1",
            "version": self.version,
            "next_ids": dict(self.next_ids),
            "groups": [ser(g) for g in self.groups.values()],
            "users": [ser(u) for u in self.users.values()],
            "hosts": [ser(h) for h in self.hosts.values()],
            "networks": [ser(n) for n in self.networks.values()],
            "vm_templates": [ser(t) for t in self.vm_templates.values()],
            "images": [ser(i) for i in self.images.values()],
            "vms": [ser(v) for v in self.vms.values()],
            "documents": [ser(d) for d in self.documents.values()],
        }

    def load(self, data: dict[str, Any]) -> None:
        def perms(d: dict[str, Any] | None) -> Permissions:
            return Permissions(**d) if d else Permissions()

        self.version = data.get("version", self.version)
        self.next_ids.update(data.get("next_ids", {}))
        for g in data.get("groups", []):
            self.groups[g["id"]] = Group(g["id"], g["name"])
        for u in data.get("users", []):
            self.users[u["id"]] = User(**u)
        for h in data.get("hosts", []):
            self.hosts[h["id"]] = Host(**h)
        for n in data.get("networks", []):
            n = dict(n)
            n["leases"] = {int(k): v for k, v in n.get("leases", {}).items()}
            self.networks[n["id"]] = Network(**n)
        for t in data.get("vm_templates", []):
            t = dict(t)
            t["perms"] = perms(t.get("perms"))
            self.vm_templates[t["id"]] = VmTemplate(**t)
        for i in data.get("images", []):
            i = dict(i)
            i["perms"] = perms(i.get("perms"))
            i["ready_at"] = 0.0  # a monotonic time of another process: due at the next tick
            self.images[i["id"]] = Image(**i)
        for v in data.get("vms", []):
            v = dict(v)
            v["perms"] = perms(v.get("perms"))
            v["history"] = [History(**h) for h in v.get("history", [])]
            self.vms[v["id"]] = Vm(**v)
        for d in data.get("documents", []):
            d = dict(d)
            d["perms"] = perms(d.get("perms"))
            self.documents[d["id"]] = Document(**d)
        for kind, objects in (
            ("user", self.users),
            ("vm", self.vms),
            ("template", self.vm_templates),
            ("image", self.images),
            ("network", self.networks),
            ("document", self.documents),
        ):
            if objects:
                self.next_ids[kind] = max(self.next_ids[kind], max(objects) + 1)

    def to_json(self) -> str:
        return json.dumps(self.dump(), indent=1)
