#!/usr/bin/python
# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
# The work is done by the action plugin plugins/action/flower_context.py; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: flower_context
short_description: Validate the Flower appliance context variables and map them to role variables
version_added: 0.1.0
description:
  - Reads the contextualization variables of a Flower appliance VM (C(ONEAPP_FLOWER_VERSION),
    C(ONEAPP_FL_*)) from C(one_env) on the target and/or from O(variables), converts and checks
    them against the collection's spec C(meta/context_variables.yml), and returns the role
    variables they set, ready for C(ansible.builtin.set_fact) or C(include_role) C(vars).
  - Every problem is reported at once, each naming the variable, the given value (a secret's value
    never, only its length) and what is allowed. Unknown C(ONEAPP_FL_*) names are problems too.
  - Unset or empty variables take their defaults. The list of variables, their types, defaults
    and role variables is in C(docs/context-variables.md).
  - Runs on the controller; only the one_env file is read on the target (with
    M(ansible.builtin.slurp)).
author:
  - opennebula.flower contributors (@opennebula)
extends_documentation_fragment:
  - opennebula.flower._attributes
  - opennebula.flower._attributes.info_module
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options
      can be executed on the controller.
    support: full
options:
  role:
    description:
      - The appliance whose variables are checked; variables of the other appliance are ignored.
    type: str
    required: true
    choices: [superlink, supernode]
  one_env:
    description:
      - The one-context environment file on the target (shell C(export K="v") lines, parsed as
        data, never executed).
      - An empty string reads no file, so only O(variables) count (inventory or AWX use).
      - A file that cannot be read fails the task.
    type: str
    default: /run/one-context/one_env
  variables:
    description:
      - Context variables given directly; they override those of O(one_env).
      - Values may be context text or native values (booleans become C(YES)/C(NO), lists are
        joined with commas, a dict becomes C(key=value) pairs).
    type: dict
    default: {}
  fail_on_error:
    description:
      - Fail the task when a value is invalid. With V(false) the task succeeds and returns
        RV(errors) (and no RV(role_vars)).
    type: bool
    default: true
  reveal_secrets:
    description:
      - Include the role variables of secret context variables (the private key of a standalone
        SuperLink's operator certificate) in RV(role_vars). Without it they are left out and
        named in RV(withheld).
      - Only allowed on a task with C(no_log) set, so the values never reach a log.
    type: bool
    default: false
notes:
  - RV(role_vars) holds the operator's private key when C(ONEAPP_FL_SSL_KEYFILE) is set (RV(values)
    masks it); use C(no_log) on tasks that print or register it in that case.
seealso:
  - module: opennebula.flower.onegate_info
"""

EXAMPLES = r"""
- name: Check the SuperLink context
  opennebula.flower.flower_context:
    role: superlink
  register: flower_ctx

- name: Configure the SuperLink from it
  ansible.builtin.include_role:
    name: opennebula.flower.superlink
  vars:
    superlink_flower_version: "{{ flower_ctx.role_vars.superlink_flower_version }}"
    superlink_tls_enabled: "{{ flower_ctx.role_vars.superlink_tls_enabled }}"

- name: Values from the inventory (AWX), no VM context
  opennebula.flower.flower_context:
    role: supernode
    one_env: ""
    variables:
      ONEAPP_FL_SUPERLINK_ADDRESS: 10.0.0.5:9092
      ONEAPP_FL_TLS_ENABLED: true
      ONEAPP_FL_NODE_CONFIG: {partition-id: 0, num-partitions: 2}
  register: flower_ctx

- name: Collect the errors without failing
  opennebula.flower.flower_context:
    role: superlink
    fail_on_error: false
  register: flower_ctx
"""

RETURN = r"""
values:
  description:
    - Every variable of the role, converted (integers, floats, booleans, lists, a dict for
      C(ONEAPP_FL_NODE_CONFIG)); C(null) where unset without default or invalid.
    - Secrets that are set read C(********).
  returned: always
  type: dict
  sample: {"ONEAPP_FL_NUM_ROUNDS": 3, "ONEAPP_FL_STRATEGY": "FedAvg"}
role_vars:
  description:
    - The role variables set by the values (C(superlink_*), C(supernode_*), C(tls_*)); unset
      values set nothing, so the role defaults apply. Empty when there are errors.
    - Those of secrets only with O(reveal_secrets).
  returned: always
  type: dict
  sample: {"superlink_flower_version": "1.42.0", "superlink_tls_enabled": true}
withheld:
  description: Role variables of secrets that are set; in RV(role_vars) only with O(reveal_secrets).
  returned: always
  type: list
  elements: str
  sample: ["tls_provided_key"]
errors:
  description: Every problem found, one line each (variable, value, what is allowed).
  returned: always
  type: list
  elements: str
  sample: ["ONEAPP_FL_NUM_ROUNDS='three': not an integer; allowed: an integer from 1 to 100000"]
one_env:
  description: The file that was read, C(null) when none was.
  returned: always
  type: str
  sample: /run/one-context/one_env
"""
