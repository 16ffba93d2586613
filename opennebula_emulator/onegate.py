"""OneGate (``src/onegate/onegate-server.rb`` + ``OneGateCloudAuth.rb``), 7.0.2 or 6.10.

Every answer has ``Content-Type: application/json;charset=utf-8``; error bodies are plain text.
Order of checks per route: permission (403) → token authentication (401) → source VM (404) → ...
With version 7.0 every ``halt 500, msg`` becomes ``Internal server error`` (the ``error 500`` block
of 7.0.1+), exceptions give their message; with 6.10 the message is kept.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from . import template_syntax as ts
from . import xml as X
from .compat import (
    RubyJSONError,
    RubyNoMethodError,
    ruby_json,
    ruby_json_parse,
    ruby_split,
    ruby_to_i,
)
from .core import OnedError
from .httpd import Request, Response, Route, find_route
from .oneflow import FlowEngine, FlowError
from .runtime import Runtime
from .state import User, Vm
from .token import TokenError, decrypt_token

log = logging.getLogger("opennebula_emulator")

CONTENT_TYPE = "application/json;charset=utf-8"
NIC_VALID_KEYS = (
    "IP",
    "IP6_LINK",
    "IP6_SITE",
    "IP6_GLOBAL",
    "NETWORK",
    "MAC",
    "NAME",
    "PARENT",
    "EXTERNAL",
    "EXTERNAL_IP",
)
USER_TEMPLATE_INVALID_KEYS = ("SCHED_MESSAGE",)
MONITORING_IPS_610 = (
    "GUEST_IP", "AWS_IP_ADDRESS", "AWS_PUBLIC_IP_ADDRESS", "AWS_PRIVATE_IP_ADDRESS", "AZ_IPADDRESS",
    "SL_PRIMARYIPADDRESS",
)  # fmt: skip
DEFAULT_PERMISSIONS: dict[str, dict[str, bool]] = {
    "vm": {
        "show": True,
        "show_by_id": True,
        "update": True,
        "update_by_id": True,
        "action_by_id": True,
    },
    "service": {"show": True, "change_cardinality": True},
    "vrouter": {"show": True},
    "vnet": {"show_by_id": True},
}
RESTRICTED_ATTRS = ["SCHED_REQUIREMENTS", "SERVICE_ID", "ROLE_NAME"]
RESTRICTED_ACTIONS = ["reboot"]  # :restricted_actions: is empty in the shipped conf -> default
NOT_EMULATED = set(
    """deploy livemigrate migrate saveas snapshot_create snapshot_revert snapshot_delete chown
    resize attachdisk detachdisk attachnic detachnic recover""".split()
)
SIMPLE_ACTIONS = {"hold", "release", "stop", "suspend", "resume", "resched", "unresched"}
HARD_ACTIONS = {"terminate", "reboot", "poweroff", "undeploy"}


class Halt(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def escape_attr(attr: str) -> str:
    """``escape_attr`` of onegate-server.rb (quotes unquoted values, ``\\n`` to newline)."""
    chars = list(attr)
    ret: list[str] = []
    escape = False

    def at(i: int) -> str | None:
        return chars[i] if -len(chars) <= i < len(chars) else None

    for idx, s in enumerate(chars):
        if s == "=" and escape:
            ret.append(s)
            continue
        if s == "=" and at(idx + 1) != "[" and at(idx + 1) != '"':
            ret.append('="')
            escape = True
        elif s == "," and at(idx - 1) != '"':
            ret.append('",')
        elif s == "[" and at(idx - 1) != "=" and at(idx - 1) != '"':
            ret.append('"[')
        elif s == "]" and at(idx - 1) != "=" and at(idx - 1) != '"':
            ret.append('"]')
            escape = False
        elif s == "\\" and at(idx - 1) != '"':
            ret.append('"\\')
            escape = False
        elif s == "\n" and at(idx - 1) != '"':
            ret.append('"\n')
            escape = False
        else:
            ret.append(s)
    out = "".join(ret).replace("\\n", "\n")
    if escape and out[-1:] != "]" and out[-1:] != '"':
        out += '"'
    return out


def build_vm_hash(
    vm_hash: dict[str, Any], monitoring_610: dict[str, str] | None = None
) -> dict[str, Any]:
    template = vm_hash.get("TEMPLATE") or {}

    def nic_list(key: str) -> list[dict[str, Any]]:
        value = template.get(key) if isinstance(template, dict) else None
        if not value:
            return []
        items = value if isinstance(value, list) else [value]
        return [
            {k: v for k, v in nic.items() if k in NIC_VALID_KEYS}
            for nic in items
            if isinstance(nic, dict)
        ]

    nics = nic_list("NIC")
    if monitoring_610:
        nics += [{"IP": monitoring_610[k]} for k in MONITORING_IPS_610 if k in monitoring_610]
    user = vm_hash.get("USER_TEMPLATE") or {}
    return {
        "VM": {
            "NAME": vm_hash.get("NAME"),
            "ID": vm_hash.get("ID"),
            "STATE": vm_hash.get("STATE"),
            "LCM_STATE": vm_hash.get("LCM_STATE"),
            "USER_TEMPLATE": {k: v for k, v in user.items() if k not in USER_TEMPLATE_INVALID_KEYS},
            "TEMPLATE": {"NIC": nics, "NIC_ALIAS": nic_list("NIC_ALIAS")},
        }
    }


class OneGateApi:
    def __init__(self, rt: Runtime, engine: FlowEngine) -> None:
        self.rt = rt
        self.engine = engine
        self.permissions: dict[str, dict[str, bool]] = copy.deepcopy(DEFAULT_PERMISSIONS)
        self.restricted_attrs = list(RESTRICTED_ATTRS)
        self.restricted_actions = list(RESTRICTED_ACTIONS)
        self.routes = [
            Route("GET", "/", self.root),
            Route("PUT", "/vm", self.put_vm),
            Route("GET", "/vm", self.get_vm),
            Route("GET", "/service", self.get_service),
            Route("GET", "/vrouter", self.get_vrouter),
            Route("GET", "/vnet/:id", self.get_vnet),
            Route("GET", "/vms/:id", self.get_vms),
            Route("POST", "/vms/:id/action", self.post_action),
            Route("PUT", "/service/role/:role", self.put_service_role),
            Route("PUT", "/vms/:id", self.put_vms),
        ]

    @property
    def v70(self) -> bool:
        return self.rt.config.version == "7.0"

    # --------------------------------------------------------------------------- dispatch
    def dispatch(self, req: Request) -> tuple[Response, str]:
        route = find_route(self.routes, req)
        key = route.key if route else f"{req.method} <catch-all>"
        self.rt.arrive("onegate", key)
        with self.rt.locked():
            try:
                if route is None:
                    raise Halt(400, "OneGate server doesn't support this feature")
                status, body = route.handler(req)
            except Halt as halt:
                status, body = halt.status, halt.body
                if status == 500 and self.v70:
                    body = "Internal server error"  # error 500 block, no sinatra.error
            except (RubyJSONError, RubyNoMethodError, ValueError, TypeError) as exc:
                status = 500
                body = (
                    re.sub(r"^ERROR:\s*", "", str(exc))
                    if self.v70
                    else "<h1>Internal Server Error</h1>"
                )
        return Response(status, body, CONTENT_TYPE), key

    def check_permissions(self, resource: str, action: str) -> None:
        if not self.permissions.get(resource, {}).get(action):
            raise Halt(403, f"Action ({action}) on resource ({resource}) not supported")

    # ------------------------------------------------------------------------------- auth
    def authenticate(self, req: Request) -> User:
        """``OneGateCloudAuth#do_auth``; any failure is 401 ``Not authorized``."""
        store = self.rt.store
        token = req.headers.get("X-ONEGATE-TOKEN")
        vmid = req.headers.get("X-ONEGATE-VMID")
        if vmid is None:
            vmid = req.rack_params().get("id")  # DEPRECATED fallback of the original
        if token is None or vmid is None:
            raise Halt(401, "Not authorized")
        vm = store.vms.get(ruby_to_i(vmid))
        if vm is None:
            raise Halt(401, "Not authorized")
        created_by = ts.first(vm.template, "CREATED_BY")
        if not isinstance(created_by, str):
            raise Halt(401, "Not authorized")
        user = (
            store.users.get(ruby_to_i(created_by))
            if created_by.strip().lstrip("-").isdigit()
            else None
        )
        if user is None or user.token_password is None:
            raise Halt(401, "Not authorized")
        try:
            parts = ruby_split(decrypt_token(token, user.token_password), ":")
        except (TokenError, ValueError):
            raise Halt(401, "Not authorized") from None
        if len(parts) < 2 or parts[0] != str(vm.id) or parts[1] != str(vm.stime):
            raise Halt(401, "Not authorized")
        owner = store.user_by_name(vm.uname)
        if owner is None:
            raise Halt(401, "Not authorized")
        return owner  # OneGate works with the VM owner's client from here on

    def get_vm_obj(self, user: User, vm_id: int) -> Vm:
        try:
            return self.rt.cloud.get_vm(user, vm_id)
        except OnedError as exc:
            raise Halt(404, exc.message) from None

    def source_vm(self, req: Request, user: User) -> Vm:
        return self.get_vm_obj(user, ruby_to_i(req.headers.get("X-ONEGATE-VMID")))

    def vm_hash(self, vm: Vm) -> dict[str, Any]:
        return X.to_hash(X.vm_node(vm))["VM"]

    def render_vm(self, vm: Vm) -> str:
        monitoring = None if self.v70 else vm.monitoring
        return ruby_json(build_vm_hash(self.vm_hash(vm), monitoring))

    # --------------------------------------------------------------------------- services
    def get_service_body(self, user: User, service_id: str | None) -> dict[str, Any]:
        if service_id is None or not re.search(r"^\d+$", service_id, re.MULTILINE):
            raise Halt(400, "Empty or invalid SERVICE_ID")
        try:
            svc = self.engine.load(service_id, user)
        except FlowError:
            raise Halt(404, f"Service {service_id} not found") from None
        return {
            "DOCUMENT": {
                "ID": str(svc.doc.id),
                "NAME": svc.doc.name,
                "TEMPLATE": {"BODY": copy.deepcopy(svc.doc.body)},
            }
        }

    def build_service_hash(
        self, service: dict[str, Any], user: User, extended: bool
    ) -> dict[str, Any] | None:
        doc = service["DOCUMENT"]
        body = doc["TEMPLATE"]["BODY"]
        roles = body.get("roles") if isinstance(body, dict) else None
        if roles is None:
            return None
        info: dict[str, Any] = {
            "name": doc["NAME"],
            "id": doc["ID"],
            "state": body.get("state"),
            "roles": [],
        }
        for role in roles:
            role_info = {
                "name": role.get("name"),
                "cardinality": role.get("cardinality"),
                "state": role.get("state"),
                "nodes": [],
            }
            for node in role.get("nodes") or []:
                deploy_id = ruby_to_i(node.get("deploy_id"))
                vm_info = (
                    self.vm_hash(self.get_vm_obj(user, deploy_id))
                    if extended
                    else node.get("vm_info")
                )
                if extended:
                    vm_info = {"VM": vm_info}
                role_info["nodes"].append(
                    {"deploy_id": deploy_id, "running": node.get("running"), "vm_info": vm_info}
                )
            info["roles"].append(role_info)
        return {"SERVICE": info}

    def check_vm_in_service(
        self, requested: str | int, service_id: str | None, user: User, extended: bool = False
    ) -> dict[str, Any]:
        service = self.get_service_body(user, service_id)
        try:
            response = self.build_service_hash(service, user, extended)
        except (AttributeError, TypeError, KeyError):
            response = None
        if response is None:
            raise Halt(400, f"Service {service_id} is empty.")
        ids = [n["deploy_id"] for r in response["SERVICE"]["roles"] for n in r["nodes"]]
        if not ids or ruby_to_i(requested) not in ids:
            raise Halt(400, f"Service {service_id} does not contain VM {requested}.")
        return response

    def requested_vm(self, req: Request, user: User, requested_id: int) -> Vm:
        source = self.source_vm(req, user)
        if source.id == requested_id:
            return source
        service_id = ts.first(source.user_template, "SERVICE_ID")
        if service_id is not None:
            self.check_vm_in_service(
                requested_id, service_id if isinstance(service_id, str) else "", user
            )
            return self.get_vm_obj(user, requested_id)
        vrouter_id = ts.first(source.template, "VROUTER_ID")
        if vrouter_id is not None:
            self.vrouter(vrouter_id)
        raise Halt(
            400,
            "This VM does not belong to any Virtual Router or Service, so it cannot retrieve "
            "information from other VMs",
        )

    @staticmethod
    def vrouter(vrouter_id: Any) -> None:
        if vrouter_id is None:
            raise Halt(400, "Empty or invalid VROUTER_ID")
        number = int(str(vrouter_id).strip())  # Integer(): ArgumentError -> 500 like the original
        raise Halt(404, f"Virtual router {number} not found")  # virtual routers are not emulated

    # ------------------------------------------------------------------------- updates
    def update(self, req: Request, vm: Vm, user: User) -> None:
        params = req.rack_params()
        attr = params.get("data")
        raw_type = params.get("type")
        kind = 1 if raw_type is None else ruby_to_i(raw_type)
        if attr is None:
            attr = req.text()  # 6.10 (Rack 2) and 7.0.1+ rewind the body before reading it
        attr = escape_attr(attr)
        error = "cannot be modified" if kind == 1 else "cannot be deleted"
        for line in attr.split("\n"):
            parts = ruby_split(line, "=")
            if parts and parts[0].upper() in self.restricted_attrs:
                raise Halt(403, f"Attribute ({parts[0]}) {error}")
        cloud = self.rt.cloud
        try:
            if kind == 1:
                cloud.vm_update(user, vm.id, attr, 1)
            else:
                name = attr
                if not re.fullmatch(r"[A-Za-z0-9_]+", name) or name not in vm.user_template:
                    raise Halt(500, "attribute not found")
                remaining = {k: v for k, v in vm.user_template.items() if k != name}
                cloud.vm_update(user, vm.id, ts.to_text(remaining), 0)
        except OnedError as exc:
            raise Halt(500, exc.message) from None

    # --------------------------------------------------------------------------- routes
    def root(self, req: Request) -> tuple[int, str]:
        self.authenticate(req)
        base = f"http://{req.host}"
        return 200, ruby_json({"vm_info": f"{base}/vm", "service_info": f"{base}/service"})

    def put_vm(self, req: Request) -> tuple[int, str]:
        self.check_permissions("vm", "update")
        user = self.authenticate(req)
        vm = self.source_vm(req, user)
        self.update(req, vm, user)
        return 200, ""

    def get_vm(self, req: Request) -> tuple[int, str]:
        self.check_permissions("vm", "show")
        user = self.authenticate(req)
        return 200, self.render_vm(self.source_vm(req, user))

    def get_service(self, req: Request) -> tuple[int, str]:
        self.check_permissions("service", "show")
        user = self.authenticate(req)
        source = self.source_vm(req, user)
        service_id = ts.first(source.user_template, "SERVICE_ID")
        extended = req.rack_params().get("extended") is not None
        sid = service_id if isinstance(service_id, str) else None
        return 200, ruby_json(self.check_vm_in_service(str(source.id), sid, user, extended))

    def get_vrouter(self, req: Request) -> tuple[int, str]:
        self.check_permissions("vrouter", "show")
        user = self.authenticate(req)
        source = self.source_vm(req, user)
        self.vrouter(ts.first(source.template, "VROUTER_ID"))
        return 400, ""  # unreachable: vrouter() always halts

    def get_vnet(self, req: Request) -> tuple[int, str]:
        self.check_permissions("vnet", "show_by_id")
        user = self.authenticate(req)
        raw = req.params["id"]
        if not re.fullmatch(r"\s*[+-]?\d+\s*", raw):
            raise Halt(400, f"Invalid id format (ID: {raw}). ID must be an integer.")
        source = self.source_vm(req, user)
        vrouter_id = ts.first(source.template, "VROUTER_ID")
        if not vrouter_id:
            raise Halt(
                400, "Virtual networks information can only be retrieved from Virtual Routers."
            )
        self.vrouter(vrouter_id)
        return 400, ""  # unreachable

    def get_vms(self, req: Request) -> tuple[int, str]:
        self.check_permissions("vm", "show_by_id")
        user = self.authenticate(req)
        vm = self.requested_vm(req, user, ruby_to_i(req.params["id"]))
        return 200, self.render_vm(vm)

    def put_vms(self, req: Request) -> tuple[int, str]:
        self.check_permissions("vm", "update_by_id")
        user = self.authenticate(req)
        vm = self.requested_vm(req, user, ruby_to_i(req.params["id"]))
        self.update(req, vm, user)
        return 200, ""

    def post_action(self, req: Request) -> tuple[int, str]:
        self.check_permissions("vm", "action_by_id")
        user = self.authenticate(req)
        vm = self.requested_vm(req, user, ruby_to_i(req.params["id"]))
        body = "" if (self.rt.options.get("rack3_form_body_bug") and req.is_form()) else req.text()
        try:
            data = ruby_json_parse(body)
        except RubyJSONError as exc:
            raise Halt(400, str(exc)) from None
        if not isinstance(data, dict):
            raise RubyNoMethodError(f"undefined method `has_key?' for {data!r}")
        if "action" not in data:
            raise Halt(400, "Error parsing JSON: Wrong resource type")
        action = data["action"]
        if not isinstance(action, dict):
            raise RubyNoMethodError("undefined method `[]' for action")
        perform, params = action.get("perform"), action.get("params")
        if isinstance(perform, str) and perform.lower() in self.restricted_actions:
            raise Halt(403, f"Action ({perform}) is not allowed on this resource")
        self.perform(user, vm, perform, params)
        return 204, ""

    def perform(self, user: User, vm: Vm, perform: Any, params: Any) -> None:
        cloud = self.rt.cloud
        hard = params is not None and params is not False
        try:
            if perform in HARD_ACTIONS:
                cloud.vm_action(user, f"{perform}-hard" if hard else perform, vm.id)
            elif perform == "delete":
                cloud.vm_action(user, "terminate-hard", vm.id)
            elif perform == "shutdown":
                cloud.vm_action(user, "terminate-hard" if hard else "terminate", vm.id)
            elif perform in SIMPLE_ACTIONS:
                cloud.vm_action(user, perform, vm.id)
            elif perform == "rename":
                cloud.vm_rename(user, vm.id, str(params))
            elif perform == "chmod":
                cloud.get_vm(user, vm.id, "one.vm.chmod", "MANAGE").perms.set_octet(str(params))
                vm.changed()
            elif perform in NOT_EMULATED:
                log.warning("OneGate action %s is not emulated", perform)
                raise Halt(500, f"The emulator does not implement the {perform} action")
            else:
                raise Halt(500, f"{perform} action not  available for this resource")
        except OnedError as exc:
            raise Halt(500, exc.message) from None

    def put_service_role(self, req: Request) -> tuple[int, str]:
        self.check_permissions("service", "change_cardinality")
        user = self.authenticate(req)
        source = self.source_vm(req, user)
        service_id = ts.first(source.user_template, "SERVICE_ID")
        sid = service_id if isinstance(service_id, str) else None
        self.check_vm_in_service(str(source.id), sid, user)
        body = "" if (self.rt.options.get("rack3_form_body_bug") and req.is_form()) else req.text()
        data = ruby_json_parse(body)
        if not isinstance(data, dict):
            raise TypeError("no implicit conversion of String into Integer")
        role = req.params["role"]
        try:
            self.engine.scale_action(user, sid, role, ruby_to_i(data.get("cardinality")), False)
        except (FlowError, RubyJSONError, RubyNoMethodError, OnedError):
            raise Halt(400, f"Error performing action on service {sid} role {role}") from None
        return 200, ""
