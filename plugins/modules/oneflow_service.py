#!/usr/bin/python
# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: oneflow_service
short_description: Instantiate, scale, recover and delete OneFlow services, and wait for them
version_added: 0.1.0
description:
  - V(present) makes sure a service with O(name) (or O(service_id)) exists. If none exists (services
    in C(DONE) do not count), it is instantiated from a service template with the given user input
    values (service and role level), network values and role cardinalities.
  - Waits for the service to be C(RUNNING) (through every OpenNebula 6.10/7.0 state, including
    C(DEPLOYING_NETS)), then optionally until every VM has reported C(READY=YES) and until the VMs
    have published application keys such as C(FL_READY=YES) in their USER_TEMPLATE.
  - O(roles) sets role cardinalities of an existing service. Each changed role is scaled with C(POST
    /service/:id/scale) and the module waits through C(SCALING) and C(COOLDOWN) back to C(RUNNING).
    Cardinalities outside a role's C(min_vms)..C(max_vms) fail before anything is sent.
  - A service in C(WARNING) (OneFlow's watchdog saw a VM of a role in C(POWEROFF), C(UNKNOWN) or a
    C(*_FAILURE) state) is handled per O(on_warning). By default it counts as present - it is
    returned at once with a warning naming the VMs that are not running, and nothing is waited for.
    OneFlow neither recovers nor scales a service in C(WARNING); it turns C(RUNNING) again when the
    VMs run, so O(on_warning=resume) (or O(recover=true)) resumes them through oned.
  - V(absent) deletes the service and waits until OneFlow has removed it.
  - Instantiate and scale requests are never repeated blindly. When one gets no answer or a 5xx,
    OneFlow may have done it, so the module waits O(poll_interval) seconds and looks (the service
    by O(name), the role's cardinality). What it finds is taken, with a warning; else a request
    whose answer was lost or a proxy's 502/503/504 is sent again, at most O(retries) times. A lost
    answer never leaves two services with the same name.
  - VM details (IPs of all NICs, state, C(READY), published keys) come from oned, read in one
    XML-RPC call for all VMs (C(one.vmpool.infoset); per id range C(one.vmpool.infoextended) where
    oned refuses it), on success and on failure alike. This needs O(one_url) (or E(ONE_URL)) and
    the Python library C(pyone).
author:
  - opennebula.flower contributors (@opennebula)
extends_documentation_fragment:
  - opennebula.flower._opennebula
  - opennebula.flower._attributes
  - opennebula.flower._attributes.actiongroup_opennebula
  - opennebula.flower._attributes.vm_data
attributes:
  check_mode:
    support: full
    details:
      - Services, templates and VMs are read and the requested values validated (inputs,
        min/max); nothing is instantiated, scaled, recovered, resumed or deleted, and nothing is
        waited for.
  diff_mode:
    support: full
    details:
      - Service name, state and role cardinalities before and after.
  idempotent:
    support: full
    details:
      - With O(name) (or O(service_id)) an existing service is never instantiated again. User inputs
        and networks apply only when a service is created; differing values on an existing service
        give a warning, not a change.
requirements:
  - pyone (only to return VM details, wait for VM attributes or resume VMs; OneFlow itself is
    REST)
options:
  name:
    description:
      - Name of the service; it identifies the service, so it must be unique among services not in
        C(DONE).
      - Required unless O(service_id) is given. A new service gets this name.
    type: str
  service_id:
    description:
      - ID of an existing service. With O(state=present) the service must exist.
    type: int
  template_id:
    description:
      - ID of the service template to instantiate from when the service does not exist.
    type: int
  template_name:
    description:
      - Name of the service template to instantiate from (must be unique).
    type: str
  state:
    description:
      - V(present) or V(absent).
    type: str
    choices: [present, absent]
    default: present
  user_inputs:
    description:
      - Service-level user input values (C(user_inputs_values) in 7.0, C(custom_attrs_values) in
        6.10), used when the service is created.
      - Every input the template declares gets a value, the one given here, else the default in its
        spec (C(M|type|description|params|default)), else an empty string for optional inputs. A
        mandatory input without a value fails before anything is sent. Booleans become C(YES)/C(NO).
      - Values of C(password) inputs are kept out of the task's output and logs (as C(no_log)
        options are). Any VM of the service can read them in its siblings' CONTEXT through
        OneGate, though - never pass a secret as a user input.
    type: dict
    default: {}
    aliases: [custom_attrs]
  role_user_inputs:
    description:
      - Role-level user input values, as a dict of role name to a dict of input values, with the
        same defaults rules.
      - Sent per role by name (7.0) or by position (6.10).
    type: dict
    default: {}
  networks:
    description:
      - Network values, as a dict of network name to a dict with C(id) (or C(reserve_from),
        C(template_id), C(extra)), sent as C(networks_values). Names must be declared in the
        template's C(networks).
    type: dict
    default: {}
  roles:
    description:
      - Wanted cardinality per role, as a dict of role name to number. Used at instantiation, and to
        scale an existing service. Roles not listed keep their cardinality.
      - Each number must be within the role's C(min_vms)..C(max_vms) unless O(force) is set.
    type: dict
    default: {}
  force:
    description:
      - Send OneFlow's C(force) flag when scaling, which ignores C(min_vms)/C(max_vms); the module
        then skips its own range check too.
    type: bool
    default: false
  skip_cooldown:
    description:
      - When a scale leaves the service in C(COOLDOWN), send C(recover), which ends the cooldown at
        once, instead of waiting for the role's C(cooldown) seconds (300 by default).
    type: bool
    default: false
  on_failed:
    description:
      - What to do when the service found is in a C(FAILED_*) state.
      - V(fail) fails with the service's last error messages; V(recover) sends OneFlow's C(recover)
        and waits for C(RUNNING); V(recreate) deletes it (C(recover) with C(delete=true), which
        works in any state), waits until it is gone and instantiates a new one.
    type: str
    choices: [fail, recover, recreate]
    default: fail
  on_warning:
    description:
      - What to do with a service in C(WARNING), found or met while waiting. OneFlow answers
        C(recover) there with HTTP 500 (C(Service cannot be recovered in state WARNING)) and scales
        only a C(RUNNING) service (6.10 and 7.0); the service is C(RUNNING) again once its VMs run.
      - V(warn) - the service counts as present. It is returned at once, with a warning naming
        the VMs that are not running (with their state, when oned is read; else the roles in
        C(WARNING)); a wait for C(RUNNING) ends there. A change of O(roles) fails at once, since
        OneFlow would refuse the scale. While waiting for O(wait_ready)/O(wait_for), a VM that
        cannot report (C(POWEROFF), C(UNKNOWN), a C(*_FAILURE), C(STOPPED), C(SUSPENDED),
        C(UNDEPLOYED), C(DONE)) and has not reported yet fails the wait at once.
      - V(wait) - wait (up to O(wait_timeout)) until OneFlow shows C(RUNNING) again, for example
        while a host comes back and its C(UNKNOWN) VMs run again; then scale.
      - V(resume) - send C(resume) through oned (C(one.vm.action)) to the VMs in C(POWEROFF) or
        C(UNKNOWN), then (with O(wait)) wait until they are C(RUNNING) and so is the service. Needs
        oned access (O(one_url)) and pyone. A VM in a C(*_FAILURE) state is not touched; the task
        fails, naming it and what to do (find the cause, then C(onevm recover --retry), or
        terminate the VM and scale the role back).
      - V(fail) - fail with the VMs that are not running.
    type: str
    choices: [warn, wait, resume, fail]
    default: warn
  recover:
    description:
      - In C(COOLDOWN), send C(recover), which ends the cooldown; in a C(FAILED_*) state, the same
        as O(on_failed=recover). Then wait for C(RUNNING).
      - In C(WARNING), OneFlow refuses C(recover), so this means O(on_warning=resume) (whatever
        O(on_warning) says) - the VMs in C(POWEROFF) or C(UNKNOWN) are resumed through oned.
    type: bool
    default: false
  force_delete:
    description:
      - With O(state=absent), delete with C(recover) + C(delete=true), which OneFlow accepts in any
        state (including C(FAILED_*), where a plain C(DELETE) is refused).
      - Without it, a service in a transient state is first waited for until it can be deleted.
    type: bool
    default: false
  wait:
    description:
      - Wait for C(RUNNING) after instantiating, scaling or recovering, and until the service is
        gone after deleting.
      - When several roles are scaled, the module always waits between them (OneFlow scales only a
        C(RUNNING) service).
      - A service that goes to C(HOLD) (roles with C(on_hold)) ends the wait with an error, since it
        stays there until someone releases it; so do C(FAILED_*) states, with the service's error
        log lines. C(WARNING) is met per O(on_warning).
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds the module may spend waiting in total.
    type: int
    default: 900
  poll_interval:
    description:
      - Seconds between two polls while waiting.
    type: float
    default: 5
  wait_ready:
    description:
      - After C(RUNNING), wait until every VM (of O(wait_for_roles)) has C(READY=YES) in its
        USER_TEMPLATE (what one-context's C(REPORT_READY) publishes). Needs oned access (O(one_url))
        and pyone.
    type: bool
    default: false
  wait_for:
    description:
      - After C(RUNNING), wait until the VMs (of O(wait_for_roles)) have these USER_TEMPLATE
        attributes, given as a dict of name to value (null means "present"), or a list of names, for
        example C(FL_READY) set to C(YES).
      - Needs oned access (O(one_url)) and pyone.
    type: raw
  wait_for_roles:
    description:
      - Roles whose VMs O(wait_ready) and O(wait_for) apply to. Default is every role.
    type: list
    elements: str
  fail_on:
    description:
      - USER_TEMPLATE attributes that end the wait for O(wait_ready)/O(wait_for) as a failure
        when a VM (of O(wait_for_roles)) that has not reported yet sets one of them, for example
        C(FL_ERROR), which the appliances publish when their boot fails. The failure names the VM
        and the value. A VM that reports what is waited for is not failed by a value left from
        an earlier boot.
    type: list
    elements: str
    default: []
  vm_info:
    description:
      - Whether to return VM details (IPs, READY, published keys) read from oned.
      - Not set (default) means "when an oned endpoint is configured and pyone is installed";
        V(true) makes a missing endpoint or pyone an error; V(false) returns no VM details (VMs then
        carry only C(id) and C(name)) unless O(wait_ready)/O(wait_for) read them anyway. oned is
        still read to resume VMs (O(on_warning=resume)).
    type: bool
  published_prefix:
    description:
      - USER_TEMPLATE attributes starting with this prefix are returned in C(published) of each VM.
    type: str
    default: FL_
notes:
  - OneFlow keeps no IPs or USER_TEMPLATE for the nodes of a service, only their IDs and names; that
    is why VM details come from oned.
  - Deleting is asynchronous in OneFlow; the service document disappears at the end (it does not
    stay in C(DONE)).
seealso:
  - module: opennebula.flower.oneflow_service_info
  - module: opennebula.flower.oneflow_template
"""

EXAMPLES = r"""
- name: Deploy a Flower federation and wait until the SuperLink is ready
  opennebula.flower.oneflow_service:
    name: flower-lab-a
    template_name: flower-fl
    user_inputs:
      FL_ROUNDS: 5
      FL_STRATEGY: FedProx
    role_user_inputs:
      supernode:
        FL_NODE_LABEL: lab-a
    roles:
      supernode: 3
    wait_ready: true
    wait_for:
      FL_READY: "YES"
    wait_for_roles: [superlink]
    wait_timeout: 1200
  register: fl

- name: Print the SuperLink's address
  ansible.builtin.debug:
    msg: "{{ fl.service.roles.superlink.vms[0].ips[0] }}"

- name: Scale the SuperNodes to 5 without waiting for the cooldown
  opennebula.flower.oneflow_service:
    name: flower-lab-a
    roles:
      supernode: 5
    skip_cooldown: true

- name: Bring a service in WARNING back (resume its powered-off VMs) and wait for RUNNING
  opennebula.flower.oneflow_service:
    name: flower-lab-a
    on_warning: resume

- name: Credentials once for every module of the collection
  module_defaults:
    group/opennebula.flower.opennebula:
      oneflow_url: https://frontend:2474
      one_url: https://frontend:2633/RPC2
      one_username: "{{ vault_one_user }}"
      one_password: "{{ vault_one_password }}"
      ca_path: /etc/pki/one-ca.pem
  block:
    - name: Bring a failed deployment back
      opennebula.flower.oneflow_service:
        name: flower-lab-a
        template_name: flower-fl
        on_failed: recreate

    - name: Remove the federation
      opennebula.flower.oneflow_service:
        name: flower-lab-a
        state: absent
"""

RETURN = r"""
service:
  description:
    - The service after the task (null when absent, or when it would be created in check mode).
    - Also returned when the task fails after the service was found or created, with the same VM
      details.
  returned: always
  type: dict
  contains:
    id:
      description: Service ID.
      type: int
      sample: 1
    name:
      description: Service name.
      type: str
      sample: flower-lab-a
    state:
      description: Service state name (all 16 OneFlow states are known).
      type: str
      sample: RUNNING
    state_id:
      description: Service state number.
      type: int
      sample: 2
    failed:
      description: Whether the state is one of the C(FAILED_*) states.
      type: bool
    schema:
      description: Schema of the service body (V(6.10) or V(7.0)).
      type: str
    start_time:
      description: Start time (epoch seconds).
      type: int
    user_inputs_values:
      description: The service-level input values it was created with.
      type: dict
    log:
      description: The last 10 entries of the service log (C(timestamp), C(severity), C(message)).
      type: list
      elements: dict
    roles:
      description: Roles by name.
      type: dict
      contains:
        cardinality:
          description: Cardinality.
          type: int
        state:
          description: Role state name.
          type: str
        state_id:
          description: Role state number.
          type: int
        min_vms:
          description: Lowest allowed cardinality (null if unset).
          type: int
        max_vms:
          description: Highest allowed cardinality (null if unset).
          type: int
        vm_ids:
          description: IDs of the role's VMs.
          type: list
          elements: int
        vms:
          description:
            - The role's VMs, each with C(id), C(name), C(state), C(state_id), C(lcm_state),
              C(lcm_state_id), C(ready), C(ips) (IPv4 then IPv6 of all NICs and aliases), C(ipv4),
              C(ipv6), C(nics), C(published) (attributes starting with O(published_prefix)) and
              C(user_template).
            - Without oned access only C(id) and C(name) are known; the other fields are null or
              empty.
          type: list
          elements: dict
  sample:
    id: 1
    name: flower-svc-1
    state: RUNNING
    state_id: 2
    roles:
      superlink:
        cardinality: 1
        state: RUNNING
        state_id: 2
        min_vms: 1
        max_vms: 1
        vm_ids: [1]
        vms:
          - id: 1
            name: superlink_0_(service_1)
            state: ACTIVE
            lcm_state: RUNNING
            ready: true
            ips: [10.0.0.11]
            published: {FL_READY: "YES", FL_ENDPOINT: "10.0.0.11:9092"}
actions:
  description: What the module did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample:
    - scale supernode 2 -> 5
    - recover (skip cooldown)
    - resume VM supernode_1_(service_1) (VM 3, POWEROFF)
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.opennebula.flower.plugins.module_utils._one_auth import oned_configured
from ansible_collections.opennebula.flower.plugins.module_utils._one_common import (
    connection_argument_spec,
)
from ansible_collections.opennebula.flower.plugins.module_utils._one_http import (
    OpenNebulaError,
    error_details,
)
from ansible_collections.opennebula.flower.plugins.module_utils._oned import (
    HAS_PYONE,
    PYONE_IMPORT_ERROR,
)
from ansible_collections.opennebula.flower.plugins.module_utils._oned import (
    client_from_params as oned_client,
)
from ansible_collections.opennebula.flower.plugins.module_utils._oneflow import (
    client_from_params,
)
from ansible_collections.opennebula.flower.plugins.module_utils._oneflow_service import (
    WARNING_POLICIES,
    ServiceFailure,
    ServiceRunner,
)


def oned_for(module, needed, useful=False):
    """The oned client, or None; fail when it is needed but cannot be had. ``useful``: wanted
    even with vm_info=false, when it can be had (resuming VMs of a service in WARNING; the
    runner says what is missing if it comes to that)."""
    params = module.params
    wanted = params["vm_info"]
    if wanted is False and not needed and not useful:
        return None
    configured = oned_configured(params)
    if not configured:
        if needed or wanted:
            why = "wait_ready/wait_for" if needed else "vm_info=true"
            module.fail_json(msg=f"{why} needs oned: set one_url (or $ONE_URL)")
        return None
    if not HAS_PYONE:
        if needed or wanted:
            module.fail_json(msg=missing_required_lib("pyone"), exception=PYONE_IMPORT_ERROR)
        return None
    return oned_client(params)


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        name={"type": "str"},
        service_id={"type": "int"},
        template_id={"type": "int"},
        template_name={"type": "str"},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        user_inputs={"type": "dict", "default": {}, "aliases": ["custom_attrs"]},
        role_user_inputs={"type": "dict", "default": {}},
        networks={"type": "dict", "default": {}},
        roles={"type": "dict", "default": {}},
        force={"type": "bool", "default": False},
        skip_cooldown={"type": "bool", "default": False},
        on_failed={"type": "str", "choices": ["fail", "recover", "recreate"], "default": "fail"},
        on_warning={"type": "str", "choices": list(WARNING_POLICIES), "default": "warn"},
        recover={"type": "bool", "default": False},
        force_delete={"type": "bool", "default": False},
        wait={"type": "bool", "default": True},
        wait_timeout={"type": "int", "default": 900},
        poll_interval={"type": "float", "default": 5},
        wait_ready={"type": "bool", "default": False},
        wait_for={"type": "raw"},
        wait_for_roles={"type": "list", "elements": "str"},
        fail_on={"type": "list", "elements": "str", "default": []},
        vm_info={"type": "bool"},
        published_prefix={"type": "str", "default": "FL_"},
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_one_of=[("name", "service_id")],
        mutually_exclusive=[("template_id", "template_name")],
        supports_check_mode=True,
    )
    params = module.params
    for key in ("role_user_inputs", "networks"):
        for role, value in (params[key] or {}).items():
            if not isinstance(value, dict):
                module.fail_json(msg=f"{key}.{role} must be a dict, not {type(value).__name__}")
    needs_oned = params["state"] == "present" and bool(params["wait_ready"] or params["wait_for"])
    runner = None
    try:
        runner = ServiceRunner(
            client_from_params(params),
            params,
            check_mode=module.check_mode,
            oned=oned_for(
                module,
                needs_oned,
                useful=bool(params["recover"]) or params["on_warning"] == "resume",
            ),
            warn=module.warn,
            secret=module.no_log_values.add,
            details=params["vm_info"] is not False or needs_oned,
        )
        result = runner.run()
    except ServiceFailure as exc:
        module.fail_json(msg=str(exc), **exc.result)
    except OpenNebulaError as exc:
        done = {"changed": runner.changed_so_far, "actions": runner.actions} if runner else {}
        module.fail_json(msg=str(exc), **error_details(exc), **done)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
