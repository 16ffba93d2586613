"""OneFlow: the REST server (``oneflow-server.rb``) and the life-cycle manager
(``LifeCycleManager.rb``, ``EventManager.rb``, ``ServiceWatchDog.rb``, ``models/*.rb``).

The Ruby server waits for VM events over ZeroMQ; here a ticker polls the same conditions
(``check_nodes``/``check_nodes_report``) at every tick. Service bodies are edited on a copy and
written back only where the Ruby code calls ``service.update``, so failed operations leave no
trace, as in OneFlow.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from . import flow_schema as fs
from . import template_syntax as ts
from . import xml as X
from .compat import (
    RubyJSONError,
    RubyNoMethodError,
    deep_merge_70,
    deep_merge_610,
    ruby_interp,
    ruby_json,
    ruby_json_parse,
    ruby_pretty_json,
    ruby_to_i,
)
from .core import AUTHENTICATION, AUTHORIZATION, FAILURE_LCM_STATES, NO_EXISTS, Cloud, OnedError
from .httpd import Request, Response, Route, find_route
from .runtime import Runtime
from .state import (
    DOC_SERVICE,
    DOC_SERVICE_TEMPLATE,
    DONE,
    LCM,
    POWEROFF,
    STOPPED,
    SUSPENDED,
    UNDEPLOYED,
    Document,
    Network,
    User,
    Vm,
    now,
)

SERVICE_STATES = [
    "PENDING", "DEPLOYING", "RUNNING", "UNDEPLOYING", "WARNING", "DONE", "FAILED_UNDEPLOYING",
    "FAILED_DEPLOYING", "SCALING", "FAILED_SCALING", "COOLDOWN", "DEPLOYING_NETS",
    "UNDEPLOYING_NETS", "FAILED_DEPLOYING_NETS", "FAILED_UNDEPLOYING_NETS", "HOLD",
]  # fmt: skip
ROLE_STATES = [
    "PENDING", "DEPLOYING", "RUNNING", "UNDEPLOYING", "WARNING", "DONE", "FAILED_UNDEPLOYING",
    "FAILED_DEPLOYING", "SCALING", "FAILED_SCALING", "COOLDOWN", "HOLD",
]  # fmt: skip
S = {name: i for i, name in enumerate(SERVICE_STATES)}
R = {name: i for i, name in enumerate(ROLE_STATES)}
TRANSIENT = {
    "DEPLOYING",
    "UNDEPLOYING",
    "SCALING",
    "COOLDOWN",
    "DEPLOYING_NETS",
    "UNDEPLOYING_NETS",
}
FAILED = {
    "FAILED_DEPLOYING",
    "FAILED_UNDEPLOYING",
    "FAILED_SCALING",
    "FAILED_DEPLOYING_NETS",
    "FAILED_UNDEPLOYING_NETS",
}
SUBSCRIBE_STATES = {STOPPED, SUSPENDED, POWEROFF, UNDEPLOYED}
SCHEDULE_ACTIONS = {
    "terminate", "terminate-hard", "undeploy", "undeploy-hard", "hold", "release", "stop",
    "suspend", "resume", "reboot", "reboot-hard", "poweroff", "poweroff-hard", "snapshot-create",
    "snapshot-revert", "snapshot-delete", "disk-snapshot-create", "disk-snapshot-revert",
    "disk-snapshot-delete",
}  # fmt: skip
VM_INFO = ("ID", "UID", "GID", "UNAME", "GNAME", "NAME")
VM_NAME_TEMPLATE = "$ROLE_NAME_$VM_NUMBER_(service_$SERVICE_ID)"
MAX_LOG = 50
GENERIC_ERRNO = 0x1111  # OpenNebula::Error default errno -> HTTP 500

HTML = "text/html;charset=utf-8"


class FlowError(Exception):
    """An ``OpenNebula::Error`` inside OneFlow; ``errno`` is an oned code or ``GENERIC_ERRNO``."""

    def __init__(self, message: str, errno: int = GENERIC_ERRNO) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno

    @classmethod
    def from_oned(cls, exc: OnedError) -> FlowError:
        return cls(exc.message, exc.code)


def json_copy(obj: Any) -> Any:
    """Deep copy of JSON data (much faster than ``copy.deepcopy`` for big service bodies)."""
    return json.loads(json.dumps(obj))


def http_status(errno: int) -> int:
    """``one_error_to_http`` (note the swapped 401/403 of the original)."""
    return {0: 200, AUTHORIZATION: 401, AUTHENTICATION: 403, NO_EXISTS: 404}.get(errno, 500)


# ------------------------------------------------------------------------------- services
class Service:
    """``OpenNebula::Service`` loaded for one LCM operation (a private copy of the body)."""

    def __init__(self, engine: FlowEngine, doc: Document, user: User) -> None:
        self.engine = engine
        self.doc = doc
        self.user = user
        if not isinstance(doc.body, dict):
            raise FlowError(f"unexpected token at '{doc.body}'")
        self.body: dict[str, Any] = json_copy(doc.body)
        self.init_roles()

    def init_roles(self) -> None:
        for role in self.body.get("roles") or []:
            if role.get("state") is None or role.get("state") is False:  # elem['state'] ||= PENDING
                role["state"] = R["PENDING"]
            self.engine.init_role(role)

    @property
    def id(self) -> int:
        return self.doc.id

    @property
    def name(self) -> str:
        return str(self.body.get("name", ""))

    @property
    def state(self) -> int:
        return ruby_to_i(self.body.get("state"))

    @property
    def state_str(self) -> str:
        return (
            SERVICE_STATES[self.state] if 0 <= self.state < len(SERVICE_STATES) else str(self.state)
        )

    def set_state(self, state: int) -> None:
        self.body["state"] = state
        self.log_info(f"New state: {SERVICE_STATES[state]}")

    def log_info(self, message: str) -> None:
        self._add_log("I", message)

    def log_error(self, message: str) -> None:
        self._add_log("E", message)

    def _add_log(self, severity: str, message: str) -> None:
        if self.body.get("log") is None:
            self.body["log"] = []
        self.body["log"].append({"timestamp": now(), "severity": severity, "message": message})
        self.body["log"] = self.body["log"][-MAX_LOG:]

    @property
    def roles(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self.body.get("roles") or []}

    def report_ready(self) -> bool:
        return bool(self.body.get("ready_status_gate"))

    def on_hold(self) -> bool:
        return bool(self.body.get("on_hold"))

    def strategy(self) -> str:
        return str(self.body.get("deployment"))

    def transient(self) -> bool:
        return self.state_str in TRANSIENT

    def failed(self) -> bool:
        return self.state_str in FAILED

    def all_roles(self, state: str) -> bool:
        return all(r.get("state") == R[state] for r in self.roles.values())

    def save(self) -> None:
        """``service.update``."""
        self.doc.body = self.body
        self.body = json_copy(self.body)

    # --------------------------------------------------------------------- strategies
    def roles_deploy(self) -> dict[str, dict[str, Any]]:
        roles = self.roles
        if self.strategy() == "straight":
            running = {n for n, r in roles.items() if r.get("state") == R["RUNNING"]}
            return {
                n: r
                for n, r in roles.items()
                if r.get("state") == R["PENDING"]
                and all(p in running for p in r.get("parents") or [])
            }
        return {n: r for n, r in roles.items() if r.get("state") in (R["PENDING"], R["SCALING"])}

    def roles_shutdown(self) -> dict[str, dict[str, Any]]:
        skip = (R["UNDEPLOYING"], R["DONE"], R["FAILED_UNDEPLOYING"])
        roles = self.roles
        if self.strategy() == "straight":
            running = {n: r for n, r in roles.items() if r.get("state") not in skip}
            parents: list[str] = []
            for r in roles.values():
                if r.get("state") != R["DONE"]:
                    parents += r.get("parents") or []
            return {n: r for n, r in running.items() if n not in parents}
        return {n: r for n, r in roles.items() if r.get("state") not in skip}

    def _roles_waiting(self, state: int, parents_state: int) -> dict[str, dict[str, Any]]:
        """Roles in `state`; with the straight strategy only those whose parents all are in
        `parents_state`."""
        roles = self.roles
        if self.strategy() != "straight":
            return {n: r for n, r in roles.items() if r.get("state") == state}
        ready = {n for n, r in roles.items() if r.get("state") == parents_state}
        return {
            n: r
            for n, r in roles.items()
            if r.get("state") == state and all(p in ready for p in r.get("parents") or [])
        }

    def roles_hold(self) -> dict[str, dict[str, Any]]:
        return self._roles_waiting(R["PENDING"], R["HOLD"])

    def roles_release(self) -> dict[str, dict[str, Any]]:
        return self._roles_waiting(R["HOLD"], R["RUNNING"])


@dataclass
class Wait:
    """A pending ``EventManager`` action."""

    kind: str
    service_id: int
    user: str
    role: str | None = None
    nodes: list[int] = field(default_factory=list)
    report: bool = False
    due: float = 0.0
    successful: dict[int, bool] = field(default_factory=dict)
    failure: dict[int, bool] = field(default_factory=dict)


class FlowEngine:
    """The OneFlow life-cycle manager. Every method expects the store lock to be held."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.waits: list[Wait] = []
        self._wd_seen: dict[int, tuple[int, int]] = {}

    @property
    def cloud(self) -> Cloud:
        return self.rt.cloud

    @property
    def v70(self) -> bool:
        return self.rt.config.version == "7.0"

    # ----------------------------------------------------------------------- role model
    def init_role(self, role: dict[str, Any]) -> None:
        """``Role#initialize`` + ``VMRole#initialize`` (the key order differs per version)."""
        if self.v70:
            if role.get("nodes") is None:
                role["nodes"] = []
            if role.get("on_hold") is None:
                role["on_hold"] = False
            if role.get("type", "vm") == "vm" and role.get("cooldown") is None:
                role["cooldown"] = self.rt.config.default_cooldown
        else:
            if role.get("cooldown") is None:
                role["cooldown"] = self.rt.config.default_cooldown
            if role.get("nodes") is None:
                role["nodes"] = []
            if role.get("on_hold") is None:
                role["on_hold"] = False

    @staticmethod
    def set_role_state(role: dict[str, Any], state: int) -> None:
        role["state"] = state
        if state == R["SCALING"]:
            for policy in role.get("elasticity_policies") or []:
                policy.pop("true_evals", None)

    @staticmethod
    def set_cardinality(svc: Service, role: dict[str, Any], target: int) -> None:
        """``Role#cardinality=`` (logs the scaling message in the service log)."""
        current = ruby_to_i(role.get("cardinality"))
        direction = "up" if target > current else "down"
        svc.log_info(f"Role {role['name']} scaling {direction} from {current} to {target} nodes")
        role["cardinality"] = target

    def role_update(self, svc: Service, role: dict[str, Any], template: dict[str, Any]) -> None:
        """``VMRole#update``: min/max unless ``force``; raises :class:`FlowError`."""
        force = template.get("force") is True
        new = template.get("cardinality")
        if new is None:
            return
        new = ruby_to_i(new)
        if not force:
            min_vms, max_vms = role.get("min_vms"), role.get("max_vms")
            if new < ruby_to_i(min_vms):
                raise FlowError(
                    "Minimum cardinality is "
                    + ruby_interp(None if min_vms is None else ruby_to_i(min_vms))
                )
            if max_vms is not None and new > ruby_to_i(max_vms):
                raise FlowError(f"Maximum cardinality is {ruby_to_i(max_vms)}")
        self.set_cardinality(svc, role, new)

    def owner_of(self, svc: Service) -> User:
        return self.rt.store.users.get(svc.doc.uid) or svc.user

    def deploy_role(self, svc: Service, role: dict[str, Any]) -> list[int]:
        """``VMRole#deploy``: instantiate the missing VMs; raises FlowError on failure."""
        cardinality = ruby_to_i(role.get("cardinality"))
        missing = cardinality - len(role["nodes"])
        if missing == 0:
            return []
        if role.get("last_vmname") is None:
            role["last_vmname"] = 0
        template_id = role.get("template_id" if self.v70 else "vm_template")
        user = self.owner_of(svc)
        try:
            extra = self._extra_template(svc, role, user)
        except OnedError as exc:
            msg = f"Role {role['name']} : Info template {template_id}; {exc.message}"
            svc.log_error(msg)
            raise FlowError(
                f"Error fetching Info to instantiate template {template_id} in Role "
                f"{role['name']}: {exc.message}"
            ) from None
        deployed: list[int] = []
        for _ in range(max(missing, 0)):
            vm_name = (
                VM_NAME_TEMPLATE.replace("$SERVICE_ID", str(svc.id))
                .replace("$SERVICE_NAME", svc.name)
                .replace("$ROLE_NAME", str(role["name"]))
                .replace("$VM_NUMBER", str(role["last_vmname"]))
            )
            role["last_vmname"] += 1
            try:
                vm = self.cloud.template_instantiate(
                    user,
                    ruby_to_i(template_id),
                    vm_name,
                    bool(role.get("on_hold")),
                    ts.copy_template(extra),
                )
            except OnedError as exc:
                msg = (
                    f"Role {role['name']} : Instantiate failed for template {template_id}; "
                    + exc.message
                )
                svc.log_error(msg)
                raise FlowError(
                    f"Error instantiating VM Template {template_id} in Role {role['name']}: "
                    + exc.message
                ) from None
            deployed.append(vm.id)
            # fill_node_info: VM_INFO = ID UID GID UNAME GNAME NAME, as strings (to_hash)
            info = [vm.id, vm.uid, vm.gid, vm.uname, vm.gname, vm.name]
            vm_info = {k: str(v) for k, v in zip(VM_INFO, info, strict=True)}
            role["nodes"].append({"deploy_id": vm.id, "vm_info": {"VM": vm_info}})
        return deployed

    def _extra_template(self, svc: Service, role: dict[str, Any], user: User) -> ts.Template:
        if self.v70:
            contents = role.get("template_contents") or {}
            if contents:
                vmt = self.cloud.get_template(
                    user, ruby_to_i(role.get("template_id")), "one.template.info"
                )
                base = X.to_hash(X.template_node("TEMPLATE", vmt.template))["TEMPLATE"]
                base = base if isinstance(base, dict) else {}
                extra = ts.from_json_hash(deep_merge_70(base, contents, merge_array=False))
            else:
                extra = {}
            extra["SERVICE_ID"] = str(svc.id)
            extra["ROLE_NAME"] = str(role["name"])
        else:
            text = role.get("vm_template_contents") or ""
            m = re.search(r'^\s*APPEND="?(.*?)"?\s*$', text, re.MULTILINE)
            if m and m.group(1):
                vmt = self.cloud.get_template(
                    user, ruby_to_i(role.get("vm_template")), "one.template.info"
                )
                keep = {k: v for k, v in vmt.template.items() if k in m.group(1).split(",")}
                text = ts.to_text(keep) + "\n" + text
            text += f'\nSERVICE_ID = {svc.id}\nROLE_NAME = "{role["name"]}"'
            try:
                extra = ts.parse_str_or_xml(text)
            except ts.TemplateParseError as exc:
                raise OnedError(0x2000, f"[one.template.instantiate] Parse error: {exc}") from None
        self._evaluate(svc, role, extra)
        return extra

    def _evaluate(self, svc: Service, role: dict[str, Any], extra: ts.Template) -> None:
        """``Role#evaluate``: ``${parent.XPATH}`` from the VMs of a parent role."""
        pattern = re.compile(r"\$\{(.*?)\}")
        parents = role.get("parents") or []

        def lookup(expr: str) -> str:
            parts = expr.split(".")
            if parts[0] not in parents:
                return ""
            parent = svc.roles.get(parts[0])
            path = "/".join(parts[1:]).upper()
            for node in (parent or {}).get("nodes") or []:
                vm = self.rt.store.vms.get(node.get("deploy_id"))
                if vm is None:
                    continue
                root = ET.fromstring(X.vm_xml(vm, "info"))  # noqa: S314 - our own XML
                query = path[3:] if path.startswith("VM/") else ".//" + path
                found = root.find(query) if path else None
                if found is not None and found.text is not None:
                    return found.text
            return ""

        def sub(value: str) -> str:
            return pattern.sub(lambda m: lookup(m.group(1)), value)

        for key, value in list(extra.items()):
            items = value if isinstance(value, list) else [value]
            new_items = [
                {k: sub(v) for k, v in i.items()} if isinstance(i, dict) else sub(i) for i in items
            ]
            extra[key] = new_items if isinstance(value, list) else new_items[0]

    def shutdown_role(self, svc: Service, role: dict[str, Any], recover: bool = False) -> list[int]:
        """``Role#shutdown``: terminate the first ``nodes.size - cardinality`` nodes (all of them
        when they match the cardinality)."""
        nodes = role["nodes"]
        cardinality = ruby_to_i(role.get("cardinality"))
        count = len(nodes) - cardinality if len(nodes) != cardinality else len(nodes)
        action = role.get("shutdown_action") or svc.body.get("shutdown_action") or "terminate"
        user = svc.user
        done: list[int] = []
        last = count - 1 if count - 1 >= 0 else len(nodes) + count - 1  # Ruby nodes[0..(count - 1)]
        selected = nodes[: last + 1] if last >= 0 else []
        for node in selected:
            vm_id = node["deploy_id"]
            try:
                self.cloud.vm_action(
                    user, "terminate-hard" if action == "terminate-hard" else "terminate", vm_id
                )
                done.append(vm_id)
            except OnedError as exc:
                svc.log_error(
                    f"Role {role['name']} : Terminate failed for VM {vm_id}, will perform a "
                    f"Delete; {exc.message}"
                )
                try:
                    self.cloud.vm_action(user, "terminate-hard", vm_id)
                    done.append(vm_id)
                except OnedError as exc2:
                    svc.log_error(
                        f"Role {role['name']} : Delete failed for VM {vm_id}; {exc2.message}"
                    )
        if not (len(done) == count or count < 0):
            raise FlowError(f"Error undeploying nodes for role `{role['name']}`")
        return done

    # ------------------------------------------------------------------------ LCM helpers
    def load(self, service_id: Any, user: User) -> Service:
        """``ServicePool#get``: ``Service#info`` (type check) as ``user``."""
        sid = ruby_to_i(service_id)
        try:
            doc = self.cloud.get_document(user, sid)
        except OnedError as exc:
            raise FlowError.from_oned(exc) from None
        if doc.type != DOC_SERVICE:
            raise FlowError(f"[DocumentInfo] Error getting document [{sid}].")
        return Service(self, doc, user)

    def user_named(self, name: str) -> User:
        user = self.rt.store.user_by_name(name)
        if user is None:
            raise FlowError(f"[one.user.info] Error getting user [{name}].", NO_EXISTS)
        return user

    def trigger(
        self,
        kind: str,
        svc: Service,
        role: str | None = None,
        nodes: list[int] | None = None,
        **kw: Any,
    ) -> None:
        self.waits.append(Wait(kind, svc.id, svc.user.name, role, list(nodes or []), **kw))

    def cancel(self, service_id: int) -> None:
        self.waits = [w for w in self.waits if w.service_id != service_id]

    def deploy_roles(
        self, svc: Service, roles: dict[str, dict[str, Any]], success: str, error: str, action: str
    ) -> None:
        for name, role in roles.items():
            if role.get("state") == R["PENDING"] and (
                svc.on_hold() or self._parent_on_hold(svc, role)
            ):
                role["on_hold"] = True
            try:
                nodes = self.deploy_role(svc, role)
            except FlowError as exc:
                self.set_role_state(role, R[error])
                raise FlowError(f"Error deploying role {name}: {exc.message}") from None
            if role.get("on_hold") and role.get("state") == R["PENDING"]:
                self.set_role_state(role, R["HOLD"])
                self.trigger("hold", svc, name, nodes)
            else:
                self.set_role_state(role, R[success])
                self.trigger(action, svc, name, nodes, report=svc.report_ready())

    @staticmethod
    def _parent_on_hold(svc: Service, role: dict[str, Any]) -> bool:
        roles = svc.roles
        return any(roles[p].get("on_hold") for p in role.get("parents") or [] if p in roles)

    def undeploy_roles(
        self, svc: Service, roles: dict[str, dict[str, Any]], success: str, error: str, action: str
    ) -> None:
        for name, role in roles.items():
            try:
                nodes = self.shutdown_role(svc, role)
            except FlowError:
                self.set_role_state(role, R[error])
                raise FlowError(
                    f"Error undeploying role {name}: Error undeploying nodes for role `{name}`"
                ) from None
            self.set_role_state(role, R[success])
            self.trigger(action, svc, name, nodes)

    # ---------------------------------------------------------------------- LCM actions
    def deploy_nets_action(self, user: User, service_id: int) -> None:
        svc = self.load(service_id, user)
        if svc.state == S["PENDING"]:
            try:
                self._deploy_networks(svc)
            except FlowError:
                svc.set_state(S["FAILED_DEPLOYING"])
                svc.save()
                raise
        svc.set_state(S["DEPLOYING_NETS"])
        self.trigger("deploy_nets", svc, due=time.monotonic() + self.rt.timings.nets)
        svc.save()

    def _deploy_networks(self, svc: Service) -> None:
        """``Service#deploy_networks``: create/reserve the networks that have no ``id`` yet."""
        for vnet in svc.body.get("networks_values") or []:
            for name, net in vnet.items():
                if not isinstance(net, dict) or "id" in net:
                    continue
                if "template_id" in net or "reserve_from" in net:
                    net["id"] = self._new_network(f"{name}-{svc.id}", net).id
        if not self.v70:
            self._resolve_networks(svc.body)

    @staticmethod
    def _resolve_networks(body: dict[str, Any]) -> None:
        """``Service#resolve_networks`` (6.10): ``$<network>`` in a role's vm_template_contents
        becomes that network's id, key by key in the order found (a plain text replace, so
        ``$Priv`` found first would also rewrite the start of ``$Private``, as gsub! does)."""
        nets = body.get("networks_values") or []
        for role in body.get("roles") or []:
            text = role.get("vm_template_contents")
            if not text:
                continue
            for key in re.findall(r"\$(\w+)", text):
                net = next((n for n in nets if isinstance(n, dict) and key in n), None)
                if net is not None and isinstance(net[key], dict):
                    text = text.replace(f"${key}", ruby_interp(net[key].get("id")))
            role["vm_template_contents"] = text

    def _new_network(self, name: str, spec: dict[str, Any]) -> Network:
        st = self.rt.store
        parent = (
            st.networks.get(ruby_to_i(spec.get("reserve_from"))) if "reserve_from" in spec else None
        )
        nid = st.next_id("network")
        third = 100 + nid % 150
        net = Network(
            id=nid,
            name=name,
            ar_start=f"10.{third}.0.10",
            ar_size=240,
            network_address=f"10.{third}.0.0",
            gateway=f"10.{third}.0.1",
            dns=f"10.{third}.0.1",
            bridge=parent.bridge if parent else "br0",
        )
        st.networks[nid] = net
        return net

    def deploy_action(self, user: User, service_id: int) -> None:
        svc = self.load(service_id, user)
        if self.v70:
            self._fill_template(svc)
        roles = svc.roles_deploy()
        if not roles:
            if svc.all_roles("RUNNING"):
                svc.set_state(S["RUNNING"])
                svc.save()
            return
        try:
            self.deploy_roles(svc, roles, "DEPLOYING", "FAILED_DEPLOYING", "deploy")
            svc.set_state(S["HOLD"] if svc.on_hold() else S["DEPLOYING"])
        except FlowError as exc:
            svc.set_state(S["FAILED_DEPLOYING"])
            svc.save()
            raise exc from None
        svc.save()

    def _fill_template(self, svc: Service) -> None:
        """``Service#generate_template_contents`` (7.0)."""
        service_inputs = svc.body.get("user_inputs_values") or {}
        service_nets = svc.body.get("networks_values") or []
        for role in svc.body.get("roles") or []:
            contents = role.get("template_contents") or {}
            role_inputs = role.get("user_inputs_values") or {}
            nics = contents.get("NIC") or []
            if nics:
                for nic in nics if isinstance(nics, list) else [nics]:
                    m = (
                        re.search(r"\$(\w+)", nic.get("NETWORK_ID", ""))
                        if isinstance(nic.get("NETWORK_ID"), str)
                        else None
                    )
                    if m:
                        found = next((n for n in service_nets if m.group(1) in n), None)
                        if found:
                            nic["NETWORK_ID"] = found[m.group(1)].get("id")
                contents["NIC"] = nics
            if service_inputs or role_inputs:
                merged = deep_merge_70(service_inputs, role_inputs)
                if "CONTEXT" not in contents:
                    contents["CONTEXT"] = {}
                for key, value in merged.items():
                    contents[key] = value
                    contents["CONTEXT"][key] = f"${key}"
            role["template_contents"] = contents

    def undeploy_action(self, user: User, service_id: int, delete: bool = False) -> None:
        svc = self.load(service_id, user)
        can = not (
            (svc.transient() and svc.state != S["UNDEPLOYING"])
            or svc.state == S["DONE"]
            or svc.failed()
        )
        if not can and not delete:
            raise FlowError(f"Service cannot be undeployed in state: {svc.state_str}")
        roles = svc.roles_shutdown()
        if not roles:
            del self.rt.store.documents[svc.id]
            self.cancel(svc.id)
            return
        try:
            self.undeploy_roles(svc, roles, "UNDEPLOYING", "FAILED_UNDEPLOYING", "undeploy")
            svc.set_state(S["UNDEPLOYING"])
        except FlowError:
            svc.set_state(S["FAILED_UNDEPLOYING"])
            svc.save()
            raise
        svc.save()

    def scale_action(
        self, user: User, service_id: Any, role_name: Any, cardinality: int, force: Any
    ) -> None:
        svc = self.load(service_id, user)
        if svc.state != S["RUNNING"]:
            raise FlowError(f"Service cannot be scaled in state: {svc.state_str}")
        role = svc.roles.get(role_name) if isinstance(role_name, str) else None
        if role is None:
            raise FlowError(f"Role {ruby_interp(role_name)} not found")
        diff = cardinality - ruby_to_i(role.get("cardinality"))
        # set_cardinality() builds this JSON text and parses it: a missing force is a parse error
        text = f'{{ "cardinality" : {cardinality},\n  "force" : {ruby_interp(force)} }}'
        template = ruby_json_parse(text)
        try:
            self.role_update(svc, role, template)
        except FlowError as exc:
            raise FlowError(
                f"Can't scale service {ruby_interp(service_id)}: {exc.message}"
            ) from None
        if diff > 0:
            owner = self.owner_of(svc)
            svc.user = owner
            role["scale_way"] = 0
            try:
                self.deploy_roles(svc, {role_name: role}, "SCALING", "FAILED_SCALING", "scaleup")
                svc.set_state(S["SCALING"])
            except FlowError:
                svc.set_state(S["FAILED_SCALING"])
                svc.save()
                raise
        elif diff < 0:
            role["scale_way"] = 1
            try:
                self.undeploy_roles(
                    svc, {role_name: role}, "SCALING", "FAILED_SCALING", "scaledown"
                )
                svc.set_state(S["SCALING"])
            except FlowError:
                svc.set_state(S["FAILED_SCALING"])
                svc.save()
                raise
        else:
            raise FlowError(f"Cardinality of {role_name} is already at {cardinality}")
        svc.save()

    def recover_action(self, user: User, service_id: Any, delete: bool = False) -> None:
        self.cancel(ruby_to_i(service_id))
        if delete:
            self.undeploy_action(user, service_id, True)
            return
        svc = self.load(service_id, user)
        name = svc.state_str
        if name in ("FAILED_DEPLOYING", "DEPLOYING", "PENDING"):
            for rname, role in svc.roles.items():
                if self._can_recover_deploy(svc, role):
                    nodes = self._recover_deploy(svc, role)
                    self.trigger("deploy", svc, rname, nodes, report=svc.report_ready())
        elif name in ("FAILED_UNDEPLOYING", "UNDEPLOYING", "FAILED_UNDEPLOYING_NETS"):
            for rname, role in svc.roles.items():
                if role.get("state") in (R["FAILED_UNDEPLOYING"], R["UNDEPLOYING"]) or not any(
                    rname in (r.get("parents") or []) and r.get("state") != R["DONE"]
                    for r in svc.roles.values()
                ):
                    nodes = self.shutdown_role(svc, role, recover=True)
                    self.trigger("undeploy", svc, rname, nodes)
        elif name in ("FAILED_SCALING", "SCALING"):
            svc.user = self.owner_of(svc)
            for rname, role in svc.roles.items():
                if role.get("state") not in (R["FAILED_SCALING"], R["SCALING"]):
                    continue
                if role.get("scale_way") == 0:
                    self.trigger(
                        "scaleup",
                        svc,
                        rname,
                        self._recover_deploy(svc, role),
                        report=svc.report_ready(),
                    )
                elif role.get("scale_way") == 1:
                    self.trigger(
                        "scaledown", svc, rname, self.shutdown_role(svc, role, recover=True)
                    )
        elif name in ("DEPLOYING_NETS", "FAILED_DEPLOYING_NETS"):
            self.trigger("deploy_nets", svc, due=time.monotonic() + self.rt.timings.nets)
        elif name == "UNDEPLOYING_NETS":
            self.trigger("undeploy_nets", svc, due=time.monotonic() + self.rt.timings.nets)
        elif name == "COOLDOWN":
            svc.set_state(S["RUNNING"])
            for role in svc.roles.values():
                self.set_role_state(role, R["RUNNING"])
        else:
            # WARNING too: LifeCycleManager#recover_action has no branch for it (6.10.5, 7.0.2),
            # the VMs that put the service there need a VM action (resume) through oned.
            # Service#recover (models/service.rb) has one, but nothing calls it.
            raise FlowError(f"Service cannot be recovered in state: {name}")
        svc.save()

    def _can_recover_deploy(self, svc: Service, role: dict[str, Any]) -> bool:
        if role.get("state") != R["PENDING"]:
            return role.get("state") in (R["FAILED_DEPLOYING"], R["DEPLOYING"], R["PENDING"])
        roles = svc.roles
        return all(
            roles[p].get("state") == R["RUNNING"] for p in role.get("parents") or [] if p in roles
        )

    def _recover_deploy(self, svc: Service, role: dict[str, Any]) -> list[int]:
        deployed: list[int] = []
        for node in role["nodes"]:
            vm = self.rt.store.vms.get(node["deploy_id"])
            if vm is None or vm.state == DONE:
                continue
            if vm.state in SUBSCRIBE_STATES:
                try:
                    self.cloud.vm_action(svc.user, "resume", vm.id)
                except OnedError:
                    pass
            deployed.append(vm.id)
        deployed += self.deploy_role(svc, role)
        return deployed

    def service_update(self, user: User, service_id: Any, new_text: str, append: bool) -> None:
        svc = self.load(service_id, user)
        if svc.transient() or svc.failed():
            raise FlowError(f"Service cannot be updated in state: {svc.state_str}")
        new = ruby_json_parse(new_text)
        immutable = (
            ["user_inputs", "user_inputs_values"]
            if self.v70
            else ["custom_attrs", "custom_attrs_values"]
        ) + [
            "deployment",
            "log",
            "name",
            "networks",
            "networks_values",
            "ready_status_gate",
            "state",
            "start_time",
        ]
        bad: str | None = None
        if append:
            bad = next((f"service/{a}" for a in immutable if new.get(a) is not None), None)
        else:
            if len(new.get("roles") or []) != len(svc.roles):
                bad = "service/roles size"
            else:
                bad = next(
                    (f"service/{a}" for a in immutable if new.get(a) != svc.body.get(a)), None
                )
            if bad is None:
                role_attrs = ["cardinality", "last_vmname", "nodes", "parents", "state"]
                role_attrs.append("template_id" if self.v70 else "vm_template")
                for role in new.get("roles") or []:
                    current = svc.roles.get(role.get("name"))
                    if current is None:
                        bad = "name"
                        break
                    bad = next(
                        (f"role/{a}" for a in role_attrs if role.get(a) != current.get(a)), None
                    )
                    if bad:
                        break
        if bad == "name":
            raise FlowError("To change `service/name` use rename operation")
        if bad:
            raise FlowError(f"Immutable value: `{bad}` can not be changed")
        svc.body = {**svc.doc.body, **new} if append else new
        svc.save()

    def add_role_action(self, user: User, service_id: Any, role: dict[str, Any]) -> None:
        svc = self.load(service_id, user)
        if svc.state != S["RUNNING"]:
            raise FlowError(f"Cannot modify roles in state: {svc.state_str}")
        if role.get("state") is None:
            role["state"] = R["PENDING"]
        self.init_role(role)
        if role.get("name") in svc.roles:
            raise FlowError(f"Role {role.get('name')} already exists")
        svc.body["roles"].append(role)
        if self.v70:
            self._fill_template(svc)
        svc.save()
        try:
            self.deploy_roles(
                svc, {role["name"]: svc.roles[role["name"]]}, "DEPLOYING", "FAILED_DEPLOYING", "add"
            )
            svc.set_state(S["DEPLOYING"])
        except FlowError:
            svc.set_state(S["FAILED_DEPLOYING"])
            svc.save()
            raise
        svc.save()

    def remove_role_action(self, user: User, service_id: Any, name: Any) -> None:
        svc = self.load(service_id, user)
        if svc.state != S["RUNNING"]:
            raise FlowError(f"Cannot modify roles in state: {svc.state_str}")
        role = svc.roles.get(name) if isinstance(name, str) else None
        if role is None:
            raise FlowError(f"Role {ruby_interp(name)} does not exist")
        try:
            self.undeploy_roles(svc, {name: role}, "UNDEPLOYING", "FAILED_UNDEPLOYING", "remove")
            svc.set_state(S["UNDEPLOYING"])
        except FlowError:
            svc.set_state(S["FAILED_UNDEPLOYING"])
            svc.save()
            raise
        svc.save()

    def release_action(self, user: User, service_id: Any) -> None:
        svc = self.load(service_id, user)
        roles = svc.roles_release()
        if not roles:
            raise FlowError("Service has no roles in HOLD")
        for name, role in roles.items():
            nodes = []
            for node in role["nodes"]:
                try:
                    self.cloud.vm_action(svc.user, "release", node["deploy_id"])
                    nodes.append(node["deploy_id"])
                except OnedError as exc:
                    svc.log_error(
                        f"Role {name}: Release failed for VM {node['deploy_id']}, {exc.message}"
                    )
            self.set_role_state(role, R["DEPLOYING"])
            self.trigger("release", svc, name, nodes, report=svc.report_ready())
        svc.set_state(S["DEPLOYING"])
        svc.save()

    def chown_action(self, user: User, service_id: Any, uid: int, gid: int) -> None:
        svc = self.load(service_id, user)
        store = self.rt.store
        try:
            if uid >= 0:
                owner = store.users.get(uid)
                if owner is None:
                    raise OnedError(
                        NO_EXISTS, f"[one.document.chown] Error getting user [{uid}].", uid
                    )
                svc.doc.uid, svc.doc.uname = owner.id, owner.name
            if gid >= 0:
                group = store.groups.get(gid)
                if group is None:
                    raise OnedError(
                        NO_EXISTS, f"[one.document.chown] Error getting group [{gid}].", gid
                    )
                svc.doc.gid, svc.doc.gname = group.id, group.name
            for role in svc.roles.values():
                for node in role["nodes"]:
                    self.cloud.vm_chown(user, node["deploy_id"], uid, gid)
        except OnedError as exc:
            raise FlowError.from_oned(exc) from None

    # ------------------------------------------------------------------------ callbacks
    def tick(self) -> None:
        """Evaluate the pending waits (EventManager) and run the watchdog."""
        t = time.monotonic()
        for wait in list(self.waits):
            if wait not in self.waits:
                continue
            outcome = self._check(wait, t)
            if outcome is None:
                continue
            self.waits.remove(wait)
            try:
                self._callback(wait, outcome)
            except (FlowError, OnedError, RubyJSONError):
                pass  # logged in the service body by the LCM code where OneFlow does
        self._watchdog()

    def _check(self, w: Wait, t: float) -> bool | None:
        """None: keep waiting; True: success callback; False: failure callback."""
        if w.kind in ("cooldown", "deploy_nets", "undeploy_nets"):
            return True if t >= w.due else None
        store = self.rt.store
        for node in list(w.nodes):
            vm = store.vms.get(node)
            if vm is None:
                continue
            if w.kind in ("undeploy", "scaledown", "remove"):
                reached = vm.state == DONE
            elif w.kind == "hold":
                reached = vm.state == 2
            elif w.report:
                ready = ts.first(vm.user_template, "READY")
                reached = vm.state == DONE or (isinstance(ready, str) and ready.strip() == "YES")
            else:
                reached = vm.state == DONE or (vm.state == 3 and vm.lcm_state == LCM["RUNNING"])
            if reached:
                w.successful[node] = True
                w.nodes.remove(node)
            elif vm.state in SUBSCRIBE_STATES:
                w.successful[node] = False
                w.nodes.remove(node)
            elif vm.state == 3 and vm.lcm_state in FAILURE_LCM_STATES:
                w.failure[node] = False
                w.nodes.remove(node)
        if w.nodes:
            return None
        return not w.failure

    def _callback(self, w: Wait, ok: bool) -> None:
        user = self.user_named(w.user)
        if w.kind == "deploy_nets":
            self.deploy_action(user, w.service_id)
            return
        if w.kind == "undeploy_nets":
            svc = self.load(w.service_id, user)
            del self.rt.store.documents[svc.id]
            self.cancel(svc.id)
            return
        svc = self.load(w.service_id, user)
        role = svc.roles.get(w.role or "")
        if role is None:
            return
        done_ids = set(w.successful) - set(w.failure)
        if w.kind in ("deploy", "release"):
            if not ok:
                self.cancel(svc.id)
                svc.set_state(S["FAILED_DEPLOYING"])
                self.set_role_state(role, R["FAILED_DEPLOYING"])
                svc.save()
                return
            self.set_role_state(role, R["RUNNING"])
            undeploy = self._check_role(svc, role)
            if svc.all_roles("RUNNING"):
                svc.set_state(S["RUNNING"])
            elif svc.strategy() == "straight" and w.kind == "deploy":
                try:  # the error is only logged by OneFlow; the service stays DEPLOYING
                    self.deploy_roles(
                        svc, svc.roles_deploy(), "DEPLOYING", "FAILED_DEPLOYING", "deploy"
                    )
                except FlowError:
                    pass
            svc.save()
            if undeploy:
                self.undeploy_action(user, svc.id)
        elif w.kind == "hold":
            if role.get("state") != R["HOLD"]:
                self.set_role_state(role, R["HOLD"])
            if svc.all_roles("HOLD") and svc.state != S["HOLD"]:
                svc.set_state(S["HOLD"])
            elif svc.strategy() == "straight":
                self.deploy_roles(svc, svc.roles_hold(), "DEPLOYING", "FAILED_DEPLOYING", "deploy")
            svc.save()
        elif w.kind in ("undeploy", "remove"):
            if not ok:
                self.cancel(svc.id)
                svc.set_state(S["FAILED_UNDEPLOYING"])
                self.set_role_state(role, R["FAILED_UNDEPLOYING"])
                role["nodes"] = [n for n in role["nodes"] if n["deploy_id"] not in done_ids]
                svc.save()
                return
            if w.kind == "remove":
                svc.body["roles"] = [r for r in svc.body["roles"] if r.get("name") != w.role]
                if svc.all_roles("DONE"):
                    del self.rt.store.documents[svc.id]
                    self.cancel(svc.id)
                    return
                svc.set_state(S["RUNNING"])
                svc.save()
                return
            self.set_role_state(role, R["DONE"])
            role["nodes"] = [n for n in role["nodes"] if n["deploy_id"] not in done_ids]
            if svc.all_roles("DONE"):
                self._delete_networks(svc)
                svc.set_state(S["UNDEPLOYING_NETS"])
                self.trigger("undeploy_nets", svc, due=time.monotonic() + self.rt.timings.nets)
                svc.save()
                return
            if svc.strategy() == "straight":
                self.undeploy_roles(
                    svc, svc.roles_shutdown(), "UNDEPLOYING", "FAILED_UNDEPLOYING", "undeploy"
                )
            svc.save()
        elif w.kind in ("scaleup", "scaledown"):
            if not ok:
                self.cancel(svc.id)
                svc.set_state(S["FAILED_SCALING"])
                self.set_role_state(role, R["FAILED_SCALING"])
                if w.kind == "scaledown":
                    role["nodes"] = [n for n in role["nodes"] if n["deploy_id"] not in done_ids]
                svc.save()
                return
            svc.set_state(S["COOLDOWN"])
            self.set_role_state(role, R["COOLDOWN"])
            if w.kind == "scaledown":
                role["nodes"] = [n for n in role["nodes"] if n["deploy_id"] not in done_ids]
            cooldown = ruby_to_i(role.get("cooldown")) * self.rt.timings.cooldown_scale
            self.trigger("cooldown", svc, w.role, due=time.monotonic() + cooldown)
            role.pop("scale_way", None)
            svc.save()
        elif w.kind == "cooldown":
            svc.set_state(S["RUNNING"])
            self.set_role_state(role, R["RUNNING"])
            svc.save()
            if self._check_role(svc, role):
                self.undeploy_action(user, svc.id)
        elif w.kind == "add":
            if not ok:
                self.cancel(svc.id)
                svc.set_state(S["FAILED_DEPLOYING"])
                self.set_role_state(role, R["FAILED_DEPLOYING"])
                svc.save()
                return
            self.set_role_state(role, R["RUNNING"])
            svc.set_state(S["RUNNING"])
            svc.save()

    def _delete_networks(self, svc: Service) -> None:
        for vnet in svc.body.get("networks_values") or []:
            for _, net in vnet.items():
                if isinstance(net, dict) and ("template_id" in net or "reserve_from" in net):
                    self.rt.store.networks.pop(ruby_to_i(net.get("id")), None)

    @staticmethod
    def _check_role(svc: Service, role: dict[str, Any]) -> bool:
        if not svc.body.get("automatic_deletion") or role["nodes"]:
            return False
        return all(not r.get("nodes") for r in svc.body.get("roles") or [])

    def _watchdog(self) -> None:
        """``ServiceWatchDog``: RUNNING/WARNING services follow their VMs.

        The original reacts to VM state-change events (ZeroMQ), so it is edge-triggered here
        too: a node is looked at when its (STATE, LCM_STATE) differs from the last tick. Changes
        that happen while a service is not watched (e.g. in COOLDOWN) are missed, as in OneFlow.
        """
        store = self.rt.store
        for doc in list(store.documents.values()):
            if doc.type != DOC_SERVICE or not isinstance(doc.body, dict):
                continue
            watched = doc.body.get("state") in (S["RUNNING"], S["WARNING"]) and not any(
                w.service_id == doc.id for w in self.waits
            )
            for role in doc.body.get("roles") or []:
                for node in list(role.get("nodes") or []):
                    vm = store.vms.get(node.get("deploy_id"))
                    if vm is None:
                        continue
                    current = (vm.state, vm.lcm_state)
                    if self._wd_seen.get(vm.id) == current:
                        continue
                    self._wd_seen[vm.id] = current
                    if not watched or doc.id not in store.documents:
                        continue
                    warning = vm.state == POWEROFF or (
                        vm.state == 3
                        and (vm.lcm_state in FAILURE_LCM_STATES or vm.lcm_state == LCM["UNKNOWN"])
                    )
                    if warning:
                        self._wd_error(doc, role["name"])
                    elif vm.state == DONE:
                        self._wd_done(doc, role["name"], vm)
                    elif vm.state == 3 and vm.lcm_state == LCM["RUNNING"]:
                        self._wd_running(doc, role["name"])

    def _wd_service(self, doc: Document) -> Service | None:
        owner = self.rt.store.users.get(doc.uid)
        if owner is None:
            return None
        return Service(self, doc, owner)

    def _wd_error(self, doc: Document, role_name: str) -> None:
        if (
            doc.body.get("state") == S["WARNING"]
            and self._role_state(doc, role_name) == R["WARNING"]
        ):
            return
        svc = self._wd_service(doc)
        if svc is None:
            return
        if svc.state != S["WARNING"]:
            svc.set_state(S["WARNING"])
        self.set_role_state(svc.roles[role_name], R["WARNING"])
        svc.save()

    def _wd_running(self, doc: Document, role_name: str) -> None:
        roles_now = {r.get("name"): r for r in doc.body.get("roles") or []}
        all_running_after = all(
            r.get("state") == R["RUNNING"] or n == role_name for n, r in roles_now.items()
        )
        if roles_now[role_name].get("state") == R["RUNNING"] and (
            doc.body.get("state") == S["RUNNING"] or not all_running_after
        ):
            return  # nothing would change (running_wd_cb would rewrite the same body)
        svc = self._wd_service(doc)
        if svc is None:
            return
        roles = svc.roles
        self.set_role_state(roles[role_name], R["RUNNING"])
        if svc.all_roles("RUNNING") and svc.state != S["RUNNING"]:
            svc.set_state(S["RUNNING"])
        svc.save()

    def _wd_done(self, doc: Document, role_name: str, vm: Vm) -> None:
        svc = self._wd_service(doc)
        if svc is None:
            return
        role = svc.roles[role_name]
        cardinality = ruby_to_i(role.get("cardinality")) - 1
        if cardinality >= 0:
            self.set_cardinality(svc, role, cardinality)
        role["nodes"] = [n for n in role["nodes"] if n.get("deploy_id") != vm.id]
        undeploy = self._check_role(svc, role)
        svc.save()
        if undeploy:
            try:
                self.undeploy_action(svc.user, svc.id)
            except FlowError:
                pass

    @staticmethod
    def _role_state(doc: Document, role_name: str) -> Any:
        for role in doc.body.get("roles") or []:
            if role.get("name") == role_name:
                return role.get("state")
        return None


# ---------------------------------------------------------------------------------- REST
def _sinatra_404(method: str, path: str) -> str:
    code = f"{method.lower()} '{path}' do\n  \"Hello World\"\nend\n"
    escaped = (
        code.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n  <style type="text/css">\n'
        "  body { text-align:center;font-family:helvetica,arial;font-size:22px;\n"
        "    color:#888;margin:20px}\n"
        "  #c {margin:0 auto;width:500px;text-align:left}\n  </style>\n</head>\n<body>\n"
        "  <h2>Sinatra doesn\u2019t know this ditty.</h2>\n"
        "  <img src='/__sinatra__/404.png'>\n"
        '  <div id="c">\n    Try this:\n'
        f"    <pre>{escaped}</pre>\n  </div>\n</body>\n</html>\n"
    )


class Halt(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _text(status: int, message: str) -> Response:
    return Response(status, message, HTML)


def _internal(message: str) -> Response:
    """The ``error 500`` block: uncaught exception -> JSON ``{message, reason}``."""
    return Response(500, ruby_json({"message": "Internal server error", "reason": message}), HTML)


class OneFlowApi:
    def __init__(self, rt: Runtime, engine: FlowEngine) -> None:
        self.rt = rt
        self.engine = engine
        self.routes = [
            Route("GET", "/service", self.service_list),
            Route("GET", "/service/:id", self.service_show),
            Route("DELETE", "/service/:id", self.service_delete),
            Route("POST", "/service/:id/action", self.service_action),
            Route("PUT", "/service/:id", self.service_put),
            Route("POST", "/service/:id/role/:role_name/action", self.role_action),
            Route("POST", "/service/:id/scale", self.service_scale),
            Route("POST", "/service/:id/role_action", self.service_role_action),
            Route("POST", "/service_pool/purge_done", self.purge_done),
            Route("GET", "/service_template", self.template_list),
            Route("GET", "/service_template/:id", self.template_show),
            Route("DELETE", "/service_template/:id", self.template_delete),
            Route("PUT", "/service_template/:id", self.template_put),
            Route("POST", "/service_template", self.template_create),
            Route("POST", "/service_template/:id/action", self.template_action),
        ]

    @property
    def cloud(self) -> Cloud:
        return self.rt.cloud

    @property
    def version(self) -> str:
        return self.rt.config.version

    # ------------------------------------------------------------------------ dispatch
    def dispatch(self, req: Request) -> tuple[Response, str]:
        route = find_route(self.routes, req)
        key = route.key if route else f"{req.method} <no route>"
        self.rt.arrive("oneflow", key)
        with self.rt.locked():
            try:
                user = self._authenticate(req)
                if route is None:
                    return Response(
                        404, _sinatra_404(req.method, req.path), HTML, {"X-Cascade": "pass"}
                    ), key
                return route.handler(req, user), key
            except Halt as halt:
                return halt.response, key
            except RubyJSONError as exc:
                return _internal(str(exc)), key
            except (RubyNoMethodError, fs.RubyTypeError) as exc:
                return _internal(str(exc)), key
            except FlowError as exc:
                return _text(http_status(exc.errno), exc.message), key

    def _authenticate(self, req: Request) -> User:
        header = req.headers.get("Authorization")
        if not header or not header.lower().startswith("basic "):
            raise Halt(_text(401, "A username and password must be provided"))
        try:
            decoded = base64.b64decode(header[6:].strip() + "===").decode("utf-8", "replace")
        except ValueError:
            decoded = ""
        try:
            return self.cloud.authenticate(decoded, "one.user.info")
        except OnedError:
            raise Halt(_text(401, "Invalid credentials")) from None

    def _body(self, req: Request) -> str:
        if self.rt.options.get("rack3_form_body_bug") and req.is_form():
            return ""
        return req.text()

    def _json(self, req: Request) -> Any:
        return ruby_json_parse(self._body(req))

    @staticmethod
    def _action(data: Any) -> tuple[str | None, Any]:
        if not isinstance(data, dict):
            raise RubyNoMethodError(f"undefined method `[]' for {_ruby_desc(data)}")
        action = data.get("action")
        if not isinstance(action, dict):
            raise RubyNoMethodError(f"undefined method `[]' for {_ruby_desc(action)}")
        return action.get("perform"), action.get("params")

    # ------------------------------------------------------------------- JSON renders
    def doc_hash(self, doc: Document) -> dict[str, Any]:
        data = X.to_hash(X.document_node(doc))
        body = data["DOCUMENT"]["TEMPLATE"].get("BODY")
        if isinstance(body, str) and body:
            data["DOCUMENT"]["TEMPLATE"]["BODY"] = ruby_json_parse(body)
        return data

    def pool_json(self, user: User, doc_type: int) -> str:
        docs = self.cloud.documents_of_type(user, doc_type)
        if not docs:
            return ruby_pretty_json({"DOCUMENT_POOL": {}})
        return ruby_pretty_json(
            {"DOCUMENT_POOL": {"DOCUMENT": [self.doc_hash(d)["DOCUMENT"] for d in docs]}}
        )

    def _doc(self, user: User, raw_id: str, doc_type: int) -> Document:
        doc_id = ruby_to_i(raw_id)
        try:
            doc = self.cloud.get_document(user, doc_id)
        except OnedError as exc:
            raise FlowError.from_oned(exc) from None
        if doc.type != doc_type:
            raise FlowError(f"[DocumentInfo] Error getting document [{doc_id}].")
        return doc

    # ---------------------------------------------------------------------- services
    def service_list(self, req: Request, user: User) -> Response:
        return Response(200, self.pool_json(user, DOC_SERVICE), HTML)

    def service_show(self, req: Request, user: User) -> Response:
        doc = self._doc(user, req.params["id"], DOC_SERVICE)
        return Response(200, ruby_pretty_json(self.doc_hash(doc)), HTML)

    def service_delete(self, req: Request, user: User) -> Response:
        self._doc(user, req.params["id"], DOC_SERVICE)
        self.engine.undeploy_action(user, ruby_to_i(req.params["id"]))
        return Response(204)

    def service_action(self, req: Request, user: User) -> Response:
        perform, opts = self._action(self._json(req))
        sid = req.params["id"]
        eng = self.engine
        if perform == "recover":
            eng.recover_action(user, sid, bool(isinstance(opts, dict) and opts.get("delete")))
        elif perform == "chown":
            if isinstance(opts, dict) and opts.get("owner_id") is not None:
                eng.chown_action(
                    user, sid, ruby_to_i(opts["owner_id"]), ruby_to_i(opts.get("group_id", -1))
                )
            else:
                raise FlowError(f"Action {perform}: You have to specify a UID")
        elif perform == "chgrp":
            if isinstance(opts, dict) and opts.get("group_id") is not None:
                eng.chown_action(user, sid, -1, ruby_to_i(opts["group_id"]))
            else:
                raise FlowError(f"Action {perform}: You have to specify a GID")
        elif perform == "chmod":
            if isinstance(opts, dict) and opts.get("octet"):
                svc = eng.load(sid, user)
                svc.doc.perms.set_octet(str(opts["octet"]))
            else:
                raise FlowError(f"Action {perform}: You have to specify an OCTET")
        elif perform == "rename":
            if isinstance(opts, dict) and opts.get("name"):
                svc = eng.load(sid, user)
                svc.doc.name = str(opts["name"])
            else:
                raise FlowError(f"Action {perform}: You have to specify a name")
        elif perform == "release":
            eng.release_action(user, sid)
        elif perform in SCHEDULE_ACTIONS:
            if not isinstance(opts, dict):
                raise RubyNoMethodError(f"undefined method `[]' for {_ruby_desc(opts)}")
            eng.load(sid, user)  # scheduled actions are accepted but not executed by the emulator
        else:
            raise FlowError(f"Action {ruby_interp(perform)} not supported")
        return Response(204)

    def service_put(self, req: Request, user: User) -> Response:
        text = self._body(req)
        try:
            data = ruby_json_parse(text)
            append = False
            if isinstance(data, dict) and "append" in data:
                if "template" not in data:
                    return _text(400, "Missing template to append")
                append = bool(data["append"])
                text = data["template"]
                data = ruby_json_parse(text)
            if not append:
                fs.validate_template(copy.deepcopy(data), self.version)
        except (RubyJSONError, fs.ParseException) as exc:
            return _text(400, str(exc))
        self.engine.service_update(user, req.params["id"], text, append)
        return Response(204)

    def role_action(self, req: Request, user: User) -> Response:
        _perform, opts = self._action(self._json(req))  # OneFlow does not validate the action
        if not isinstance(opts, dict):
            raise RubyNoMethodError(f"undefined method `[]' for {_ruby_desc(opts)}")
        svc = self.engine.load(req.params["id"], user)
        if req.params["role_name"] not in svc.roles:
            raise FlowError(f"Role '{req.params['role_name']}' not found")
        return Response(204)

    def service_scale(self, req: Request, user: User) -> Response:
        data = self._json(req)
        if not isinstance(data, dict):
            raise RubyNoMethodError(f"undefined method `[]' for {_ruby_desc(data)}")
        self.engine.scale_action(
            user,
            req.params["id"],
            data.get("role_name"),
            ruby_to_i(data.get("cardinality")),
            data.get("force"),
        )
        return Response(204)

    def service_role_action(self, req: Request, user: User) -> Response:
        perform, opts = self._action(self._json(req))
        if perform == "add_role":
            if not isinstance(opts, dict):
                raise RubyNoMethodError(f"undefined method `[]' for {_ruby_desc(opts)}")
            try:
                role = opts.get("role")
                role = (
                    role
                    if isinstance(role, dict)
                    else ruby_json_parse(role if isinstance(role, str) else "")
                )
                fs.validate_role(role, self.version)
            except (RubyJSONError, fs.ParseException) as exc:
                return _text(400, str(exc))
            self.engine.add_role_action(user, req.params["id"], role)
        elif perform == "remove_role":
            if not isinstance(opts, dict):
                raise RubyNoMethodError(f"undefined method `[]' for {_ruby_desc(opts)}")
            self.engine.remove_role_action(user, req.params["id"], opts.get("role"))
        else:
            raise FlowError(f"Action {ruby_interp(perform)} not supported")
        return Response(204)

    def purge_done(self, req: Request, user: User) -> Response:
        for doc in self.cloud.documents_of_type(user, DOC_SERVICE):
            if isinstance(doc.body, dict) and doc.body.get("state") == S["DONE"]:
                self.rt.store.documents.pop(doc.id, None)
        return Response(204)

    # --------------------------------------------------------------------- templates
    def template_list(self, req: Request, user: User) -> Response:
        return Response(200, self.pool_json(user, DOC_SERVICE_TEMPLATE), HTML)

    def template_show(self, req: Request, user: User) -> Response:
        doc = self._doc(user, req.params["id"], DOC_SERVICE_TEMPLATE)
        return Response(200, ruby_pretty_json(self.doc_hash(doc)), HTML)

    def template_delete(self, req: Request, user: User) -> Response:
        try:
            data = ruby_json_parse(self._body(req))
            delete_type = data["delete_type"] if isinstance(data, dict) else "none"
        except (RubyJSONError, KeyError, TypeError):
            delete_type = "none"
        doc_id = ruby_to_i(req.params["id"])
        try:
            if delete_type in ("templates", "all"):
                doc = self._doc(user, req.params["id"], DOC_SERVICE_TEMPLATE)
                for role in doc.body.get("roles", []) if isinstance(doc.body, dict) else []:
                    tid = ruby_to_i(role.get("template_id", role.get("vm_template")))
                    self.cloud.get_template(user, tid, "one.template.info")
                    self.rt.store.vm_templates.pop(tid, None)
            self.cloud.document_delete(user, doc_id)
        except OnedError as exc:
            raise FlowError.from_oned(exc) from None
        return Response(204)

    def template_put(self, req: Request, user: User) -> Response:
        doc = self._doc(user, req.params["id"], DOC_SERVICE_TEMPLATE)
        try:
            template = ruby_json_parse(self._body(req))
            if not isinstance(template, dict):
                raise RubyNoMethodError(f"undefined method `[]' for {_ruby_desc(template)}")
            current = doc.body if isinstance(doc.body, dict) else {}
            if template.get("registration_time") is None:
                template["registration_time"] = current.get("registration_time")
            if template["registration_time"] != current.get("registration_time"):
                return _text(
                    500, "Immutable value: `service_template/registration_time` can not be changed"
                )
            fs.validate_template(template, self.version)
        except (RubyJSONError, fs.ParseException) as exc:
            return _text(400, str(exc))
        try:  # the update itself is one.document.update, which needs MANAGE
            self.cloud.authorize(user, doc, "MANAGE", "DOCUMENT", "one.document.update")
        except OnedError as exc:
            raise FlowError.from_oned(exc) from None
        doc.body = template
        return Response(200, ruby_pretty_json(self.doc_hash(doc)), HTML)

    def template_create(self, req: Request, user: User) -> Response:
        try:
            template = ruby_json_parse(self._body(req))
            fs.validate_template(template, self.version)
        except (RubyJSONError, fs.ParseException) as exc:
            return _text(400, str(exc))
        template["registration_time"] = now()
        try:
            doc = self.cloud.document_allocate(
                user, str(template.get("name", "")), DOC_SERVICE_TEMPLATE, template
            )
        except OnedError as exc:
            raise FlowError.from_oned(exc) from None
        return Response(201, ruby_pretty_json(self.doc_hash(doc)), HTML)

    def template_action(self, req: Request, user: User) -> Response:
        perform, opts = self._action(self._json(req))
        if opts is None:
            opts = {}
        raw_id = req.params["id"]
        if perform == "instantiate":
            return self._instantiate(user, raw_id, opts)
        doc = self.rt.store.documents.get(ruby_to_i(raw_id))
        ok_doc = doc is not None and self.cloud.can(user, doc.uid, doc.gid, doc.perms, "MANAGE")
        if perform in ("chown", "chgrp", "chmod", "rename", "update") and not isinstance(
            opts, dict
        ):
            raise RubyNoMethodError(f"undefined method `[]' for {_ruby_desc(opts)}")
        if perform == "chown" and opts.get("owner_id") is not None:
            if ok_doc and (owner := self.rt.store.users.get(ruby_to_i(opts["owner_id"]))):
                doc.uid, doc.uname = owner.id, owner.name
            return Response(204)
        if perform == "chgrp" and opts.get("group_id") is not None:
            if ok_doc and (group := self.rt.store.groups.get(ruby_to_i(opts["group_id"]))):
                doc.gid, doc.gname = group.id, group.name
            return Response(204)
        if perform == "chmod" and opts.get("octet"):
            if ok_doc:
                doc.perms.set_octet(str(opts["octet"]))
            return Response(204)
        if perform == "rename":
            if ok_doc and opts.get("name"):
                doc.name = str(opts["name"])
            return Response(204)
        if perform == "update" and (opts.get("template_json") or opts.get("template_raw")):
            if opts.get("template_json"):
                try:
                    template = ruby_json_parse(opts["template_json"])
                    base = doc.body if ok_doc and isinstance(doc.body, dict) else {}
                    if opts.get("append") is True:
                        template = {**base, **template}
                    elif template.get("registration_time") is None:
                        template["registration_time"] = base.get("registration_time")
                    fs.validate_template(template, self.version)
                except (RubyJSONError, fs.ParseException) as exc:
                    return _text(400, str(exc))
                if ok_doc:
                    doc.body = template
            return Response(204)
        if perform == "clone":
            source = self._doc(user, raw_id, DOC_SERVICE_TEMPLATE)
            body = copy.deepcopy(source.body)
            if isinstance(body, dict):
                body["registration_time"] = now()
            try:
                new = self.cloud.document_allocate(
                    user, str(opts.get("name") or ""), DOC_SERVICE_TEMPLATE, body
                )
            except OnedError as exc:
                return _text(500, exc.message)
            return Response(201, ruby_pretty_json(self.doc_hash(new)), HTML)
        return Response(200, "", HTML)

    def _instantiate(self, user: User, raw_id: str, opts: Any) -> Response:
        doc = self._doc(user, raw_id, DOC_SERVICE_TEMPLATE)
        if not isinstance(opts, dict):
            raise RubyNoMethodError(f"undefined method `[]' for {_ruby_desc(opts)}")
        merge = opts.get("merge_template") or {}
        if not isinstance(merge, dict):
            raise RubyNoMethodError(f"undefined method `key?' for {_ruby_desc(merge)}")
        body = copy.deepcopy(doc.body) if isinstance(doc.body, dict) else {}
        v70 = self.version == "7.0"
        inputs_key, values_key = (
            ("user_inputs", "user_inputs_values")
            if v70
            else ("custom_attrs", "custom_attrs_values")
        )
        try:
            if v70 and "custom_attrs_values" in merge:
                merge["user_inputs_values"] = merge.pop("custom_attrs_values")
            _check_inputs(body.get(inputs_key), merge.get(values_key), v70)
            for role in body.get("roles") or []:
                if v70 and not isinstance(role.get("template_contents", {}), dict):
                    raise FlowError(
                        "Error validating template_contents object for therole "
                        f"{role.get('name')}. The object must be a valid hash."
                    )
                if role.get(inputs_key) is None:
                    continue
                merge_roles = merge.get("roles")
                what = "user inputs" if v70 else "custom attributes"
                if merge_roles is None:
                    raise FlowError(
                        f"The Service template specifies {what} for the role "
                        f"{role.get('name')} but no values have been found"
                    )
                if not isinstance(merge_roles, list) or not merge_roles:
                    raise FlowError(f"The role {what} are empty or do not have a valid format")
                merge_role = next(
                    (
                        r
                        for r in merge_roles
                        if isinstance(r, dict) and r.get("name") == role.get("name")
                    ),
                    None,
                )
                if merge_role is None:
                    if v70:
                        continue
                    raise FlowError("undefined method `[]' for nil:NilClass")
                if v70 and "custom_attrs_values" in merge_role:
                    merge_role["user_inputs_values"] = merge_role.pop("custom_attrs_values")
                _check_inputs(role.get(inputs_key), merge_role.get(values_key), v70)
        except FlowError as exc:
            return _text(400, exc.message)
        networks = body.get("networks")
        nets_values = merge.get("networks_values")
        if networks and not nets_values:
            nets_values = []
            try:
                for key, value in networks.items():
                    kind_id = value.split("|")[4].strip().split(":")
                    nets_values.append(
                        {key: {kind_id[0]: kind_id[1] if len(kind_id) > 1 else None}}
                    )
            except (AttributeError, IndexError):
                return _text(400, "Wrong networks format")
            merge["networks_values"] = nets_values
        if networks and not isinstance(networks, dict):
            return _text(400, "Wrong networks format")
        if nets_values and any(not isinstance(v, dict) for v in nets_values):
            return _text(400, "Wrong networks_values format")
        if networks and not nets_values:
            return _text(400, "Missing networks_values")
        if networks and nets_values and set(networks) - {k for v in nets_values for k in v}:
            return _text(400, "Every network key must have its value defined at networks_value")
        for net in nets_values or []:
            for value in net.values():
                if isinstance(value, dict):
                    for k, v in value.items():
                        if isinstance(v, str):
                            value[k] = v.replace('\\"', "")
        # ServiceTemplate#instantiate
        if v70:
            body = _handle_nested_values(body, merge)
            instance = deep_merge_70(copy.deepcopy(body), merge)
        else:
            instance = deep_merge_610(copy.deepcopy(body), merge)
        try:
            fs.validate_template(instance, self.version)
        except fs.ParseException as exc:
            return _text(500, str(exc))
        # Service#allocate
        instance["state"] = S["PENDING"]
        for role in instance.get("roles") or []:
            if role.get("state") is None:
                role["state"] = R["PENDING"]
        instance["start_time"] = now()
        if not v70:
            _resolve_attributes_610(instance)
        try:
            service = self.cloud.document_allocate(
                user, str(instance.get("name", "")), DOC_SERVICE, instance
            )
        except OnedError as exc:
            raise FlowError.from_oned(exc) from None
        response = Response(201, ruby_pretty_json(self.doc_hash(service)), HTML)
        self.engine.deploy_nets_action(user, service.id)
        return response


def _check_inputs(inputs: Any, values: Any, v70: bool) -> None:
    if inputs is None or (hasattr(inputs, "__len__") and len(inputs) == 0):
        return
    if v70:
        missing = "The Service template specifies User Inputs but no values have been found"
        wrong = "Wrong User Inputs or User Inputs Values format"
        every = "Verify that every User Input have its corresponding value defined"
    else:
        missing = "The Service template specifies custom attributes but no values have been found"
        wrong = "Wrong custom_attrs or custom_attrs_values format"
        every = "Verify that every custom attribute have its corresponding value defined"
    if values is None:
        raise FlowError(missing)
    if not isinstance(inputs, dict) or not isinstance(values, dict):
        raise FlowError(wrong)
    if set(inputs) - set(values):
        raise FlowError(every)


def _handle_nested_values(template: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``ServiceTemplate#handle_nested_values`` (7.0): networks and roles merged by name."""
    roles = template.get("roles") or []
    extra_roles = extra.get("roles", [])
    template_nets = template.get("networks_values") or []
    extra_nets = extra.get("networks_values") or []
    if extra_nets:
        for extra_net in extra_nets:
            if not isinstance(extra_net, dict) or not extra_net:
                continue
            net_name = next(iter(extra_net))
            index = next(
                (i for i, n in enumerate(template_nets) if isinstance(n, dict) and net_name in n),
                None,
            )
            if index is not None:
                template_nets[index] = extra_net
            else:
                template_nets.append(extra_net)
        template["networks_values"] = template_nets
        extra["networks_values"] = []
    if not extra_roles:
        return template
    for index, role in enumerate(roles):
        match = next(
            (r for r in extra_roles if isinstance(r, dict) and r.get("name") == role.get("name")),
            None,
        )
        if match is not None:
            roles[index] = deep_merge_70(role, match)
    extra.pop("roles", None)
    return template


def _resolve_attributes_610(template: dict[str, Any]) -> None:
    """``Service#resolve_attributes`` (6.10): ``$VAR`` in ``vm_template_contents``."""
    service_values = template.get("custom_attrs_values")
    for role in template.get("roles") or []:
        contents = role.get("vm_template_contents")
        if contents:
            for key in re.findall(r"\$(\w+)", contents):
                role_values = role.get("custom_attrs_values")
                if isinstance(role_values, dict) and key in role_values:
                    contents = contents.replace("$" + key, str(role_values[key]))
                elif isinstance(service_values, dict) and key in service_values:
                    contents = contents.replace("$" + key, str(service_values[key]))
            role["vm_template_contents"] = contents
        if role.get("user_inputs_values"):
            role["vm_template_contents"] = role.get("vm_template_contents") or ""
            for key, value in role["user_inputs_values"].items():
                role["vm_template_contents"] += f'\n{key}="{value}"'


def _ruby_desc(value: Any) -> str:
    from .compat import ruby_class, ruby_inspect

    return f"{ruby_inspect(value)}:{ruby_class(value)}"
