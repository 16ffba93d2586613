#!/usr/bin/python
# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: oneflow_service_info
short_description: Read OneFlow services with their roles, VMs, IPs and published keys
version_added: 0.1.0
description:
  - Returns one service (by O(service_id) or O(name)) or all services the user can see, each with
    its roles and, per role, its VMs.
  - VM details (state, IPs of all NICs, C(READY), published C(FL_*) keys) come from oned, read in
    one XML-RPC call for the VMs of all returned services (C(one.vmpool.infoset), or
    C(one.vmpool.infoextended) per id range where oned refuses it). This needs O(one_url) (or
    E(ONE_URL)) and the Python library C(pyone); without them VMs carry only C(id) and C(name).
author:
  - opennebula.flower contributors (@opennebula)
extends_documentation_fragment:
  - opennebula.flower._opennebula
  - opennebula.flower._attributes
  - opennebula.flower._attributes.actiongroup_opennebula
  - opennebula.flower._attributes.vm_data
  - opennebula.flower._attributes.info_module
requirements:
  - pyone (only for VM details)
options:
  service_id:
    description:
      - ID of the service to read. It must exist.
    type: int
  name:
    description:
      - Name of the services to read (all services with that name, in any state).
      - Without O(service_id) and O(name), every service is returned.
    type: str
  vm_info:
    description:
      - Whether to read VM details from oned. Not set (default) means "when an oned endpoint is
        configured and pyone is installed"; V(true) makes their absence an error.
    type: bool
  published_prefix:
    description:
      - USER_TEMPLATE attributes starting with this prefix are returned in C(published) of each VM.
    type: str
    default: FL_
seealso:
  - module: opennebula.flower.oneflow_service
  - module: opennebula.flower.onegate_info
"""

EXAMPLES = r"""
- name: Read one federation
  opennebula.flower.oneflow_service_info:
    name: flower-lab-a
  register: info

- name: SuperNode addresses
  ansible.builtin.debug:
    msg: "{{ info.services[0].roles.supernode.vms | map(attribute='ips') | flatten }}"

- name: Every service, without touching oned
  opennebula.flower.oneflow_service_info:
    vm_info: false
  register: all_services
"""

RETURN = r"""
services:
  description:
    - The services found (empty list when none matches O(name)); each as
      RV(opennebula.flower.oneflow_service#module:service) returns it.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Service ID.
      type: int
    name:
      description: Service name.
      type: str
    state:
      description: Service state name.
      type: str
      sample: RUNNING
    state_id:
      description: Service state number.
      type: int
      sample: 2
    failed:
      description: Whether the state is a C(FAILED_*) state.
      type: bool
    roles:
      description: Roles by name, each with C(cardinality), C(state), C(state_id), C(min_vms),
        C(max_vms), C(vm_ids) and C(vms) (C(id), C(name), C(state), C(lcm_state), C(ready), C(ips),
        C(ipv4), C(ipv6), C(nics), C(published), C(user_template)).
      type: dict
    log:
      description: The last 10 service log entries.
      type: list
      elements: dict
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
    services_info,
)


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        service_id={"type": "int"},
        name={"type": "str"},
        vm_info={"type": "bool"},
        published_prefix={"type": "str", "default": "FL_"},
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("service_id", "name")],
        supports_check_mode=True,
    )
    params = module.params
    try:
        oned = None
        if params["vm_info"] is not False:
            if not oned_configured(params):
                if params["vm_info"]:
                    module.fail_json(msg="vm_info=true needs oned: set one_url (or $ONE_URL)")
            elif not HAS_PYONE:
                if params["vm_info"]:
                    module.fail_json(
                        msg=missing_required_lib("pyone"), exception=PYONE_IMPORT_ERROR
                    )
            else:
                oned = oned_client(params)
        services = services_info(
            client_from_params(params),
            service_id=params["service_id"],
            name=params["name"],
            oned=oned,
            prefix=params["published_prefix"],
        )
    except OpenNebulaError as exc:
        module.fail_json(msg=str(exc), **error_details(exc))
    module.exit_json(changed=False, services=services)


if __name__ == "__main__":
    main()
