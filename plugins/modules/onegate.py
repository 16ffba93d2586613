#!/usr/bin/python
# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: onegate
short_description: Publish or remove attributes in a VM's USER_TEMPLATE through OneGate
version_added: 0.1.0
description:
  - Sets and removes attributes of the USER_TEMPLATE of the VM the task runs in (or, with O(vm_id),
    of another VM of the same OneFlow service) through the OneGate API, the way appliances publish
    C(READY), C(FL_READY), C(FL_ENDPOINT)...
  - Reads the VM first and writes only the attributes whose value differs; removes only attributes
    that exist. All changed attributes go in one C(PUT /vm) request (OneGate's C(type=1) merge);
    each removal is one C(type=2) request.
  - After writing, the VM is read again and the module fails if a value did not land as sent.
author:
  - opennebula.flower contributors (@opennebula)
extends_documentation_fragment:
  - opennebula.flower._onegate
  - opennebula.flower._opennebula
  - opennebula.flower._attributes
  - opennebula.flower._attributes.actiongroup_opennebula
attributes:
  check_mode:
    support: full
    details:
      - The VM is read; nothing is written. C(changed) and the diff show what would be written.
  diff_mode:
    support: full
    details:
      - Before and after values of the affected attributes only.
  idempotent:
    support: full
options:
  attributes:
    description:
      - Attributes to set, as C(NAME) and value. Names are upper-cased (oned stores them so).
      - Booleans become C(YES)/C(NO), so an unquoted YAML C(YES) still publishes C(YES);
        numbers become strings.
      - OneGate quotes values itself and reads C(,), C([), C(]), C(\), C(") and newlines as template
        syntax; values containing them are refused. Publish such data (certificates, JSON)
        base64-encoded.
    type: dict
    default: {}
  remove:
    description:
      - Names of attributes to delete. Names that are not present are ignored.
      - A name cannot be both in O(attributes) and in O(remove).
    type: list
    elements: str
    default: []
  vm_id:
    description:
      - Change this VM instead of the VM the task runs in. OneGate allows it only for VMs of the
        same OneFlow service (or virtual router), and only if its C(vm.update_by_id) permission is
        enabled.
    type: int
  published_prefix:
    description:
      - Attributes whose names start with this prefix are returned in RV(vm.published).
    type: str
    default: FL_
notes:
  - OneGate refuses changes to C(SCHED_REQUIREMENTS), C(SERVICE_ID) and C(ROLE_NAME) (HTTP 403); the
    error is reported as the server gives it.
seealso:
  - module: opennebula.flower.onegate_info
"""

EXAMPLES = r"""
- name: Tell the federation this SuperLink is up
  opennebula.flower.onegate:
    attributes:
      FL_READY: "YES"
      FL_ENDPOINT: "{{ ansible_default_ipv4.address }}:9092"
    remove:
      - FL_ERROR
  become: true

- name: Publish the CA certificate (base64, since PEM contains newlines)
  opennebula.flower.onegate:
    attributes:
      FL_CA_CERT: "{{ lookup('ansible.builtin.file', '/opt/flower/certs/ca.crt') | b64encode }}"
  become: true

- name: Mark another VM of the service (needs vm.update_by_id on OneGate)
  opennebula.flower.onegate:
    vm_id: 12
    attributes:
      FL_NODE_READY: "NO"
  become: true

- name: Talk to a OneGate endpoint explicitly (for example from a test container)
  opennebula.flower.onegate:
    onegate_endpoint: http://127.0.0.1:5030
    onegate_vmid: 2
    onegate_token_file: /tmp/token.txt
    attributes:
      FL_ROUND: 3
"""

RETURN = r"""
changes:
  description: What was (or in check mode would be) written.
  returned: always
  type: dict
  contains:
    set:
      description: Attributes written, with their new values.
      type: dict
      sample: {FL_READY: "YES"}
    remove:
      description: Attributes deleted.
      type: list
      elements: str
      sample: [FL_ERROR]
vm:
  description: The VM after the change (in check mode, as it would be).
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
      sample: 3
    lcm_state:
      description: LCM state name.
      type: str
      sample: RUNNING
    lcm_state_id:
      description: LCM state number.
      type: int
      sample: 3
    ready:
      description: Whether C(READY=YES) is in the USER_TEMPLATE.
      type: bool
    ips:
      description: All IPv4 then IPv6 (global, ULA, site) addresses of the NICs and NIC aliases.
      type: list
      elements: str
      sample: [10.0.0.12]
    ipv4:
      description: IPv4 addresses.
      type: list
      elements: str
    ipv6:
      description: IPv6 addresses (link-local ones only in RV(vm.nics)).
      type: list
      elements: str
    nics:
      description: NICs and NIC aliases as OneGate shows them (C(name), C(network), C(mac), C(ip),
        C(ip6_global)..., C(alias)).
      type: list
      elements: dict
    published:
      description: USER_TEMPLATE attributes whose names start with O(published_prefix).
      type: dict
      sample: {FL_ENDPOINT: "10.0.0.5:9092", FL_READY: "YES"}
    user_template:
      description: The whole USER_TEMPLATE (empty values as empty strings).
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.opennebula.flower.plugins.module_utils._one_common import (
    connection_argument_spec,
    vm_summary,
)
from ansible_collections.opennebula.flower.plugins.module_utils._one_http import (
    OpenNebulaError,
    error_details,
)
from ansible_collections.opennebula.flower.plugins.module_utils._onegate import (
    OneGateClient,
    compute_changes,
    onegate_argument_spec,
    onegate_settings,
)


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(onegate_argument_spec())
    argument_spec.update(
        attributes={"type": "dict", "default": {}},
        remove={"type": "list", "elements": "str", "default": []},
        vm_id={"type": "int"},
        published_prefix={"type": "str", "default": "FL_"},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    prefix = params["published_prefix"]
    try:
        settings = onegate_settings(params)
        client = OneGateClient(
            settings,
            validate_certs=params["validate_certs"],
            ca_path=params["ca_path"],
            timeout=params["request_timeout"],
            retries=params["retries"],
        )
        current = client.get_vm(params["vm_id"])
        user_template = current["VM"].get("USER_TEMPLATE") or {}
        changes = compute_changes(user_template, params["attributes"], params["remove"])
        changed = bool(changes["set"] or changes["remove"])
        result = {
            "changed": changed,
            "changes": {"set": changes["set"], "remove": changes["remove"]},
        }
        if module._diff:
            result["diff"] = {"before": changes["before"], "after": changes["after"]}
        if not changed:
            result["vm"] = vm_summary(current, prefix)
            module.exit_json(**result)
        if module.check_mode:
            predicted = dict(current["VM"])
            template = {str(k).upper(): v for k, v in user_template.items()}
            template.update(changes["set"])
            for key in changes["remove"]:
                template.pop(key, None)
            predicted["USER_TEMPLATE"] = template
            result["vm"] = vm_summary(predicted, prefix)
            module.exit_json(**result)

        client.update_vm(changes["set"], params["vm_id"])
        for key in changes["remove"]:
            client.delete_vm_attribute(key, params["vm_id"])
        after = client.get_vm(params["vm_id"])
        check = compute_changes(
            after["VM"].get("USER_TEMPLATE") or {}, changes["set"], changes["remove"]
        )
        if check["set"] or check["remove"]:
            module.fail_json(
                msg="OneGate accepted the update but the VM does not show it: "
                f"still differing {sorted(check['set'])}, still present {check['remove']}",
                vm=vm_summary(after, prefix),
                **result,
            )
        result["vm"] = vm_summary(after, prefix)
        module.exit_json(**result)
    except OpenNebulaError as exc:
        module.fail_json(msg=str(exc), **error_details(exc))


if __name__ == "__main__":
    main()
