"""oned XML documents, built as a small node tree so that the same tree gives both the XML
string (what ``one.*.info`` returns) and Ruby's ``XMLElement#to_hash`` (what OneGate returns).

Node kinds mirror the four shapes oned writes:

* ``TEXT``  ``<ID>5</ID>`` (``<<`` into the stream; empty gives ``<A></A>``, i.e. ``{}`` in to_hash)
* ``CDATA`` ``<A><![CDATA[v]]></A>`` (``one_util::escape_xml``; empty stays ``""`` in to_hash)
* ``ELEM``  element with children (``<A></A>`` when there are none)
* ``EMPTY`` ``<A/>``
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import template_syntax as ts
from .state import (
    DATASTORES,
    DONE,
    Document,
    History,
    Host,
    Image,
    Network,
    Permissions,
    User,
    Vm,
    VmTemplate,
)

TEXT, CDATA, ELEM, EMPTY = range(4)


class Node(NamedTuple):
    name: str
    content: Any
    kind: int


def text(name: str, value: Any) -> Node:
    return Node(name, str(value), TEXT)


def cdata(name: str, value: Any) -> Node:
    return Node(name, str(value), CDATA)


def elem(name: str, children: list[Node]) -> Node:
    return Node(name, children, ELEM)


def empty(name: str) -> Node:
    return Node(name, None, EMPTY)


def _esc(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cdata(value: str) -> str:
    # oned does not split "]]>" (its XML would be broken); splitting keeps ours well-formed
    if "]]>" in value:
        value = value.replace("]]>", "]]]]><![CDATA[>")
    return "<![CDATA[" + value + "]]>"


def render(node: Node, out: list[str] | None = None) -> str:
    parts: list[str] = [] if out is None else out
    name, content, kind = node
    if kind == TEXT:
        parts.append(f"<{name}>{_esc(content)}</{name}>")
    elif kind == CDATA:
        parts.append(f"<{name}>{_cdata(content)}</{name}>")
    elif kind == EMPTY:
        parts.append(f"<{name}/>")
    else:
        parts.append(f"<{name}>")
        for child in content:
            render(child, parts)
        parts.append(f"</{name}>")
    return "".join(parts) if out is None else ""


def to_hash(node: Node) -> dict[str, Any]:
    """``XMLElement#to_hash`` with Nokogiri: ``{root_name: value}``."""
    return {node.name: _hash_value(node)}


def _hash_value(node: Node) -> Any:
    _, content, kind = node
    if kind == CDATA:
        return content
    if kind == TEXT:
        return content if content != "" else {}
    if kind == EMPTY or not content:
        return {}
    out: dict[str, Any] = {}
    for child in content:
        value = _hash_value(child)
        if child.name in out:
            current = out[child.name]
            if isinstance(current, list):
                current.append(value)
            else:
                out[child.name] = [current, value]
        else:
            out[child.name] = value
    return out


# ----------------------------------------------------------------------------------- helpers
def perms_node(perms: Permissions) -> Node:
    return elem(
        "PERMISSIONS", [text(f, v) for f, v in zip(perms.FIELDS, perms.as_list(), strict=True)]
    )


def template_node(name: str, tmpl: ts.Template) -> Node:
    """``Template::to_xml``: sorted attributes, CDATA values, vector sub-keys sorted."""
    children: list[Node] = []
    for key, value in ts.sorted_items(tmpl):
        if isinstance(value, dict):
            children.append(elem(key, [cdata(k, v) for k, v in sorted(value.items()) if k]))
        else:
            children.append(cdata(key, value))
    return elem(name, children)


# ------------------------------------------------------------------------------------- VM
def history_node(h: History, vm_id: int) -> Node:
    """``History::to_xml``."""
    return elem(
        "HISTORY",
        [
            text("OID", vm_id),
            text("SEQ", h.seq),
            text("HOSTNAME", h.hostname),
            text("HID", h.hid),
            text("CID", h.cid),
            text("STIME", h.stime),
            text("ETIME", h.etime),
            cdata("VM_MAD", h.vm_mad),
            cdata("TM_MAD", h.tm_mad),
            text("DS_ID", h.ds_id),
            text("PLAN_ID", -1),
            text("ACTION_ID", 0),
            text("PSTIME", h.pstime),
            text("PETIME", h.petime),
            text("RSTIME", h.rstime),
            text("RETIME", h.retime),
            text("ESTIME", h.estime),
            text("EETIME", h.eetime),
            text("ACTION", h.action),
            text("UID", -1),
            text("GID", -1),
            text("REQUEST_ID", -1),
        ],
    )


def vm_node(vm: Vm, *, monitoring: bool = True) -> Node:
    """``VirtualMachine::to_xml_extended``; ``monitoring=False`` is the pool variant
    (``one.vmpool.infoextended`` does not load monitoring: ``LAST_POLL`` 0, empty element)."""
    children = [
        text("ID", vm.id),
        text("UID", vm.uid),
        text("GID", vm.gid),
        text("UNAME", vm.uname),
        text("GNAME", vm.gname),
        text("NAME", vm.name),
        perms_node(vm.perms),
        text("LAST_POLL", vm.last_poll if monitoring else 0),
        text("STATE", vm.state),
        text("LCM_STATE", vm.lcm_state),
        text("PREV_STATE", vm.prev_state),
        text("PREV_LCM_STATE", vm.prev_lcm_state),
        text("RESCHED", vm.resched),
        text("STIME", vm.stime),
        text("ETIME", vm.etime),
        text("DEPLOY_ID", vm.deploy_id),
        elem(
            "MONITORING",
            [cdata(k, v) for k, v in sorted(vm.monitoring.items())] if monitoring else [],
        ),
        elem("SCHED_ACTIONS", []),
        template_node("TEMPLATE", vm.template),
        template_node("USER_TEMPLATE", vm.user_template),
    ]
    if vm.history:
        children.append(elem("HISTORY_RECORDS", [history_node(vm.history[-1], vm.id)]))
    else:
        children.append(empty("HISTORY_RECORDS"))
    children.append(elem("BACKUPS", [empty("BACKUP_CONFIG"), elem("BACKUP_IDS", [])]))
    return elem("VM", children)


_SHORT_USER_ATTRS = (
    "LABELS", "ERROR", "SCHED_MESSAGE", "SCHED_RANK", "SCHED_DS_RANK", "SCHED_REQUIREMENTS",
    "SCHED_DS_REQUIREMENTS", "USER_PRIORITY",
)  # fmt: skip
_NIC_SHORT_OPTIONAL = (
    "IP", "EXTERNAL_IP", "IP6", "IP6_ULA", "IP6_LINK", "IP6_GLOBAL", "NETWORK_MODE",
    "SCHED_REQUIREMENTS", "SCHED_RANK",
)  # fmt: skip
_DISK_SHORT = (
    "DISK_ID", "DATASTORE", "DATASTORE_ID", "IMAGE", "IMAGE_ID", "SIZE", "TYPE", "CLONE",
    "CLONE_TARGET", "LN_TARGET", "DISK_SNAPSHOT_TOTAL_SIZE",
)  # fmt: skip


def vm_short_node(vm: Vm) -> Node:
    """``VirtualMachine::to_xml_short`` (``one.vmpool.info``)."""

    def tval(name: str) -> str:
        value = ts.first(vm.template, name)
        return value if isinstance(value, str) else ""

    tmpl: list[Node] = [
        text("CPU", tval("CPU")),
        text("MEMORY", tval("MEMORY")),
        text("VCPU", tval("VCPU")),
    ]
    for disk in ts.values(vm.template, "DISK"):
        if isinstance(disk, dict):
            tmpl.append(elem("DISK", [cdata(k, disk.get(k, "")) for k in _DISK_SHORT]))
    for nic in vm.nics():
        nic_children = [cdata(k, nic[k]) for k in _NIC_SHORT_OPTIONAL if nic.get(k)]
        nic_children += [
            cdata(k, nic.get(k, ""))
            for k in ("MAC", "NETWORK", "NETWORK_ID", "NIC_ID", "SECURITY_GROUPS")
        ]
        tmpl.append(elem("NIC", nic_children))
    graphics = ts.first(vm.template, "GRAPHICS")
    if isinstance(graphics, dict):
        tmpl.append(elem("GRAPHICS", [cdata(k, v) for k, v in sorted(graphics.items())]))
    if vm.monitoring:
        mon = elem(
            "MONITORING",
            [cdata(k, vm.monitoring[k]) for k in ("CPU", "MEMORY", "STATE") if k in vm.monitoring],
        )
    else:
        mon = empty("MONITORING")
    user_children = []
    for key in _SHORT_USER_ATTRS:
        value = ts.first(vm.user_template, key)
        if isinstance(value, str) and (value or key.startswith(("SCHED_R", "SCHED_D", "USER"))):
            user_children.append(cdata(key, value))
    for sched in ts.values(vm.user_template, "SCHED_ACTION"):
        if isinstance(sched, dict):
            user_children.append(
                elem("SCHED_ACTION", [cdata(k, v) for k, v in sorted(sched.items())])
            )
    user = elem("USER_TEMPLATE", user_children) if vm.user_template else empty("USER_TEMPLATE")
    children = [
        text("ID", vm.id),
        text("UID", vm.uid),
        text("GID", vm.gid),
        text("UNAME", vm.uname),
        text("GNAME", vm.gname),
        text("NAME", vm.name),
        text("LAST_POLL", vm.last_poll),
        text("STATE", vm.state),
        text("LCM_STATE", vm.lcm_state),
        text("RESCHED", vm.resched),
        text("STIME", vm.stime),
        text("ETIME", vm.etime),
        text("DEPLOY_ID", vm.deploy_id),
        elem("TEMPLATE", tmpl),
        mon,
        user,
    ]
    if vm.history:
        h = vm.history[-1]
        children.append(
            elem(
                "HISTORY_RECORDS",
                [
                    elem(
                        "HISTORY",
                        [
                            text("OID", vm.id),
                            text("SEQ", h.seq),
                            cdata("HOSTNAME", h.hostname),
                            text("HID", h.hid),
                            text("CID", h.cid),
                            text("DS_ID", h.ds_id),
                            cdata("VM_MAD", h.vm_mad),
                            cdata("TM_MAD", h.tm_mad),
                            cdata("ACTION", h.action),
                        ],
                    )
                ],
            )
        )
    else:
        children.append(empty("HISTORY_RECORDS"))
    return elem("VM", children)


def vm_xml(vm: Vm, variant: str) -> str:
    """Cached XML of one VM. ``variant``: ``info`` (one.vm.info), ``pool`` (infoextended),
    ``short`` (vmpool.info)."""
    cached = vm.cache.get(variant)
    if cached is None:
        if variant == "info":
            cached = _vm_fast(vm, monitoring=True)
        elif variant == "pool":
            cached = _vm_fast(vm, monitoring=False)
        else:
            cached = render(vm_short_node(vm))
        vm.cache[variant] = cached
    return cached


def _template_fast(name: str, tmpl: ts.Template) -> str:
    parts = [f"<{name}>"]
    for key, value in ts.sorted_items(tmpl):
        if isinstance(value, dict):
            inner = "".join(f"<{k}>{_cdata(v)}</{k}>" for k, v in sorted(value.items()) if k)
            parts.append(f"<{key}>{inner}</{key}>")
        else:
            parts.append(f"<{key}>{_cdata(value)}</{key}>")
    parts.append(f"</{name}>")
    return "".join(parts)


def _vm_fast(vm: Vm, *, monitoring: bool) -> str:
    """Same bytes as ``render(vm_node(vm))`` (checked by the tests), without the node tree:
    the pool answers for thousands of VMs are built from these strings."""
    perms = "".join(
        f"<{f}>{v}</{f}>" for f, v in zip(vm.perms.FIELDS, vm.perms.as_list(), strict=True)
    )
    mon = (
        "".join(f"<{k}>{_cdata(v)}</{k}>" for k, v in sorted(vm.monitoring.items()))
        if monitoring
        else ""
    )
    if vm.history:
        hist = (
            "<HISTORY_RECORDS>" + render(history_node(vm.history[-1], vm.id)) + "</HISTORY_RECORDS>"
        )
    else:
        hist = "<HISTORY_RECORDS/>"
    return (
        f"<VM><ID>{vm.id}</ID><UID>{vm.uid}</UID><GID>{vm.gid}</GID><UNAME>{_esc(vm.uname)}</UNAME>"
        f"<GNAME>{_esc(vm.gname)}</GNAME><NAME>{_esc(vm.name)}</NAME><PERMISSIONS>{perms}</PERMISSIONS>"
        f"<LAST_POLL>{vm.last_poll if monitoring else 0}</LAST_POLL><STATE>{vm.state}</STATE>"
        f"<LCM_STATE>{vm.lcm_state}</LCM_STATE><PREV_STATE>{vm.prev_state}</PREV_STATE>"
        f"<PREV_LCM_STATE>{vm.prev_lcm_state}</PREV_LCM_STATE><RESCHED>{vm.resched}</RESCHED>"
        f"<STIME>{vm.stime}</STIME><ETIME>{vm.etime}</ETIME><DEPLOY_ID>{_esc(vm.deploy_id)}</DEPLOY_ID>"
        f"<MONITORING>{mon}</MONITORING><SCHED_ACTIONS></SCHED_ACTIONS>"
        + _template_fast("TEMPLATE", vm.template)
        + _template_fast("USER_TEMPLATE", vm.user_template)
        + hist
        + "<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS></BACKUP_IDS></BACKUPS></VM>"
    )


# ------------------------------------------------------------------------------ documents
def document_node(doc: Document) -> Node:
    """``Document::to_xml``."""
    return elem(
        "DOCUMENT",
        [
            text("ID", doc.id),
            text("UID", doc.uid),
            text("GID", doc.gid),
            text("UNAME", doc.uname),
            text("GNAME", doc.gname),
            text("NAME", doc.name),
            text("TYPE", doc.type),
            perms_node(doc.perms),
            elem("TEMPLATE", [cdata("BODY", doc.body_text())]),
        ],
    )


# ----------------------------------------------------------------------------------- users
def _quota_nodes() -> list[Node]:
    return [elem(q, []) for q in ("DATASTORE_QUOTA", "NETWORK_QUOTA", "VM_QUOTA", "IMAGE_QUOTA")]


def user_node(user: User, *, extended: bool = True) -> Node:
    """``User::to_xml_extended`` (as recorded in ``oned-xmlrpc-one.user.info-0.xml``)."""
    children = [
        text("ID", user.id),
        text("GID", user.gid),
        elem("GROUPS", [text("ID", g) for g in user.groups]),
        text("GNAME", user.gname),
        text("NAME", user.name),
        cdata("PASSWORD", user.password_hash),
        cdata("AUTH_DRIVER", user.auth_driver),
        text("ENABLED", 1 if user.enabled else 0),
        template_node("TEMPLATE", user.template),
    ]
    if extended:
        children += _quota_nodes()
        children.append(elem("DEFAULT_USER_QUOTAS", _quota_nodes()))
    return elem("USER", children)


def user_pool_node(users: list[User]) -> Node:
    children = [user_node(u, extended=False) for u in users]
    children.append(elem("DEFAULT_USER_QUOTAS", _quota_nodes()))
    return elem("USER_POOL", children)


# ------------------------------------------------------------------------------- templates
def vm_template_node(tmpl: VmTemplate) -> Node:
    """``VMTemplate::to_xml``."""
    return elem(
        "VMTEMPLATE",
        [
            text("ID", tmpl.id),
            text("UID", tmpl.uid),
            text("GID", tmpl.gid),
            text("UNAME", tmpl.uname),
            text("GNAME", tmpl.gname),
            text("NAME", tmpl.name),
            perms_node(tmpl.perms),
            text("REGTIME", tmpl.regtime),
            template_node("TEMPLATE", tmpl.template),
        ],
    )


# ---------------------------------------------------------------------------------- images
def image_node(image: Image, state: int, vms: list[int]) -> Node:
    """``Image::to_xml`` (7.0): ``state`` and ``vms`` come from ``Cloud.image_state/image_vms``.
    SOURCE/PATH/FORMAT/FS are escaped text; the collections are empty elements when empty."""
    snapshots = [text("ALLOW_ORPHANS", "NO"), text("CURRENT_BASE", -1), text("NEXT_SNAPSHOT", 0)]
    return elem(
        "IMAGE",
        [
            text("ID", image.id),
            text("UID", image.uid),
            text("GID", image.gid),
            text("UNAME", image.uname),
            text("GNAME", image.gname),
            text("NAME", image.name),
            perms_node(image.perms),
            text("TYPE", image.type),
            text("DISK_TYPE", 0),
            text("PERSISTENT", image.persistent),
            text("REGTIME", image.regtime),
            text("SOURCE", image.source),
            text("PATH", image.path),
            text("FORMAT", image.format),
            text("FS", ""),
            text("SIZE", image.size_mb),
            text("STATE", state),
            text("PREV_STATE", image.prev_state),
            text("RUNNING_VMS", len(vms)),
            text("CLONING_OPS", 0),
            text("CLONING_ID", -1),
            text("TARGET_SNAPSHOT", -1),
            text("DATASTORE_ID", image.datastore_id),
            text("DATASTORE", DATASTORES[image.datastore_id][0]),
            elem("VMS", [text("ID", vm_id) for vm_id in vms]),
            elem("CLONES", []),
            elem("APP_CLONES", []),
            template_node("TEMPLATE", image.template),
            elem("SNAPSHOTS", snapshots),
            empty("BACKUP_INCREMENTS"),
            elem("BACKUP_DISK_IDS", []),
        ],
    )


# ----------------------------------------------------------------------------------- hosts
def host_node(host: Host, vms: list[Vm]) -> Node:
    """A dummy-driver host shaped like ``oned-xmlrpc-one.hostpool.info.xml``."""
    running = [vm for vm in vms if vm.history and vm.state not in (DONE,)]
    cpu_usage = 0
    mem_usage = 0
    for vm in running:
        cpu = ts.first(vm.template, "CPU")
        mem = ts.first(vm.template, "MEMORY")
        try:
            cpu_usage += int(float(cpu) * 100) if isinstance(cpu, str) else 0
            mem_usage += int(mem) * 1024 if isinstance(mem, str) else 0
        except ValueError:
            pass
    share = elem(
        "HOST_SHARE",
        [
            text("MEM_USAGE", mem_usage),
            text("CPU_USAGE", cpu_usage),
            text("TOTAL_MEM", host.total_mem),
            text("TOTAL_CPU", host.total_cpu),
            text("MAX_MEM", host.total_mem),
            text("MAX_CPU", host.total_cpu),
            text("RUNNING_VMS", len(running)),
            text("VMS_THREAD", 1),
            elem(
                "DATASTORES",
                [
                    cdata("DISK_USAGE", 0),
                    cdata("FREE_DISK", 20480),
                    cdata("MAX_DISK", 20480),
                    cdata("USED_DISK", 9720),
                ],
            ),
            elem("PCI_DEVICES", []),
            elem("NUMA_NODES", []),
        ],
    )
    host_tmpl = {
        "ARCH": "x86_64",
        "CPUSPEED": "3200",
        "HOSTNAME": host.name,
        "HYPERVISOR": "dummy",
        "IM_MAD": "dummy",
        "MODELNAME": "Dummy(R) Core @ 3.2GHz",
        "RESERVED_CPU": "",
        "RESERVED_MEM": "",
        "TOTALCPU": str(host.total_cpu),
        "TOTALMEMORY": str(host.total_mem),
        "VM_MAD": "dummy",
    }
    return elem(
        "HOST",
        [
            text("ID", host.id),
            text("NAME", host.name),
            text("STATE", host.state),
            text("PREV_STATE", host.state),
            cdata("IM_MAD", "dummy"),
            cdata("VM_MAD", "dummy"),
            text("CLUSTER_ID", host.cluster_id),
            text("CLUSTER", host.cluster),
            share,
            elem("VMS", [text("ID", vm.id) for vm in running]),
            template_node("TEMPLATE", dict(host_tmpl)),
            empty("MONITORING"),
        ],
    )


# -------------------------------------------------------------------------------- networks
def vnet_node(net: Network) -> Node:
    """A minimal ``VirtualNetwork::to_xml`` (one address range)."""
    leases = [
        elem(
            "LEASE",
            [cdata("IP", _ip_at(net, idx)), cdata("MAC", _mac_at(net, idx)), cdata("VM", vm_id)],
        )
        for idx, vm_id in sorted(net.leases.items())
    ]
    ar = elem(
        "AR",
        [
            cdata("AR_ID", 0),
            cdata("IP", net.ar_start),
            cdata("MAC", _mac_at(net, 0)),
            cdata("SIZE", net.ar_size),
            cdata("TYPE", "IP4"),
            elem("LEASES", leases),
        ],
    )
    return elem(
        "VNET",
        [
            text("ID", net.id),
            text("UID", net.uid),
            text("GID", 0),
            text("UNAME", net.uname),
            text("GNAME", "oneadmin"),
            text("NAME", net.name),
            perms_node(Permissions()),
            elem("CLUSTERS", [text("ID", 0)]),
            text("BRIDGE", net.bridge),
            text("BRIDGE_TYPE", "linux"),
            text("STATE", 1),
            text("PREV_STATE", 0),
            text("PARENT_NETWORK_ID", ""),
            text("VN_MAD", net.vn_mad),
            text("USED_LEASES", len(net.leases)),
            elem("VROUTERS", []),
            elem("UPDATED_VMS", []),
            elem("OUTDATED_VMS", []),
            elem("UPDATING_VMS", []),
            elem("ERROR_VMS", []),
            template_node(
                "TEMPLATE",
                {
                    "DNS": net.dns,
                    "GATEWAY": net.gateway,
                    "NETWORK_ADDRESS": net.network_address,
                    "NETWORK_MASK": net.network_mask,
                },
            ),
            elem("AR_POOL", [ar]),
        ],
    )


def _ip_at(net: Network, index: int) -> str:
    import ipaddress

    return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address(net.ar_start)) + index))


def _mac_at(net: Network, index: int) -> str:
    from .state import mac_for

    return mac_for(_ip_at(net, index))
