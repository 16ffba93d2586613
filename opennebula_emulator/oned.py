"""oned XML-RPC (``/RPC2``): the calls pyone, community.general and OneFlow/OneGate make.

Responses are byte-identical to ``xmlrpc.client.dumps((value,), methodresponse=True)`` (that is
the shape of the recorded ``oned-xmlrpc-one.vm.info-999-error.xml``): success
``[true, result, 0]``, failure ``[false, message, code, resp_id, -1]``. Parameter errors become
XML-RPC faults the way xmlrpc-c's ``paramList::getInt``/``getString`` raise them.
"""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Callable
from typing import Any
from xml.parsers.expat import ExpatError

from . import template_syntax as ts
from . import xml as X
from .core import INTERNAL, XML_RPC_API, Cloud, OnedError
from .runtime import Runtime
from .state import DONE, User

VERSIONS = {"7.0": "7.0.2", "6.10": "6.10.5"}

FAULT_TYPE = -501  # xmlrpc_c::fault::CODE_TYPE
FAULT_NO_SUCH_METHOD = -506
FAULT_PARSE = -503


def _esc(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return f"<value><boolean>{int(v)}</boolean></value>\n"
    if isinstance(v, int):
        return f"<value><int>{v}</int></value>\n"
    return f"<value><string>{_esc(str(v))}</string></value>\n"


def method_response(values: list[Any]) -> bytes:
    """Same bytes as ``xmlrpc.client.dumps((values,), methodresponse=True)``, faster for the
    multi-megabyte pool answers."""
    body = (
        "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n"
        + "".join(_value(v) for v in values)
        + "</data></array></value>\n</param>\n</params>\n</methodResponse>\n"
    )
    return body.encode("utf-8")


def fault_response(code: int, message: str) -> bytes:
    return xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True).encode(
        "utf-8"
    )


class Fault(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Params:
    """``xmlrpc_c::paramList`` accessors."""

    def __init__(self, values: tuple[Any, ...]) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def _get(self, i: int) -> Any:
        if i >= len(self.values):
            raise Fault(FAULT_TYPE, "Not enough parameters")
        return self.values[i]

    def int(self, i: int) -> int:
        v = self._get(i)
        if type(v) is not int:
            raise Fault(FAULT_TYPE, "Parameter that is supposed to be integer is not")
        return v

    def str(self, i: int) -> str:
        v = self._get(i)
        if not isinstance(v, str):
            raise Fault(FAULT_TYPE, "Parameter that is supposed to be a string is not")
        return v

    def bool(self, i: int) -> bool:
        v = self._get(i)
        if not isinstance(v, bool):
            raise Fault(FAULT_TYPE, "Parameter that is supposed to be boolean is not")
        return v


Handler = Callable[[User, Params, str], Any]


class OnedApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.methods: dict[str, Handler] = {
            "one.system.version": self.system_version,
            "one.system.config": self.system_config,
            "one.user.info": self.user_info,
            "one.userpool.info": self.userpool_info,
            "one.vm.info": self.vm_info,
            "one.vm.update": self.vm_update,
            "one.vm.action": self.vm_action,
            "one.vm.rename": self.vm_rename,
            "one.vm.chmod": self.vm_chmod,
            "one.vm.chown": self.vm_chown,
            "one.vm.updateconf": self.vm_updateconf,
            "one.vm.allocate": self.vm_allocate,
            "one.vmpool.info": self.vmpool_info,
            "one.vmpool.infoextended": self.vmpool_infoextended,
            "one.vmpool.infoset": self.vmpool_infoset,
            "one.template.info": self.template_info,
            "one.template.allocate": self.template_allocate,
            "one.template.instantiate": self.template_instantiate,
            "one.template.update": self.template_update,
            "one.template.delete": self.template_delete,
            "one.templatepool.info": self.templatepool_info,
            "one.image.allocate": self.image_allocate,
            "one.image.info": self.image_info,
            "one.image.delete": self.image_delete,
            "one.image.rename": self.image_rename,
            "one.image.enable": self.image_enable,
            "one.image.persistent": self.image_persistent,
            "one.imagepool.info": self.imagepool_info,
            "one.document.info": self.document_info,
            "one.document.allocate": self.document_allocate,
            "one.document.update": self.document_update,
            "one.document.delete": self.document_delete,
            "one.documentpool.info": self.documentpool_info,
            "one.host.info": self.host_info,
            "one.hostpool.info": self.hostpool_info,
            "one.vn.info": self.vn_info,
            "one.vnpool.info": self.vnpool_info,
        }

    @property
    def cloud(self) -> Cloud:
        return self.rt.cloud

    # ------------------------------------------------------------------------------ entry
    def handle(self, body: bytes) -> tuple[bytes, str]:
        """Process one ``methodCall``; returns (response bytes, method name for counters)."""
        try:
            params, method = xmlrpc.client.loads(body, use_builtin_types=False)
        except (ExpatError, ValueError, TypeError, IndexError):
            params, method = None, "<invalid>"
        method = method or "<none>"
        self.rt.arrive("oned", method)
        if params is None:
            return fault_response(FAULT_PARSE, "Call XML not a proper XML-RPC call"), method
        handler = self.methods.get(method)
        if handler is None:
            return fault_response(FAULT_NO_SUCH_METHOD, f"Method '{method}' not defined"), method
        p = Params(params)
        try:
            with self.rt.locked():
                session = p.str(0)
                user = self.cloud.authenticate(session, method)
                result = handler(user, p, method)
        except Fault as exc:
            return fault_response(exc.code, exc.message), method
        except OnedError as exc:
            return method_response([False, exc.message, exc.code, exc.resp_id, -1]), method
        return method_response([True, result, 0]), method

    # ---------------------------------------------------------------------------- system
    def system_version(self, user: User, p: Params, method: str) -> str:
        return VERSIONS.get(self.rt.config.version, "7.0.2")

    def system_config(self, user: User, p: Params, method: str) -> str:
        conf = {
            "API_LIST_ORDER": "DESC",
            "DEFAULT_UMASK": "177",
            "MONITORING_INTERVAL_HOST": "180",
            "ONEGATE_ENDPOINT": self.rt.config.onegate_endpoint,
            "VM_RESTRICTED_ATTR": ["CONTEXT/FILES", "NIC/MAC", "NIC/VLAN_ID", "NIC/BRIDGE"],
        }
        return X.render(X.template_node("OPENNEBULA_CONFIGURATION", conf))

    # ------------------------------------------------------------------------------ users
    def user_info(self, user: User, p: Params, method: str) -> str:
        target = self.cloud.user_info(user, p.int(1), method)
        return X.render(X.user_node(target))

    def userpool_info(self, user: User, p: Params, method: str) -> str:
        users = sorted(self.rt.store.users.values(), key=lambda u: u.id)
        if not user.is_admin():
            users = [u for u in users if u.id == user.id]
        return X.render(X.user_pool_node(users))

    # -------------------------------------------------------------------------------- VMs
    def vm_info(self, user: User, p: Params, method: str) -> str:
        vm = self.cloud.get_vm(user, p.int(1), method)
        return X.vm_xml(vm, "info")

    def vm_update(self, user: User, p: Params, method: str) -> int:
        vm_id, text = p.int(1), p.str(2)
        append = p.int(3) if len(p) > 3 else 0
        return self.cloud.vm_update(user, vm_id, text, append, method)

    def vm_action(self, user: User, p: Params, method: str) -> int:
        return self.cloud.vm_action(user, p.str(1), p.int(2), method)

    def vm_rename(self, user: User, p: Params, method: str) -> int:
        return self.cloud.vm_rename(user, p.int(1), p.str(2), method)

    def vm_chmod(self, user: User, p: Params, method: str) -> int:
        return self.cloud.vm_chmod(user, p.int(1), [p.int(i) for i in range(2, 11)], method)

    def vm_chown(self, user: User, p: Params, method: str) -> int:
        return self.cloud.vm_chown(user, p.int(1), p.int(2), p.int(3), method)

    def vm_updateconf(self, user: User, p: Params, method: str) -> int:
        append = p.int(3) if len(p) > 3 else 0
        return self.cloud.vm_updateconf(user, p.int(1), p.str(2), append, method)

    def vm_allocate(self, user: User, p: Params, method: str) -> int:
        text = p.str(1)
        hold = p.bool(2) if len(p) > 2 else False
        try:
            tmpl = ts.parse_str_or_xml(text)
        except ts.TemplateParseError as exc:
            raise OnedError(INTERNAL, f"[{method}] Parse error: {exc}") from None
        name = ts.first(tmpl, "NAME")
        vm_name = name if isinstance(name, str) and name else f"one-{self.rt.store.next_ids['vm']}"
        return self.cloud.allocate_vm(user, tmpl, vm_name, hold, None, method).id

    def _vm_pool(self, user: User, p: Params, method: str, variant: str) -> str:
        filter_flag, start, end = p.int(1), p.int(2), p.int(3)
        state = p.int(4)
        if len(p) > 5 and p.str(5):
            raise OnedError(
                INTERNAL, f"[{method}] JSON query search is not supported by the SQL backend"
            )
        if filter_flag < -4:
            raise OnedError(XML_RPC_API, f"[{method}] Incorrect filter_flag")
        if state < -2 or state > 11:
            raise OnedError(XML_RPC_API, f"[{method}] Incorrect filter_flag, state")
        vms = list(self.rt.store.vms.values())
        if state == -1:
            vms = [vm for vm in vms if vm.state != DONE]
        elif state >= 0:
            vms = [vm for vm in vms if vm.state == state]
        vms = self.cloud.visible(user, vms, filter_flag, start, end)
        return "<VM_POOL>" + "".join(X.vm_xml(vm, variant) for vm in vms) + "</VM_POOL>"

    def vmpool_info(self, user: User, p: Params, method: str) -> str:
        return self._vm_pool(user, p, method, "short")

    def vmpool_infoextended(self, user: User, p: Params, method: str) -> str:
        return self._vm_pool(user, p, method, "pool")

    def vmpool_infoset(self, user: User, p: Params, method: str) -> str:
        """The VMs of a comma-separated id list (oned's VirtualMachinePoolInfoSet: session, ids,
        extended). Not in the recordings: the body is that of the other pool calls. oned
        (6.10.5, 7.0.2) filters only by ``oid in (...)`` and what the user may see (-2), with no
        state filter: DONE VMs are returned too, unlike vmpool.info* with state -1."""
        text = p.str(1)
        extended = p.bool(2) if len(p) > 2 else True
        try:
            wanted = {int(part) for part in text.split(",") if part.strip()}
        except ValueError:
            raise OnedError(XML_RPC_API, f"[{method}] Incorrect VM id list") from None
        vms = [vm for vm in self.rt.store.vms.values() if vm.id in wanted]
        vms = self.cloud.visible(user, vms, -2, -1, -1)
        variant = "pool" if extended else "short"
        return "<VM_POOL>" + "".join(X.vm_xml(vm, variant) for vm in vms) + "</VM_POOL>"

    # ------------------------------------------------------------------------- templates
    def template_info(self, user: User, p: Params, method: str) -> str:
        tmpl = self.cloud.get_template(user, p.int(1), method)
        return X.render(X.vm_template_node(tmpl))

    def template_allocate(self, user: User, p: Params, method: str) -> int:
        try:
            tmpl = ts.parse_str_or_xml(p.str(1))
        except ts.TemplateParseError as exc:
            raise OnedError(INTERNAL, f"[{method}] Parse error: {exc}") from None
        name = ts.first(tmpl, "NAME")
        tmpl.pop("NAME", None)
        vmt = self.cloud.add_vm_template(user, name if isinstance(name, str) else "", tmpl)
        if not vmt.name:
            vmt.name = f"template-{vmt.id}"
        return vmt.id

    def template_instantiate(self, user: User, p: Params, method: str) -> int:
        tid, name = p.int(1), p.str(2)
        hold = p.bool(3) if len(p) > 3 else False
        extra = p.str(4) if len(p) > 4 else ""
        return self.cloud.template_instantiate(user, tid, name, hold, extra, method).id

    def template_update(self, user: User, p: Params, method: str) -> int:
        """``one.template.update(id, text, append)``: 0 replaces the template, 1 merges."""
        tid, text = p.int(1), p.str(2)
        append = p.int(3) if len(p) > 3 else 0
        vmt = self.cloud.get_template(user, tid, method, "MANAGE")
        try:
            new = ts.parse_str_or_xml(text) if text.strip() else {}
        except ts.TemplateParseError as exc:
            raise OnedError(INTERNAL, f"[{method}] Parse error: {exc}", tid) from None
        new.pop("NAME", None)
        if append == 1:
            ts.merge(vmt.template, new)
        else:
            vmt.template = new
        return tid

    def template_delete(self, user: User, p: Params, method: str) -> int:
        """``one.template.delete(id[, recursive])``: the images are kept (no recursive delete)."""
        tid = p.int(1)
        self.cloud.get_template(user, tid, method, "MANAGE")
        del self.rt.store.vm_templates[tid]
        return tid

    def templatepool_info(self, user: User, p: Params, method: str) -> str:
        tmpls = self.cloud.visible(
            user, list(self.rt.store.vm_templates.values()), p.int(1), p.int(2), p.int(3)
        )
        return (
            "<VMTEMPLATE_POOL>"
            + "".join(X.render(X.vm_template_node(t)) for t in tmpls)
            + "</VMTEMPLATE_POOL>"
        )

    # ---------------------------------------------------------------------------- images
    def _image_xml(self, image: Any) -> str:
        vms = self.cloud.image_vms(image)
        return X.render(X.image_node(image, self.cloud.image_state(image, vms), vms))

    def image_allocate(self, user: User, p: Params, method: str) -> int:
        text, ds_id = p.str(1), p.int(2)
        try:
            tmpl = ts.parse_str_or_xml(text)
        except ts.TemplateParseError as exc:
            raise OnedError(INTERNAL, f"[{method}] Parse error: {exc}") from None
        return self.cloud.image_allocate(user, tmpl, ds_id, method).id

    def image_info(self, user: User, p: Params, method: str) -> str:
        return self._image_xml(self.cloud.get_image(user, p.int(1), method))

    def image_delete(self, user: User, p: Params, method: str) -> int:
        return self.cloud.image_delete(user, p.int(1), method)

    def image_rename(self, user: User, p: Params, method: str) -> int:
        return self.cloud.image_rename(user, p.int(1), p.str(2), method)

    def image_enable(self, user: User, p: Params, method: str) -> int:
        return self.cloud.image_enable(user, p.int(1), p.bool(2), method)

    def image_persistent(self, user: User, p: Params, method: str) -> int:
        return self.cloud.image_persistent(user, p.int(1), p.bool(2), method)

    def imagepool_info(self, user: User, p: Params, method: str) -> str:
        """``(filter, start, end)``; community.general sends a 4th -1, which is ignored."""
        images = self.cloud.visible(
            user, list(self.rt.store.images.values()), p.int(1), p.int(2), p.int(3)
        )
        return "<IMAGE_POOL>" + "".join(self._image_xml(i) for i in images) + "</IMAGE_POOL>"

    # ------------------------------------------------------------------------- documents
    def document_info(self, user: User, p: Params, method: str) -> str:
        doc = self.cloud.get_document(user, p.int(1), method)
        return X.render(X.document_node(doc))

    def document_allocate(self, user: User, p: Params, method: str) -> int:
        text, doc_type = p.str(1), p.int(2)
        try:
            tmpl = ts.parse_str_or_xml(text)
        except ts.TemplateParseError as exc:
            raise OnedError(INTERNAL, f"[{method}] Parse error: {exc}") from None
        name = ts.first(tmpl, "NAME")
        body = ts.first(tmpl, "BODY")
        return self.cloud.document_allocate(
            user,
            name if isinstance(name, str) else "",
            doc_type,
            _parse_body(body if isinstance(body, str) else ""),
        ).id

    def document_update(self, user: User, p: Params, method: str) -> int:
        doc_id, text = p.int(1), p.str(2)
        doc = self.cloud.get_document(user, doc_id, method, "MANAGE")
        try:
            tmpl = ts.parse_str_or_xml(text)
        except ts.TemplateParseError as exc:
            raise OnedError(INTERNAL, f"[{method}] Parse error: {exc}", doc_id) from None
        body = ts.first(tmpl, "BODY")
        if isinstance(body, str):
            doc.body = _parse_body(body)
        return doc_id

    def document_delete(self, user: User, p: Params, method: str) -> int:
        return self.cloud.document_delete(user, p.int(1), method)

    def documentpool_info(self, user: User, p: Params, method: str) -> str:
        filter_flag, start, end, doc_type = p.int(1), p.int(2), p.int(3), p.int(4)
        docs = self.cloud.documents_of_type(user, doc_type, filter_flag, start, end)
        return (
            "<DOCUMENT_POOL>"
            + "".join(X.render(X.document_node(d)) for d in docs)
            + "</DOCUMENT_POOL>"
        )

    # ----------------------------------------------------------------------------- hosts
    def host_info(self, user: User, p: Params, method: str) -> str:
        host_id = p.int(1)
        host = self.rt.store.hosts.get(host_id)
        if host is None:
            raise OnedError(0x400, f"[{method}] Error getting host [{host_id}].", host_id)
        return X.render(X.host_node(host, self._host_vms()))

    def hostpool_info(self, user: User, p: Params, method: str) -> str:
        vms = self._host_vms()
        hosts = sorted(self.rt.store.hosts.values(), key=lambda h: h.id)
        return (
            "<HOST_POOL>" + "".join(X.render(X.host_node(h, vms)) for h in hosts) + "</HOST_POOL>"
        )

    def _host_vms(self) -> list:
        return sorted((vm for vm in self.rt.store.vms.values() if vm.history), key=lambda v: v.id)

    # -------------------------------------------------------------------------- networks
    def vn_info(self, user: User, p: Params, method: str) -> str:
        net_id = p.int(1)
        net = self.rt.store.networks.get(net_id)
        if net is None:
            raise OnedError(0x400, f"[{method}] Error getting virtual network [{net_id}].", net_id)
        return X.render(X.vnet_node(net))

    def vnpool_info(self, user: User, p: Params, method: str) -> str:
        nets = sorted(self.rt.store.networks.values(), key=lambda n: n.id, reverse=True)
        return "<VNET_POOL>" + "".join(X.render(X.vnet_node(n)) for n in nets) + "</VNET_POOL>"


def _parse_body(text: str) -> Any:
    from .compat import RubyJSONError, ruby_json_parse

    try:
        return ruby_json_parse(text)
    except RubyJSONError:
        return text
