"""The :class:`Emulator`: three HTTP servers (oned XML-RPC, OneFlow, OneGate), a ticker, and a
Python API to populate and steer the emulated cloud from tests and demos."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import template_syntax as ts
from .core import CloudConfig, Hooks, OnedError, Timings
from .faults import Fault
from .httpd import Dispatch, Request, Response, json_response, make_server
from .oned import OnedApi
from .oneflow import SERVICE_STATES, TRANSIENT, FlowEngine, OneFlowApi
from .onegate import OneGateApi
from .runtime import Runtime
from .state import LCM, VM_STATE_NAMES, Network, Store, User, Vm

if TYPE_CHECKING:
    from .containers import ContainerBackend, ContainerOptions

log = logging.getLogger("opennebula_emulator")

DEFAULT_VM_TEMPLATE: ts.Template = {
    "CONTEXT": {
        "NETWORK": "YES",
        "REPORT_READY": "YES",
        "SSH_PUBLIC_KEY": "$USER[SSH_PUBLIC_KEY]",
        "TOKEN": "YES",
    },
    "CPU": "0.1",
    "GRAPHICS": {"LISTEN": "127.0.0.1", "TYPE": "VNC"},
    "MEMORY": "128",
    "NIC": {"NETWORK": "private"},
    "VCPU": "1",
}


class Emulator:
    """An emulated OpenNebula front-end.

    >>> with Emulator(timings=Timings.fast()) as emu:      # ephemeral ports
    ...     one = pyone.OneServer(emu.oned_url, session="oneadmin:password")
    ...     one.vmpool.infoextended(-2, -1, -1, 3)

    ``version``: ``"7.0"`` (behaves like 7.0.2, the recorded release) or ``"6.10"``.
    ``onegate_endpoint``: the ONEGATE_ENDPOINT written into VM contexts (default: the OneGate URL).
    ``auto_boot``: VMs go PENDING → RUNNING by themselves; with False they wait for
    :meth:`boot_vm` (for a hook that starts a container first).
    ``containers``: run every VM as a systemd container (:mod:`.containers`); then ``host``
    defaults to the Docker network's gateway, which is also the ONEGATE_ENDPOINT host, and
    VMs wait in PENDING for their container.
    """

    def __init__(
        self,
        host: str | None = None,
        oned_port: int = 0,
        oneflow_port: int = 0,
        onegate_port: int = 0,
        *,
        version: str = "7.0",
        timings: Timings | None = None,
        seed: int | None = None,
        hooks: Hooks | None = None,
        auto_boot: bool = True,
        onegate_endpoint: str | None = None,
        admin_password: str = "password",  # noqa: S107 - the recorded oneadmin password
        state_file: str | os.PathLike[str] | None = None,
        defaults: bool = True,
        containers: ContainerOptions | None = None,
    ) -> None:
        if version not in ("7.0", "6.10"):
            raise ValueError("version must be '7.0' or '6.10'")
        self.containers: ContainerBackend | None = None
        gateway = None
        if containers is not None:
            from .containers import ContainerBackend  # only with containers: Docker is optional

            self.containers = ContainerBackend(containers)
            gateway = self.containers.prepare()
            auto_boot = False
            if host in ("127.0.0.1", "localhost", "::1"):
                log.warning("containers cannot reach an emulator on %s", host)
        host = host or gateway or "127.0.0.1"
        self.host = host
        self.timings = timings or Timings()
        self.hooks = hooks or Hooks()
        self.state_file = Path(state_file) if state_file else None
        store = Store(seed=seed, version=version)
        config = CloudConfig(version=version, auto_boot=auto_boot)
        self.rt = Runtime(store, config, self.timings, self.hooks)
        self.engine = FlowEngine(self.rt)
        self.rt.flow = self.engine
        self.oned = OnedApi(self.rt)
        self.oneflow = OneFlowApi(self.rt, self.engine)
        self.onegate = OneGateApi(self.rt, self.engine)

        def oned_dispatch(req: Request) -> tuple[Response, str]:
            if req.method != "POST" or req.path != "/RPC2":
                return Response(404, "Not Found", "text/plain"), "<not RPC2>"
            body, method = self.oned.handle(req.body)
            return Response(200, body, "text/xml"), method

        def server(api: str, port: int, dispatch: Dispatch) -> ThreadingHTTPServer:
            return make_server(host, port, api, dispatch, self._control, self.rt.faults)

        try:
            self._servers = {
                "oned": server("oned", oned_port, oned_dispatch),
                "oneflow": server("oneflow", oneflow_port, self.oneflow.dispatch),
                "onegate": server("onegate", onegate_port, self.onegate.dispatch),
            }
        except BaseException:
            if self.containers is not None:
                self.containers.close()  # the network it may have created
            raise
        if onegate_endpoint is None and gateway is not None:
            onegate_endpoint = f"http://{gateway}:{self._servers['onegate'].server_address[1]}"
        config.onegate_endpoint = onegate_endpoint or self.onegate_url
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._started = False
        if self.state_file and self.state_file.exists():
            self.load_state(self.state_file)
        elif defaults:
            self._create_defaults(admin_password)
        if self.containers is not None:
            self.containers.attach(self)

    # ---------------------------------------------------------------------------- URLs
    def _url(self, api: str) -> str:
        host, port = self._servers[api].server_address[:2]
        return f"http://{host}:{port}"

    @property
    def oned_url(self) -> str:
        """XML-RPC endpoint, e.g. ``http://127.0.0.1:2633/RPC2`` (for pyone / ONE_URL)."""
        return self._url("oned") + "/RPC2"

    @property
    def oneflow_url(self) -> str:
        return self._url("oneflow")

    @property
    def onegate_url(self) -> str:
        return self._url("onegate")

    @property
    def store(self) -> Store:
        return self.rt.store

    @property
    def lock(self) -> Any:
        return self.rt.store.lock

    # ---------------------------------------------------------------------- lifecycle
    def start(self) -> Emulator:
        if self._started:
            return self
        self._started = True
        for name, server in self._servers.items():
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"one-emu-{name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        ticker = threading.Thread(target=self._tick_loop, name="one-emu-ticker", daemon=True)
        ticker.start()
        self._threads.append(ticker)
        return self

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.timings.tick):
            try:
                self.rt.tick()
            except Exception:  # keep ticking whatever happens
                log.exception("ticker failed")

    def stop(self) -> None:
        self._stop.set()
        for server in self._servers.values():
            if self._started:
                server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self.rt.shutdown()
        if self.containers is not None:
            self.containers.close()
        if self.state_file:
            self.save_state(self.state_file)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tick(self) -> None:
        """Run one ticker step now (tests that do not want to sleep)."""
        self.rt.tick()

    # ----------------------------------------------------------------------- defaults
    def _create_defaults(self, admin_password: str) -> None:
        with self.rt.locked():
            self.rt.cloud.add_user("oneadmin", admin_password, group="oneadmin")
            self.store.networks[self.store.next_id("network")] = Network(id=0, name="private")
            self.rt.cloud.add_vm_template(self.store.users[0], "fl-node", DEFAULT_VM_TEMPLATE)

    # -------------------------------------------------------------------- population
    def add_user(self, name: str, password: str, group: str | int = "users") -> User:
        with self.rt.locked():
            return self.rt.cloud.add_user(name, password, group)

    def add_network(self, name: str, **fields: Any) -> Network:
        """A virtual network; ``fields`` as in :class:`~.state.Network` (``ar_start``, ``ar_size``,
        ``network_address``, ``network_mask``, ``gateway``, ``dns``, ``bridge``)."""
        with self.rt.locked():
            nid = self.store.next_id("network")
            net = Network(id=nid, name=name, **fields)
            self.store.networks[nid] = net
            return net

    def _user(self, owner: str | int | User) -> User:
        if isinstance(owner, User):
            return owner
        user = (
            self.store.users.get(owner)
            if isinstance(owner, int)
            else self.store.user_by_name(owner)
        )
        if user is None:
            raise KeyError(f"no such user {owner!r}")
        return user

    def add_vm_template(
        self, name: str, template: ts.Template | str | None = None, owner: str | int = "oneadmin"
    ) -> int:
        """A VM template (dict in the template representation, or template text)."""
        tmpl = (
            ts.parse_str_or_xml(template)
            if isinstance(template, str)
            else (template or DEFAULT_VM_TEMPLATE)
        )
        with self.rt.locked():
            return self.rt.cloud.add_vm_template(self._user(owner), name, tmpl).id

    def add_vm(
        self,
        name: str,
        *,
        owner: str | int = "oneadmin",
        template: ts.Template | str | None = None,
        user_template: dict[str, Any] | None = None,
        template_id: int | None = 0,
        running: bool = True,
        ip: str | None = None,
    ) -> int:
        """A VM. By default a copy of template 0 (``fl-node``), created directly RUNNING (no
        hooks). ``user_template`` values are added to the VM USER_TEMPLATE (e.g. ``LABELS``).
        ``running=False`` creates it PENDING, as ``one.template.instantiate`` would."""
        with self.rt.locked():
            user = self._user(owner)
            if template is None:
                base = (
                    self.store.vm_templates[template_id].template
                    if template_id is not None
                    else DEFAULT_VM_TEMPLATE
                )
                tmpl = ts.copy_template(base)
            else:
                tmpl = (
                    ts.parse_str_or_xml(template)
                    if isinstance(template, str)
                    else ts.copy_template(template)
                )
            for key, value in (user_template or {}).items():
                tmpl[key.upper()] = value if isinstance(value, (dict, list)) else str(value)
            vm = self.rt.cloud.allocate_vm(
                user, tmpl, name, False, template_id, running=running, ip=ip
            )
            if running:
                self.rt.cloud.refresh_monitoring(vm)
            return vm.id

    def add_vm_pool(
        self,
        count: int,
        *,
        name_prefix: str = "pool-",
        owner: str | int = "oneadmin",
        user_template: dict[str, Any] | None = None,
        template_id: int | None = 0,
    ) -> list[int]:
        """``count`` RUNNING VMs ``<prefix>0`` ... (like ``onetemplate instantiate --multiple``)."""
        return [
            self.add_vm(
                f"{name_prefix}{i}",
                owner=owner,
                user_template=user_template,
                template_id=template_id,
            )
            for i in range(count)
        ]

    def add_service_template(self, body: dict[str, Any], owner: str | int = "oneadmin") -> int:
        """Register a service template exactly as ``POST /service_template`` would (validated,
        ``registration_time`` added). Raises ValueError with OneFlow's message when invalid."""
        from . import flow_schema as fs
        from .state import DOC_SERVICE_TEMPLATE, now

        template = json.loads(json.dumps(body))
        try:
            fs.validate_template(template, self.rt.config.version)
        except fs.ParseException as exc:
            raise ValueError(str(exc)) from None
        template["registration_time"] = now()
        with self.rt.locked():
            user = self._user(owner)
            return self.rt.cloud.document_allocate(
                user, str(template["name"]), DOC_SERVICE_TEMPLATE, template
            ).id

    def instantiate_service(
        self,
        template_id: int,
        merge_template: dict[str, Any] | None = None,
        *,
        owner: str | int = "oneadmin",
        wait_running: bool = False,
    ) -> int:
        """``POST /service_template/<id>/action`` (instantiate) without HTTP.

        ``wait_running=True`` fast-forwards the deployment (VMs boot at once, no hooks delay it)
        so that the service is RUNNING on return — the quick way to build a 500-VM service.
        """
        with self.rt.locked():
            user = self._user(owner)
            resp = self.oneflow._instantiate(
                user,
                str(template_id),
                {"merge_template": json.loads(json.dumps(merge_template or {}))},
            )
            if resp.status != 201:
                raise ValueError(f"instantiate failed ({resp.status}): {resp.payload().decode()}")
            service_id = int(json.loads(resp.payload())["DOCUMENT"]["ID"])
            if wait_running:
                self._fast_forward(service_id)
            return service_id

    def _fast_forward(self, service_id: int, *, limit: int = 1000) -> None:
        """Drive a service through its waits without waiting (lock held)."""
        engine = self.engine
        for _ in range(limit):
            waits = [w for w in engine.waits if w.service_id == service_id]
            if not waits:
                return
            for w in waits:
                w.due = 0.0
                for vm_id in w.nodes:
                    vm = self.store.vms.get(vm_id)
                    while vm is not None and vm.transitions:
                        _, state, lcm = vm.transitions.pop(0)
                        self.rt.cloud._enter(vm, state, lcm)
            engine.tick()

    def add_large_pool(
        self,
        total: int = 5000,
        service_vms: int = 500,
        *,
        name_prefix: str = "pool-",
        service_name: str = "flower-large",
    ) -> dict[str, Any]:
        """A pool of ``total`` RUNNING VMs of which ``service_vms`` belong to one OneFlow service
        (1 ``superlink`` + ``service_vms - 1`` ``supernode``); returns the ids."""
        tmpl_id = self.add_service_template(
            {
                "name": f"{service_name}-template",
                "deployment": "straight",
                "roles": [
                    {"name": "superlink", "type": "vm", "template_id": 0, "cardinality": 1},
                    {
                        "name": "supernode",
                        "type": "vm",
                        "template_id": 0,
                        "cardinality": service_vms - 1,
                        "parents": ["superlink"],
                    },
                ],
            }
            if self.rt.config.version == "7.0"
            else {
                "name": f"{service_name}-template",
                "deployment": "straight",
                "roles": [
                    {"name": "superlink", "vm_template": 0, "cardinality": 1},
                    {
                        "name": "supernode",
                        "vm_template": 0,
                        "cardinality": service_vms - 1,
                        "parents": ["superlink"],
                    },
                ],
            }
        )
        plain = self.add_vm_pool(total - service_vms, name_prefix=name_prefix)
        service_id = self.instantiate_service(tmpl_id, {"name": service_name}, wait_running=True)
        return {"service_template_id": tmpl_id, "service_id": service_id, "plain_vm_ids": plain}

    # ------------------------------------------------------------------- inspection
    def vm(self, vm_id: int) -> Vm:
        """The live VM object (read it; change it through the methods below)."""
        return self.store.vms[vm_id]

    def vm_token(self, vm_id: int) -> str | None:
        """The OneGate token of a VM (contents of ``token.txt``)."""
        with self.rt.locked():
            return self.rt.cloud.onegate_token(self.store.vms[vm_id])

    def vm_context_env(self, vm_id: int) -> dict[str, str]:
        """What one-context exports in ``/run/one-context/one_env`` for the OneGate client."""
        with self.rt.locked():
            vm = self.store.vms[vm_id]
            ctx = ts.first(vm.template, "CONTEXT")
            ctx = ctx if isinstance(ctx, dict) else {}
            return {
                "ONEGATE_ENDPOINT": ctx.get("ONEGATE_ENDPOINT", ""),
                "VMID": str(vm.id),
                "TOKENTXT": self.rt.cloud.onegate_token(vm) or "",
            }

    def service(self, service_id: int) -> dict[str, Any] | None:
        """A copy of the service body (None once deleted)."""
        with self.rt.locked():
            doc = self.store.documents.get(service_id)
            return json.loads(json.dumps(doc.body)) if doc is not None else None

    def service_state(self, service_id: int) -> str | None:
        body = self.service(service_id)
        return None if body is None else SERVICE_STATES[body["state"]]

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached")
            time.sleep(interval)

    def wait_service_state(self, service_id: int, state: str | None, timeout: float = 10.0) -> None:
        """Wait until the service is in ``state`` (``None``: until it is gone)."""
        self.wait_for(lambda: self.service_state(service_id) == state, timeout)

    # -------------------------------------------------------------------------- steering
    def update_vm_user_template(
        self, vm_id: int, attrs: dict[str, Any], merge: bool = True
    ) -> None:
        """Like ``one.vm.update`` (merge) / replace, without authentication."""
        with self.rt.locked():
            vm = self.store.vms[vm_id]
            new = {
                k.upper(): (v if isinstance(v, (dict, list)) else str(v)) for k, v in attrs.items()
            }
            if merge:
                ts.merge(vm.user_template, new)
            else:
                vm.user_template = new
            vm.changed()

    def set_vm_ready(self, vm_id: int) -> None:
        """What ``onegate vm update --data READY=YES`` does at the end of the guest boot."""
        self.update_vm_user_template(vm_id, {"READY": "YES"})

    def boot_vm(self, vm_id: int) -> None:
        with self.rt.locked():
            self.rt.cloud.boot_vm(self.store.vms[vm_id])

    def set_vm_state(self, vm_id: int, state: int | str, lcm_state: int | str = 0) -> None:
        """Force a VM state, e.g. ``("POWEROFF")`` or ``("ACTIVE", "BOOT_FAILURE")``."""
        st = VM_STATE_NAMES.index(state) if isinstance(state, str) else state
        lcm = LCM[lcm_state] if isinstance(lcm_state, str) else lcm_state
        with self.rt.locked():
            vm = self.store.vms[vm_id]
            vm.transitions.clear()
            self.rt.cloud._enter(vm, st, lcm)

    def set_vm_ip(self, vm_id: int, ip: str, nic_id: int = 0) -> None:
        """Change the address of a NIC (e.g. to the IP of the container that backs the VM)."""
        from .state import mac_for

        with self.rt.locked():
            vm = self.store.vms[vm_id]
            nic = vm.nics()[nic_id]
            nic["IP"], nic["MAC"] = ip, mac_for(ip)
            ctx = ts.first(vm.template, "CONTEXT")
            if isinstance(ctx, dict) and f"ETH{nic_id}_IP" in ctx:
                ctx[f"ETH{nic_id}_IP"], ctx[f"ETH{nic_id}_MAC"] = ip, mac_for(ip)
            vm.changed()

    # -------------------------------------------------------------------------- options
    @property
    def options(self) -> dict[str, object]:
        """``rack3_form_body_bug`` (default False): see :class:`~.runtime.Runtime`."""
        return self.rt.options

    def set_onegate_permission(self, resource: str, action: str, allowed: bool) -> None:
        self.onegate.permissions.setdefault(resource, {})[action] = allowed

    def add_fault(
        self, api: str, route: str, kind: str = "502", times: int = 1, after: bool = True
    ) -> Fault:
        """Answer the next ``times`` requests of ``route`` (as the counters name it) on ``api``
        with ``kind`` (``502``/``503``/``504``, or ``drop``: close the connection), after
        handling them (``after=False``: without handling them). See :mod:`.faults`."""
        return self.rt.faults.add(Fault(api, route, kind, times, after))

    def clear_faults(self) -> None:
        self.rt.faults.clear()

    # ------------------------------------------------------------------------- counters
    def counters(self) -> dict[str, dict[str, int]]:
        """Requests received per API and per XML-RPC method / REST route."""
        return self.rt.counters.snapshot()

    def reset_counters(self) -> None:
        self.rt.counters.reset()

    # ---------------------------------------------------------------------------- state
    def save_state(self, path: str | os.PathLike[str]) -> None:
        with self.rt.locked():
            Path(path).write_text(self.store.to_json())

    def load_state(self, path: str | os.PathLike[str]) -> None:
        data = json.loads(Path(path).read_text())
        with self.rt.locked():
            self.store.load(data)
            self.rt.config.version = self.store.version
            for doc in self.store.documents.values():  # OneFlow's catch_up
                body = doc.body if isinstance(doc.body, dict) else {}
                if doc.type == 100 and SERVICE_STATES[body.get("state", 0)] in TRANSIENT:
                    owner = self.store.users.get(doc.uid)
                    if owner is not None:
                        try:
                            self.engine.recover_action(owner, doc.id)
                        except Exception:
                            log.exception("could not recover service %s", doc.id)

    # -------------------------------------------------------------------- HTTP control
    def _control(self, req: Request) -> Response | None:
        """``/_emulator/...``: debugging and steering endpoints (not counted)."""
        parts = [p for p in req.path.split("/") if p][1:]
        try:
            if parts == ["counters"] and req.method == "GET":
                return json_response(self.counters())
            if parts == ["counters", "reset"] and req.method == "POST":
                self.reset_counters()
                return json_response({})
            if parts == ["faults"]:
                if req.method == "POST":
                    self.rt.faults.add(Fault(**json.loads(req.body or b"{}")))
                elif req.method == "DELETE":
                    self.clear_faults()
                return json_response(self.rt.faults.snapshot())
            if parts == ["state"] and req.method == "GET":
                with self.rt.locked():
                    return Response(200, self.store.to_json(), "application/json")
            if len(parts) == 3 and parts[0] == "vms":
                vm_id = int(parts[1])
                if parts[2] == "context" and req.method == "GET":
                    return json_response(self.vm_context_env(vm_id))
                if parts[2] == "container" and req.method == "GET":
                    info = self.containers.container_info(vm_id) if self.containers else None
                    if info is None:
                        return json_response({"error": "no container"}, 404)
                    return json_response(info)
                if req.method == "POST":
                    payload = json.loads(req.body or b"{}")
                    if parts[2] == "ready":
                        self.set_vm_ready(vm_id)
                    elif parts[2] == "user_template":
                        self.update_vm_user_template(
                            vm_id, payload, merge=payload.pop("_replace", False) is False
                        )
                    elif parts[2] == "boot":
                        self.boot_vm(vm_id)
                    elif parts[2] == "state":
                        self.set_vm_state(vm_id, payload["state"], payload.get("lcm_state", 0))
                    elif parts[2] == "ip":
                        self.set_vm_ip(vm_id, payload["ip"], int(payload.get("nic_id", 0)))
                    else:
                        return json_response({"error": "unknown control"}, 404)
                    return json_response({})
        except (KeyError, ValueError, IndexError, TypeError, OnedError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"error": "unknown control"}, 404)


__all__ = ["Emulator", "Hooks", "Timings"]
