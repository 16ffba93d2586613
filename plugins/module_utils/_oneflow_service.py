# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at
# any time. Do not use this from other collections or standalone plugins/modules!
"""What ``oneflow_service`` does, kept apart from AnsibleModule so it can be tested with fakes.

Decisions (documented in the module too):

* A service is identified by ``service_id`` or by ``name``; services in DONE are ignored when
  matching by name (OneFlow 6.10/7.0 normally deletes the document at the end of an undeploy, a
  DONE one is a leftover), so a new one is instantiated next to it.
* A matched service in a FAILED_* state is handled per ``on_failed``: ``fail`` (default, with the
  service's last error log lines), ``recover`` (``recover`` action, then wait for RUNNING) or
  ``recreate`` (forced delete via ``recover`` with ``delete: true``, wait until it is gone,
  instantiate again).
* Scaling goes role by role (OneFlow scales only from RUNNING): ``POST /service/:id/scale`` then
  wait through SCALING and COOLDOWN back to RUNNING. ``skip_cooldown`` sends ``recover`` when the
  service enters COOLDOWN. min_vms/max_vms are checked before anything is sent (unless ``force``).
* Instantiate and scale are not sent twice blindly (``send_once`` of ``_oneflow``): after no
  answer or a 5xx, the service (by name) or the role's cardinality is looked at first.
* WARNING (OneFlow's watchdog saw a VM of a role in POWEROFF, UNKNOWN or a ``*_FAILURE`` state) is
  handled per ``on_warning``. OneFlow (6.10.5, 7.0.2) neither recovers (``recover_action`` has no
  WARNING branch: "Service cannot be recovered in state: WARNING") nor scales (``can_scale?``) a
  service in WARNING; it goes back to RUNNING when the VMs run again. So ``warn`` (default) takes
  the service as it is, with a warning naming the VMs that are not running, and refuses a scale at
  once; ``wait`` waits for RUNNING; ``resume`` (also what ``recover: true`` does there) sends
  ``one.vm.action("resume")`` through oned to the VMs in POWEROFF or UNKNOWN and waits until they
  and the service run (a VM in a ``*_FAILURE`` state is refused with what to do); ``fail`` fails.
  While waiting for the VMs' keys, a VM that cannot report (not running, not on its way) fails the
  wait at once unless the policy waits.
* Failures return the service with the VM details read from oned, as successes do.
* ``state: absent`` sends DELETE and waits until ``GET /service/:id`` answers 404 (the document
  disappears at the end of the undeploy). DELETE is refused by OneFlow in FAILED_* and most
  transient states: the module waits for a deletable state, or with ``force_delete`` uses the
  ``recover`` + ``delete`` action, which deletes in any state.
"""

from __future__ import annotations

import time
from functools import partial

from ansible_collections.opennebula.flower.plugins.module_utils._one_common import (
    SERVICE_FAILED_STATES,
    SERVICE_STATES,
    Backoff,
    WaitTimeout,
    normalize_expectations,
    one_value,
    service_state_name,
    to_int,
    unmet_expectations,
    vm_summary,
    wait_until,
)
from ansible_collections.opennebula.flower.plugins.module_utils._one_http import OpenNebulaError
from ansible_collections.opennebula.flower.plugins.module_utils._oneflow import (
    OneFlowError,
    build_instantiate_merge,
    cardinalities_of,
    check_cardinalities,
    document_body,
    find_by_name,
    named,
    password_values,
    send_once,
    service_errors,
    service_node_ids,
    service_state,
    service_summary,
    to_v7,
)

RUNNING = SERVICE_STATES.index("RUNNING")
COOLDOWN = SERVICE_STATES.index("COOLDOWN")
WARNING = SERVICE_STATES.index("WARNING")
DONE = SERVICE_STATES.index("DONE")
HOLD = SERVICE_STATES.index("HOLD")
UNDEPLOYING_STATES = frozenset((3, 12))
# States in which OneFlow accepts DELETE /service/:id (not transient, not failed, not DONE).
DELETABLE_STATES = frozenset((0, RUNNING, WARNING, HOLD))
WARNING_POLICIES = ("warn", "wait", "resume", "fail")
# VM states (oned) that stay as they are until someone acts: such a VM cannot report anything.
_STOPPED_VM_STATES = frozenset(("STOPPED", "SUSPENDED", "UNDEPLOYED", "DONE", "HOLD"))
WARNING_HINT = (
    "OneFlow neither recovers nor scales a service in WARNING; it is RUNNING again once the VMs "
    "run: set on_warning=resume (or recover=true) to resume them through oned (by hand: onevm "
    "resume <id>), on_warning=wait to wait until they run again, or on_warning=warn to take the "
    "service as it is"
)


class ServiceFailure(OneFlowError):
    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result or {}


def _role_at(doc, role, number):
    for item in document_body(doc).get("roles") or []:
        if item.get("name") == role:
            return (
                to_int(item.get("cardinality")) == number and len(item.get("nodes") or []) == number
            )
    return False


def _state_text(doc):
    state = service_state(doc)
    return f"{service_state_name(state)} ({state})"


def vm_condition(vm):
    """What a VM summary (see ``vm_summary``) says about the VM: ``running`` (ACTIVE/RUNNING),
    ``resumable`` (POWEROFF, or ACTIVE/UNKNOWN: ``resume`` restarts both), ``failed`` (a
    ``*_FAILURE`` state: ``onevm recover`` territory), ``stopped`` (stays so until someone acts),
    ``busy`` (on its way somewhere) or ``unknown`` (oned was not read)."""
    state, lcm = vm.get("state"), vm.get("lcm_state") or ""
    if state is None:
        return "unknown"
    if state == "ACTIVE" and lcm == "RUNNING":
        return "running"
    if state == "POWEROFF" or (state == "ACTIVE" and lcm == "UNKNOWN"):
        return "resumable"
    if state in ("FAILED", "CLONING_FAILURE") or (
        state == "ACTIVE" and (lcm == "FAILURE" or lcm.endswith("_FAILURE"))
    ):
        return "failed"
    if state in _STOPPED_VM_STATES:
        return "stopped"
    return "busy"


def vm_state_text(vm):
    """The VM's state as onevm shows it: the LCM state for ACTIVE VMs."""
    state = vm.get("lcm_state") if vm.get("state") == "ACTIVE" else vm.get("state")
    return state or "state unknown"


def vm_text(vm):
    """``name (VM id, STATE)``."""
    return f"{vm.get('name') or 'VM'} (VM {vm.get('id')}, {vm_state_text(vm)})"


def not_running(summary):
    """[(role, VM summary)] of the VMs of a service summary that are not ACTIVE/RUNNING."""
    return [
        (name, vm)
        for name, role in (summary.get("roles") or {}).items()
        for vm in role.get("vms") or []
        if vm_condition(vm) not in ("running", "unknown")
    ]


def warning_report(summary):
    """The VMs of a WARNING service that are not running (from oned), else its roles in WARNING
    (OneFlow alone does not say which VM it is)."""
    vms = not_running(summary)
    if vms:
        return "VMs not running: " + ", ".join(f"{vm_text(vm)} of role {r}" for r, vm in vms)
    roles = [
        f"{name} (VMs {', '.join(str(i) for i in role.get('vm_ids') or []) or 'none'})"
        for name, role in (summary.get("roles") or {}).items()
        if role.get("state") == "WARNING"
    ]
    known = any(
        vm_condition(vm) != "unknown"
        for r in summary.get("roles", {}).values()
        for vm in r.get("vms") or []
    )
    where = "" if known else " (oned, with one_url, would tell which VMs are not running)"
    return f"roles in WARNING: {', '.join(roles) or 'none'}{where}"


class ServiceRunner:
    def __init__(
        self,
        flow,
        params,
        check_mode=False,
        oned=None,
        sleep=time.sleep,
        clock=time.monotonic,
        warn=None,
        secret=None,
        details=True,
    ):
        """``details``: return VM details read from oned (``oned`` may be given only to resume
        VMs, with vm_info=false)."""
        self.flow = flow
        self.details = details
        self.params = params
        self.check_mode = check_mode
        self.oned = oned
        self.sleep = sleep
        self.clock = clock
        self.warn = warn or (lambda message: None)
        self.secret = secret or (lambda value: None)  # a value never to be shown
        self.actions = []
        self.changed = False
        self.wrote = False  # a write request (instantiate, scale, recover, delete) succeeded
        self.resumed = set()  # ids of the VMs this run sent resume to
        self.deadline = clock() + float(params.get("wait_timeout") or 0)
        self.poll = Backoff("fixed", interval=float(params.get("poll_interval") or 5))

    # ------------------------------------------------------------------------------ helpers
    def remaining(self):
        return max(0.0, self.deadline - self.clock())

    @property
    def changed_so_far(self):
        """``changed`` for a failed run: only what a write request that succeeded did (or, in
        check mode, would do); a refused first request changed nothing."""
        return self.changed and (self.check_mode or self.wrote)

    def write(self, call, *args, **kwargs):
        result = call(*args, **kwargs)
        self.wrote = True
        return result

    def write_once(self, what, send, find):
        """A write that must not be done twice: after an answer that leaves open whether OneFlow
        did it, ``find()`` looks before it is sent again (see :func:`send_once`)."""
        retries = int(self.params.get("retries") or 0)
        result = send_once(what, send, find, self.warn, retries, self.poll.interval, self.sleep)
        self.wrote = True
        return result

    def fail(self, message, doc=None):
        result = {"changed": self.changed_so_far, "actions": self.actions}
        if doc is not None:
            result["service"] = self.summary(doc)
        raise ServiceFailure(message, result)

    def summary(self, doc):
        """``service_summary`` with the VM details from oned, as on success. Reading oned must not
        hide the error being reported, so a failed read only gives a warning."""
        try:
            vms = self.fetch_vms(doc)
        except OpenNebulaError as exc:
            self.warn(f"VM details could not be read from oned: {exc}")
            vms = {}
        return service_summary(doc, vms, self.prefix)

    @property
    def warning_policy(self):
        if self.params.get("recover"):
            return "resume"
        return self.params.get("on_warning") or "warn"

    @property
    def prefix(self):
        return self.params.get("published_prefix") or "FL_"

    def find_service(self):
        service_id = self.params.get("service_id")
        if service_id is not None:
            doc = self.flow.get_service(service_id, missing_ok=True)
            if doc is None and self.params.get("state") == "present":
                raise OneFlowError(
                    f"service {service_id} does not exist (to create a service give a name, "
                    "not an id)"
                )
            return doc
        return named(
            self.flow.list_services(),
            self.params.get("name"),
            "services",
            skip_states=(DONE,),
            hint="; use service_id",
        )

    def view(self, doc):
        """The diff view of a service: name, state and cardinalities."""
        if doc is None:
            return {"state": "absent"}
        return {
            "name": doc.get("NAME"),
            "state": service_state_name(service_state(doc)),
            "roles": cardinalities_of(doc),
        }

    # -------------------------------------------------------------------------------- waits
    def wait_state(
        self,
        service_id,
        what,
        skip_cooldown=False,
        accept=(RUNNING,),
        until=None,
        after_recover=False,
        warning=None,
    ):
        """Poll until the service is in ``accept`` (and ``until(doc)`` holds, when given); fail on
        FAILED_*, undeploy and HOLD; return the last document.

        WARNING (when not in ``accept``) is met per ``warning`` (default: the ``on_warning``
        policy): ``warn`` takes it as the end of the wait (when ``until`` holds), ``fail`` fails
        at once, ``wait`` keeps polling, ``resume`` resumes the VMs that need it and keeps
        polling.

        ``after_recover``: right after a ``recover`` the old FAILED_* state may still be shown, so
        it is tolerated until the service left it once, or for a grace period of 3 polls (15 s at
        least).
        """
        recovered = set()
        grace_until = self.clock() + max(15.0, 3 * self.poll.interval) if after_recover else None
        seen = {"left_failed": False}

        def check():
            doc = self.flow.get_service(service_id, missing_ok=True)
            if doc is None:
                self.fail(f"service {service_id} disappeared while waiting for {what}")
            state = service_state(doc)
            if state in accept and (until is None or until(doc)):
                return True, doc
            if state in SERVICE_FAILED_STATES and grace_until is not None:
                if not seen["left_failed"] and self.clock() < grace_until:
                    return False, doc
            elif state not in SERVICE_FAILED_STATES:
                seen["left_failed"] = True
            if state in SERVICE_FAILED_STATES:
                errors = "; ".join(service_errors(doc)) or "no error in the service log"
                state_text = _state_text(doc)
                self.fail(
                    f"service {service_id} is {state_text} while waiting for {what}: {errors}", doc
                )
            if state in UNDEPLOYING_STATES or state == DONE:
                self.fail(f"service {service_id} is being undeployed ({_state_text(doc)})", doc)
            if state == HOLD:
                self.fail(
                    f"service {service_id} is on HOLD (roles with on_hold); release it before "
                    f"waiting for {what}",
                    doc,
                )
            if state == WARNING:
                policy = warning or self.warning_policy
                if policy == "warn" and (until is None or until(doc)):
                    return True, doc
                if policy in ("warn", "fail"):
                    self.fail(
                        f"service {service_id} is WARNING while waiting for {what}: "
                        f"{warning_report(self.summary(doc))}. {WARNING_HINT}",
                        doc,
                    )
                if policy == "resume":
                    self.resume(doc)
                return False, doc
            if state == COOLDOWN and skip_cooldown and "cooldown" not in recovered:
                recovered.add("cooldown")
                self.write(self.flow.recover, service_id)
                self.actions.append("recover (skip cooldown)")
            return False, doc

        try:
            doc, _attempts, _elapsed = wait_until(
                check,
                self.remaining(),
                self.poll,
                sleep=self.sleep,
                clock=self.clock,
                describe=lambda d: f"service {service_id} is {_state_text(d)}" if d else "",
            )
        except WaitTimeout as exc:
            message = f"waiting for {what}: {exc}"
            if exc.last is not None and service_state(exc.last) == WARNING:
                message += f"; {warning_report(self.summary(exc.last))}"
            self.fail(message, exc.last)
        return doc

    def wait_gone(self, service_id, forced=False):
        """Poll until the service document is gone (404). After a forced delete (recover with
        delete) the old FAILED_* state may still show for a moment, so it is not an error then."""

        def check():
            doc = self.flow.get_service(service_id, missing_ok=True)
            if doc is None:
                return True, None
            state = service_state(doc)
            if state in SERVICE_FAILED_STATES and not forced:
                errors = "; ".join(service_errors(doc)) or "no error in the service log"
                self.fail(
                    f"service {service_id} is {_state_text(doc)} while being deleted: {errors} "
                    "(force_delete=true deletes it in any state)",
                    doc,
                )
            return False, doc

        try:
            wait_until(check, self.remaining(), self.poll, sleep=self.sleep, clock=self.clock)
        except WaitTimeout as exc:
            self.fail(f"waiting for service {service_id} to be deleted: {exc}", exc.last)

    def fetch_vms(self, doc, details=None):
        if self.oned is None or doc is None or not (self.details if details is None else details):
            return {}
        ids = [i for ids in service_node_ids(doc).values() for i in ids]
        return self.oned.vms(ids)

    def wait_vms(self, doc):
        """Wait until the VMs report READY=YES and/or the ``wait_for`` keys."""
        expectations = normalize_expectations(self.params.get("wait_for"))
        if self.params.get("wait_ready"):
            expectations.setdefault("READY", "YES")
        if not expectations:
            return doc
        roles = self.params.get("wait_for_roles") or list(service_node_ids(doc))
        service_id = to_int(doc.get("ID"))
        state = {"doc": doc}

        def check():
            current = self.flow.get_service(service_id)
            state["doc"] = current
            ids = service_node_ids(current)
            unknown = [r for r in roles if r not in ids]
            if unknown:
                self.fail(f"wait_for_roles names unknown roles: {', '.join(unknown)}", current)
            wanted = [i for r in roles for i in ids[r]]
            vms = self.oned.vms(wanted)
            report, stuck, failed = {}, [], []
            for vm_id in wanted:
                if vm_id not in vms:
                    report[vm_id] = "not returned by oned"
                    continue
                summary = vm_summary(vms[vm_id], self.prefix)
                unmet = unmet_expectations(summary["user_template"], expectations)
                if unmet:
                    condition = vm_condition(summary)
                    if condition != "running":
                        unmet = f"{unmet} (the VM is {vm_state_text(summary)})"
                    report[summary["name"] or vm_id] = unmet
                    if condition in ("resumable", "failed", "stopped"):
                        stuck.append(vm_text(summary))
                    errors = {
                        key: summary["user_template"][key]
                        for key in self.params.get("fail_on") or []
                        if summary["user_template"].get(key) not in (None, "")
                    }
                    if errors:
                        failed.append(f"{vm_text(summary)} published {errors}")
            if failed:
                self.fail(
                    f"waiting for the VMs ({expectations}): {'; '.join(failed)}; not there yet: "
                    f"{report}",
                    current,
                )
            if stuck and self.warning_policy in ("warn", "fail"):
                self.fail(
                    f"waiting for the VMs ({expectations}): {', '.join(stuck)} cannot report "
                    f"while not running; not there yet: {report}. Resume the VMs "
                    "(on_warning=resume, or by hand onevm resume <id>) or wait until they run "
                    "again (on_warning=wait)",
                    current,
                )
            return not report, report

        try:
            wait_until(
                check,
                self.remaining(),
                self.poll,
                sleep=self.sleep,
                clock=self.clock,
                describe=lambda r: f"VMs not there yet: {r}",
            )
        except WaitTimeout as exc:
            self.fail(f"waiting for the VMs ({expectations}): {exc}", state["doc"])
        return state["doc"]

    # ------------------------------------------------------------------------------ actions
    def resolve_template(self):
        template_id = self.params.get("template_id")
        if template_id is not None:
            return self.flow.get_template(template_id)
        name = self.params.get("template_name")
        if not name:
            raise OneFlowError("the service does not exist: template_id or template_name is needed")
        template = named(self.flow.list_templates(), name, "service templates")
        if template is None:
            raise OneFlowError(f"no service template is named {name!r}")
        return template

    def instantiate(self):
        template = self.resolve_template()
        body = document_body(template)
        given = (self.params.get("user_inputs"), self.params.get("role_user_inputs"))
        for value in password_values(body, *given):
            self.secret(value)
        merge, _schema = build_instantiate_merge(
            body,
            name=self.params.get("name"),
            user_inputs=self.params.get("user_inputs"),
            role_user_inputs=self.params.get("role_user_inputs"),
            networks=self.params.get("networks"),
            cardinalities=self.params.get("roles"),
            force=self.params.get("force", False),
        )
        self.changed = True
        self.actions.append(f"instantiate template {template.get('ID')}")
        expected = {r.get("name"): to_int(r.get("cardinality")) for r in to_v7(body)["roles"]}
        expected.update({k: to_int(v) for k, v in (self.params.get("roles") or {}).items()})
        after = {"name": self.params.get("name"), "state": "RUNNING", "roles": expected}
        if self.check_mode:
            return None, after
        doc = self.write_once(
            f"instantiate {self.params.get('name')!r}",
            partial(self.flow.instantiate, template["ID"], merge),
            self.find_service,
        )
        service_id = to_int(doc.get("ID"))
        if self.params.get("wait"):
            doc = self.wait_state(service_id, "RUNNING")
        return doc, after

    def handle_failed(self, doc):
        policy = self.params.get("on_failed") or "fail"
        if policy == "fail" and self.params.get("recover"):
            policy = "recover"
        service_id = to_int(doc.get("ID"))
        errors = "; ".join(service_errors(doc)) or "no error in the service log"
        if policy == "fail":
            self.fail(
                f"service {service_id} ({doc.get('NAME')}) is {_state_text(doc)}: {errors}. "
                "Set on_failed=recover or on_failed=recreate to act on it.",
                doc,
            )
        self.changed = True
        if policy == "recover":
            self.actions.append(f"recover service {service_id}")
            if self.check_mode:
                return doc
            self.write(self.flow.recover, service_id)
            return self.wait_state(service_id, "RUNNING after recover", after_recover=True)
        # recreate
        self.actions.append(f"delete failed service {service_id} (recover with delete)")
        if self.check_mode:
            return None
        self.write(self.flow.recover, service_id, delete=True)
        self.wait_gone(service_id, forced=True)
        return None

    def handle_warning(self, doc):
        """A service found in WARNING, per ``on_warning`` (``recover`` means ``resume``)."""
        policy = self.warning_policy
        if policy == "fail":
            self.fail(
                f"service {doc.get('ID')} ({doc.get('NAME')}) is WARNING: "
                f"{warning_report(self.summary(doc))}. {WARNING_HINT}",
                doc,
            )
        if policy == "resume":
            self.resume(doc)
        return doc

    def resume(self, doc):
        """Send ``resume`` through oned to the service's VMs in POWEROFF or UNKNOWN that this run
        has not resumed yet (in check mode: only say so). VMs in a ``*_FAILURE`` state fail it:
        resume does not apply to them."""
        service_id = to_int(doc.get("ID"))
        if self.oned is None:
            self.fail(
                f"service {service_id} is WARNING; on_warning=resume (or recover=true) resumes "
                "its VMs through oned: set one_url (or $ONE_URL) and install pyone",
                doc,
            )
        summary = service_summary(doc, self.fetch_vms(doc, details=True), self.prefix)
        vms = not_running(summary)
        failed = [vm_text(vm) for _role, vm in vms if vm_condition(vm) == "failed"]
        if failed:
            self.fail(
                f"service {service_id} is WARNING and {', '.join(failed)} in a failure state, "
                "which resume does not fix: find the cause in the VM's log (onevm show <id>), "
                "then onevm recover --retry <id>, or terminate the VM (OneFlow lowers the role's "
                "cardinality) and scale the role back",
                doc,
            )
        todo = [
            vm
            for _role, vm in vms
            if vm_condition(vm) == "resumable" and vm["id"] not in self.resumed
        ]
        for vm in todo:
            self.changed = True
            self.actions.append(f"resume VM {vm_text(vm)}")
            if self.check_mode:
                continue
            self.resumed.add(vm["id"])
            try:
                self.oned.vm_action("resume", vm["id"])
            except OpenNebulaError as exc:
                # the answer may be lost after oned took it: look before calling it a failure
                now = self.oned.vms([vm["id"]]).get(vm["id"])
                if now is None or vm_condition(vm_summary(now)) in ("resumable", "failed"):
                    self.fail(f"resuming VM {vm_text(vm)} failed: {exc}", doc)
            self.wrote = True
        return doc

    def resumed_running(self, doc):
        """Whether every VM this run resumed is ACTIVE/RUNNING again (OneFlow's watchdog puts a
        role back in RUNNING as soon as one of its VMs runs, so the service state alone does not
        say it)."""
        if not self.resumed:
            return True
        vms = self.oned.vms(sorted(self.resumed))
        return all(
            vm_id in vms and vm_condition(vm_summary(vms[vm_id])) == "running"
            for vm_id in self.resumed
        )

    def scale(self, doc):
        desired = {k: to_int(v) for k, v in (self.params.get("roles") or {}).items()}
        if not desired:
            return doc
        body_roles = document_body(doc).get("roles") or []
        problems = check_cardinalities(body_roles, desired, force=self.params.get("force", False))
        if problems:
            self.fail("cannot scale: " + "; ".join(problems), doc)
        current = cardinalities_of(doc)
        todo = [(r, n) for r, n in desired.items() if current.get(r) != n]
        if not todo:
            return doc
        service_id = to_int(doc.get("ID"))
        if service_state(doc) == WARNING and self.warning_policy in ("warn", "fail"):
            self.fail(
                f"cannot scale service {service_id}: it is WARNING and OneFlow scales only a "
                f"RUNNING service. {warning_report(self.summary(doc))}. {WARNING_HINT}",
                doc,
            )
        self.changed = True
        for role, number in todo:
            self.actions.append(f"scale {role} {current.get(role)} -> {number}")
        if self.check_mode:
            return doc
        skip = self.params.get("skip_cooldown", False)
        for index, (role, number) in enumerate(todo):
            if service_state(doc) != RUNNING:
                # a scale needs RUNNING: WARNING cannot be taken as it is here
                policy = self.warning_policy
                doc = self.wait_state(
                    service_id,
                    f"RUNNING before scaling {role}",
                    skip,
                    until=self.resumed_running if self.resumed else None,
                    warning="fail" if policy == "warn" else policy,
                )
            self.write_once(
                f"scale {role} to {number}",
                partial(self.flow.scale, service_id, role, number, self.params.get("force", False)),
                partial(self.scaled, service_id, role, number),
            )
            last = index == len(todo) - 1
            if self.params.get("wait") or not last:
                # RUNNING alone could be the state from before OneFlow took the request: also
                # require the role to have its new cardinality and that many nodes.
                doc = self.wait_state(
                    service_id,
                    f"RUNNING after scaling {role} to {number}",
                    skip,
                    until=lambda d, r=role, n=number: _role_at(d, r, n),
                )
        return doc

    def scaled(self, service_id, role, number):
        """The service when OneFlow took a scale of ``role`` to ``number`` (else None)."""
        doc = self.flow.get_service(service_id)
        return doc if cardinalities_of(doc).get(role) == number else None

    # ---------------------------------------------------------------------------- top level
    def present(self):
        doc = self.find_service()
        before = self.view(doc)
        after = None
        if doc is not None and service_state(doc) in SERVICE_FAILED_STATES:
            doc = self.handle_failed(doc)
            if doc is None and self.check_mode:
                after = {"name": self.params.get("name"), "state": "RUNNING (recreated)"}
        elif doc is not None and service_state(doc) == WARNING:
            doc = self.handle_warning(doc)
        elif doc is not None and self.params.get("recover"):
            if service_state(doc) == COOLDOWN:
                service_id = to_int(doc.get("ID"))
                self.changed = True
                self.actions.append(f"recover service {service_id}")
                if not self.check_mode:
                    self.write(self.flow.recover, service_id)
                    doc = self.wait_state(service_id, "RUNNING after recover", after_recover=True)
        if doc is None and after is None:
            doc, after = self.instantiate()
        elif doc is not None:
            self._warn_immutable(doc)
            state = service_state(doc)
            if state in UNDEPLOYING_STATES:
                self.fail(
                    f"service {doc.get('ID')} is being undeployed ({_state_text(doc)}); "
                    "wait until it is gone, then run again",
                    doc,
                )
            doc = self.scale(doc)
            if (
                self.params.get("wait")
                and not self.check_mode
                and (service_state(doc) != RUNNING or self.resumed)
            ):
                doc = self.wait_state(
                    to_int(doc.get("ID")),
                    "RUNNING",
                    self.params.get("skip_cooldown", False),
                    until=self.resumed_running if self.resumed else None,
                )
            after = self.view(doc)
            if self.check_mode:
                after["roles"].update(
                    {k: to_int(v) for k, v in (self.params["roles"] or {}).items()}
                )
                if any(a.startswith(("recover", "resume")) for a in self.actions):
                    after["state"] = "RUNNING"
        if doc is not None and not self.check_mode:
            doc = self.wait_vms(doc)
        return self.finish(doc, before, after)

    def _warn_immutable(self, doc):
        body = document_body(doc)
        stored = body.get("user_inputs_values", body.get("custom_attrs_values")) or {}
        given = self.params.get("user_inputs") or {}
        differing = sorted(
            k for k, v in given.items() if k in stored and str(stored[k]) != one_value(v)
        )
        if differing:
            self.warn(
                f"service {doc.get('ID')} was instantiated with other values for "
                f"{', '.join(differing)}; user inputs apply only when a service is created"
            )

    def absent(self):
        doc = self.find_service()
        before = self.view(doc)
        if doc is None:
            return self.finish(None, before, before)
        service_id = to_int(doc.get("ID"))
        state = service_state(doc)
        if state in UNDEPLOYING_STATES:
            if self.params.get("wait") and not self.check_mode:
                self.wait_gone(service_id)
            return self.finish(None, before, {"state": "absent"})
        self.changed = True
        if self.params.get("force_delete"):
            self.actions.append(f"delete service {service_id} (recover with delete)")
            if not self.check_mode:
                self.write(self.flow.recover, service_id, delete=True)
        else:
            if state in SERVICE_FAILED_STATES:
                self.fail(
                    f"service {service_id} is {_state_text(doc)}; OneFlow refuses to delete it in "
                    "this state. Set force_delete=true.",
                    doc,
                )
            self.actions.append(f"delete service {service_id}")
            if not self.check_mode:
                if state not in DELETABLE_STATES:
                    doc = self.wait_state(
                        service_id,
                        "a state that allows deletion",
                        self.params.get("skip_cooldown", False),
                        accept=DELETABLE_STATES,
                    )
                self.write(self.flow.delete_service, service_id)
        if self.params.get("wait") and not self.check_mode:
            self.wait_gone(service_id, forced=self.params.get("force_delete", False))
        return self.finish(None, before, {"state": "absent"})

    def finish(self, doc, before, after):
        result = {"changed": self.changed, "actions": self.actions, "service": None}
        if doc is not None:
            if not self.check_mode:
                doc = self.flow.get_service(to_int(doc.get("ID")), missing_ok=True) or doc
                after = self.view(doc)  # what is there now, not what was expected
            result["service"] = service_summary(doc, self.fetch_vms(doc), self.prefix)
            if result["service"]["state"] == "WARNING":
                self.warn(
                    f"service {result['service']['id']} ({result['service']['name']}) is WARNING: "
                    f"{warning_report(result['service'])}. {WARNING_HINT}"
                )
        result["diff"] = {"before": before, "after": after if after is not None else before}
        return result

    def run(self):
        if self.params.get("state") == "absent":
            return self.absent()
        return self.present()


def services_info(flow, service_id=None, name=None, oned=None, prefix="FL_"):
    """Summaries of one service (by id or name) or of all services, VMs read in one oned call."""
    if service_id is not None:
        docs = [flow.get_service(service_id)]
    else:
        docs = flow.list_services()
        if name is not None:
            docs = find_by_name(docs, name)
    vms = {}
    if oned is not None:
        ids = [i for doc in docs for ids in service_node_ids(doc).values() for i in ids]
        vms = oned.vms(ids) if ids else {}
    return [service_summary(doc, vms, prefix) for doc in docs]
