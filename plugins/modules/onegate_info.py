#!/usr/bin/python
# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: onegate_info
short_description: Read VMs and the service through OneGate, optionally waiting for keys
version_added: 0.1.0
description:
  - Reads the VM the task runs in (C(GET /vm)), another VM of the same OneFlow service (O(vm_id),
    C(GET /vms/:id)) and, on request, the service (C(GET /service), with O(extended) the full VMs).
  - Can wait until attributes appear in a USER_TEMPLATE or have given values, for example until the
    SuperLink has published C(FL_READY=YES), polling with a fixed interval or an exponential backoff
    and giving up after O(wait_timeout) seconds.
  - Connection errors and 5xx answers while waiting do not end the wait (the edge-node case, OneGate
    unreachable for a while). Other errors (401, 403, 400) fail at once.
author:
  - opennebula.flower contributors (@opennebula)
extends_documentation_fragment:
  - opennebula.flower._onegate
  - opennebula.flower._opennebula
  - opennebula.flower._attributes
  - opennebula.flower._attributes.actiongroup_opennebula
  - opennebula.flower._attributes.vm_data
  - opennebula.flower._attributes.info_module
options:
  vm_id:
    description:
      - Read this VM instead of the VM the task runs in (OneGate allows VMs of the same service or
        virtual router).
      - O(wait_for) then applies to this VM (unless O(role) is set).
    type: int
  service:
    description:
      - Also return the service the VM belongs to (RV(service)).
    type: bool
    default: false
  extended:
    description:
      - Read the service with C(extended=true), which returns every VM of the service with its NICs
        and USER_TEMPLATE (one request). Implies O(service).
    type: bool
    default: false
  role:
    description:
      - Name of a service role. O(wait_for) then applies to the VMs of this role (read with one
        extended C(GET /service) per poll), and RV(role_vms) returns them.
      - Use it to wait for the SuperLink from a SuperNode without knowing the SuperLink's VM id.
    type: str
  role_match:
    description:
      - With O(role), whether V(all) VMs of the role or V(any) one of them must satisfy O(wait_for).
        A role without VMs never satisfies it.
    type: str
    choices: [all, any]
    default: all
  wait_for:
    description:
      - Wait until the USER_TEMPLATE satisfies this. A dict maps names to expected values (a null
        value means "present and not empty"); a list names attributes that must be present and not
        empty.
      - Values are compared as OpenNebula strings, so an unquoted YAML C(YES) means the string
        C(YES).
      - Not set (default) means no waiting.
    type: raw
  wait_timeout:
    description:
      - Seconds to wait for O(wait_for) before failing.
      - V(-1) waits without limit (an edge node that must outlast any outage of the SuperLink).
    type: int
    default: 300
  backoff:
    description:
      - Delay between polls while waiting.
    type: dict
    suboptions:
      policy:
        description:
          - V(fixed) waits O(backoff.interval) seconds between polls; V(exponential) waits
            O(backoff.initial), then multiplies by O(backoff.factor) up to O(backoff.cap).
          - The edge SuperNodes of the Flower appliances use V(exponential) with 10, 2 and 300.
        type: str
        choices: [fixed, exponential]
        default: fixed
      interval:
        description: Seconds between polls with V(fixed).
        type: float
        default: 5
      initial:
        description: First delay with V(exponential).
        type: float
        default: 10
      factor:
        description: Growth factor with V(exponential).
        type: float
        default: 2
      cap:
        description: Longest delay with V(exponential).
        type: float
        default: 300
  published_prefix:
    description:
      - Attributes whose names start with this prefix are returned in C(published) of each VM.
    type: str
    default: FL_
seealso:
  - module: opennebula.flower.onegate
  - module: opennebula.flower.oneflow_service_info
"""

EXAMPLES = r"""
- name: Read this VM
  opennebula.flower.onegate_info:
  register: me
  become: true

- name: Wait for the SuperLink to publish its endpoint (edge node backoff)
  opennebula.flower.onegate_info:
    role: superlink
    wait_for:
      FL_READY: "YES"
      FL_ENDPOINT:
    wait_timeout: 1800
    backoff:
      policy: exponential
      initial: 10
      factor: 2
      cap: 300
  register: superlink
  become: true

- name: Use what it published
  ansible.builtin.debug:
    msg: "SuperLink at {{ superlink.role_vms[0].published.FL_ENDPOINT }}"

- name: Read the whole service with every VM's addresses
  opennebula.flower.onegate_info:
    extended: true
  register: svc
  become: true

- name: Wait until this VM's own READY flag is set by one-context
  opennebula.flower.onegate_info:
    wait_for: [READY]
    wait_timeout: 120
  become: true
"""

RETURN = r"""
vm:
  description: The VM read (this VM, or O(vm_id)).
  returned: always
  type: dict
  contains:
    id:
      description: VM ID.
      type: int
      sample: 2
    name:
      description: VM name.
      type: str
      sample: supernode_0_(service_1)
    state:
      description: VM state name.
      type: str
      sample: ACTIVE
    state_id:
      description: VM state number.
      type: int
    lcm_state:
      description: LCM state name.
      type: str
      sample: RUNNING
    lcm_state_id:
      description: LCM state number.
      type: int
    ready:
      description: Whether C(READY=YES) is set.
      type: bool
    ips:
      description: IPv4 then IPv6 addresses of all NICs and NIC aliases.
      type: list
      elements: str
    ipv4:
      description: IPv4 addresses.
      type: list
      elements: str
    ipv6:
      description: IPv6 addresses (global, ULA, site).
      type: list
      elements: str
    nics:
      description: NIC details.
      type: list
      elements: dict
    published:
      description: USER_TEMPLATE attributes starting with O(published_prefix).
      type: dict
      sample: {FL_READY: "YES"}
    user_template:
      description: The whole USER_TEMPLATE.
      type: dict
service:
  description:
    - The service, when O(service), O(extended) or O(role) is set. Without O(extended) the VMs carry
      only C(id) and C(name) (OneFlow keeps nothing else per node).
  returned: when requested
  type: dict
  contains:
    id:
      description: Service ID.
      type: int
    name:
      description: Service name.
      type: str
    state:
      description: Service state name (C(RUNNING), C(COOLDOWN)...).
      type: str
    state_id:
      description: Service state number.
      type: int
    roles:
      description: Roles by name, each with C(cardinality), C(state), C(state_id), C(vm_ids) and
        C(vms) (VMs as in RV(vm)).
      type: dict
role_vms:
  description: The VMs of O(role), as in RV(vm).
  returned: when O(role) is set
  type: list
  elements: dict
wait:
  description: How the wait went.
  returned: when O(wait_for) is set
  type: dict
  contains:
    attempts:
      description: Number of polls.
      type: int
    elapsed:
      description: Seconds spent.
      type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.opennebula.flower.plugins.module_utils._one_common import (
    Backoff,
    WaitTimeout,
    backoff_argument_spec,
    connection_argument_spec,
    normalize_expectations,
    unmet_expectations,
    vm_summary,
    wait_until,
)
from ansible_collections.opennebula.flower.plugins.module_utils._one_http import (
    OpenNebulaError,
    OpenNebulaHTTPError,
    error_details,
)
from ansible_collections.opennebula.flower.plugins.module_utils._oneflow import (
    onegate_service_summary,
)
from ansible_collections.opennebula.flower.plugins.module_utils._onegate import (
    OneGateClient,
    onegate_argument_spec,
    onegate_settings,
)


def evaluate(targets, expectations, match):
    """(done, report) for VM summaries against expectations."""
    report = {}
    for vm in targets:
        unmet = unmet_expectations(vm["user_template"], expectations)
        if unmet:
            report[vm["name"] or vm["id"]] = unmet
    satisfied = len(targets) - len(report)
    if not targets:
        return False, {"problem": "no VM to check"}
    done = satisfied == len(targets) if match == "all" else satisfied > 0
    return done, report


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(onegate_argument_spec())
    argument_spec.update(
        vm_id={"type": "int"},
        service={"type": "bool", "default": False},
        extended={"type": "bool", "default": False},
        role={"type": "str"},
        role_match={"type": "str", "choices": ["all", "any"], "default": "all"},
        wait_for={"type": "raw"},
        wait_timeout={"type": "int", "default": 300},
        backoff=backoff_argument_spec(),
        published_prefix={"type": "str", "default": "FL_"},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    prefix = params["published_prefix"]
    role = params["role"]
    result = {"changed": False}
    try:
        expectations = normalize_expectations(params["wait_for"])
        backoff = Backoff.from_params(params["backoff"])
        client = OneGateClient(
            onegate_settings(params),
            validate_certs=params["validate_certs"],
            ca_path=params["ca_path"],
            timeout=params["request_timeout"],
            retries=params["retries"],
        )
        latest = {}

        def fetch():
            if role:
                data = client.get_service(extended=True)
                latest["service"] = data
                summary = onegate_service_summary(data, prefix)
                if role not in summary["roles"]:
                    known = ", ".join(summary["roles"]) or "none"
                    raise OpenNebulaError(f"the service has no role {role!r} (roles: {known})")
                return summary["roles"][role]["vms"]
            data = client.get_vm(params["vm_id"])
            latest["vm"] = data
            return [vm_summary(data, prefix)]

        if expectations:

            def check():
                try:
                    targets = fetch()
                except OpenNebulaHTTPError as exc:
                    if exc.status is None or exc.status >= 500:
                        return False, {"error": str(exc)}
                    raise
                return evaluate(targets, expectations, params["role_match"])

            try:
                _value, attempts, elapsed = wait_until(
                    check, None if params["wait_timeout"] < 0 else params["wait_timeout"], backoff
                )
            except WaitTimeout as exc:
                target = f"the VMs of role {role!r}" if role else "the VM"
                module.fail_json(
                    msg=f"waiting for {target} to have {expectations}: {exc}",
                    unmet=exc.last,
                    wait={"attempts": exc.attempts, "elapsed": round(exc.elapsed, 1)},
                )
            result["wait"] = {"attempts": attempts, "elapsed": round(elapsed, 1)}

        if role and "service" not in latest:
            fetch()
        if "vm" not in latest:
            latest["vm"] = client.get_vm(params["vm_id"])
        result["vm"] = vm_summary(latest["vm"], prefix)
        if params["service"] or params["extended"] or role:
            if "service" not in latest:
                latest["service"] = client.get_service(extended=params["extended"])
            result["service"] = onegate_service_summary(latest["service"], prefix)
        if role:
            result["role_vms"] = result["service"]["roles"][role]["vms"]
        module.exit_json(**result)
    except OpenNebulaError as exc:
        module.fail_json(msg=str(exc), **error_details(exc))


if __name__ == "__main__":
    main()
