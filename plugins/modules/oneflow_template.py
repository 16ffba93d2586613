#!/usr/bin/python
# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: oneflow_template
short_description: Manage OneFlow service templates by name
version_added: 0.1.0
description:
  - Creates, updates or deletes a OneFlow service template identified by its name.
  - The template body can be written in the OpenNebula 6.10 schema (roles with C(vm_template),
    C(vm_template_contents), C(custom_attrs)) or in the 7.0 schema (roles with C(type),
    C(template_id), C(template_contents), C(user_inputs)); it is converted to the schema of the
    server.
  - Nothing is written when the stored template already matches. Both sides are compared normalised
    (same schema, server-managed C(registration_time) ignored, the server's defaults
    (C(deployment=none), C(description=""), role C(cardinality=0)) filled in, numbers given as
    strings treated as numbers).
  - A creation that gets no answer or a 5xx may have been done, so the module looks for the
    template by name a second later. It sends the request again only when it finds none and the
    answer was lost or a proxy's 502/503/504 (at most O(retries) times), so a lost answer never
    leaves two templates with the same name.
author:
  - opennebula.flower contributors (@opennebula)
extends_documentation_fragment:
  - opennebula.flower._opennebula
  - opennebula.flower._attributes
  - opennebula.flower._attributes.actiongroup_opennebula
attributes:
  check_mode:
    support: full
    details:
      - The templates are read; nothing is written.
  diff_mode:
    support: full
    details:
      - The normalised template before and after.
  idempotent:
    support: full
options:
  name:
    description:
      - Name of the service template. It is also written into the body (C(name)).
      - Two templates with this name are an error (the module does not guess which one is meant).
    type: str
    required: true
  template:
    description:
      - The service template body (what C(oneflow-template create) takes as JSON), as a dict.
      - Required with O(state=present). A C(name) inside must equal O(name) or be left out.
    type: dict
  state:
    description:
      - V(present) creates the template or updates it when it differs; V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  schema:
    description:
      - Schema the server speaks. V(auto) reads it off the templates and services the server already
        stores; when it stores none, the body is sent as written (OpenNebula 7.0 also accepts and
        converts 6.10 bodies).
    type: str
    choices: [auto, '6.10', '7.0']
    default: auto
  delete_type:
    description:
      - With O(state=absent), what else OneFlow deletes. V(none) only the service template,
        V(templates) also the VM templates its roles use, V(all) also their images.
    type: str
    choices: [none, templates, all]
    default: none
seealso:
  - module: opennebula.flower.oneflow_service
"""

EXAMPLES = r"""
- name: Service template for a Flower federation (7.0 schema)
  opennebula.flower.oneflow_template:
    name: flower-fl
    template:
      description: Flower superlink + supernodes
      deployment: straight
      ready_status_gate: true
      user_inputs:
        FL_ROUNDS: "O|number|Number of FL rounds| |3"
      roles:
        - name: superlink
          type: vm
          template_id: 0
          cardinality: 1
          min_vms: 1
          max_vms: 1
        - name: supernode
          type: vm
          template_id: 1
          cardinality: 2
          min_vms: 1
          max_vms: 10
          parents: [superlink]
          user_inputs:
            FL_NODE_LABEL: "O|text|Label for supernodes| |edge"
  register: tmpl

- name: The same template written for OpenNebula 6.10 (converted when the server speaks 7.0)
  opennebula.flower.oneflow_template:
    name: flower-fl
    template:
      deployment: straight
      roles:
        - name: superlink
          vm_template: 0
          cardinality: 1
          vm_template_contents: |
            FL_ROLE = "superlink"

- name: Remove the template
  opennebula.flower.oneflow_template:
    name: flower-fl
    state: absent
"""

RETURN = r"""
id:
  description: ID of the service template (null when absent, or created in check mode).
  returned: always
  type: int
  sample: 0
template:
  description: The template body as the server stores it (in check mode, as it would be sent).
  returned: when O(state=present)
  type: dict
schema:
  description: Schema the body was sent in (V(6.10), V(7.0)), or null when the server's is unknown.
  returned: always
  type: str
  sample: "7.0"
differences:
  description: Normalised keys that differed (C(roles[1].max_vms)...), empty when nothing changed.
  returned: always
  type: list
  elements: str
"""

import copy

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.opennebula.flower.plugins.module_utils._one_common import (
    connection_argument_spec,
    to_int,
)
from ansible_collections.opennebula.flower.plugins.module_utils._one_http import (
    OpenNebulaError,
    OpenNebulaHTTPError,
    error_details,
)
from ansible_collections.opennebula.flower.plugins.module_utils._oneflow import (
    SCHEMA_70,
    SCHEMA_610,
    body_schema,
    client_from_params,
    detect_schema,
    document_body,
    named,
    normalize_template,
    send_once,
    template_differences,
    to_schema,
)


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        name={"type": "str", "required": True},
        template={"type": "dict"},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        schema={"type": "str", "choices": ["auto", "6.10", "7.0"], "default": "auto"},
        delete_type={"type": "str", "choices": ["none", "templates", "all"], "default": "none"},
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ("template",))],
        supports_check_mode=True,
    )
    params = module.params
    name = params["name"]
    result = {"changed": False, "id": None, "schema": None, "differences": []}
    try:
        client = client_from_params(params)
        docs = client.list_templates()
        current = named(docs, name, "service templates")

        def create(body):
            # A second POST would make a second template of that name: look before repeating.
            return send_once(
                f"create {name!r}",
                lambda: client.create_template(body),
                lambda: named(client.list_templates(), name, "service templates"),
                module.warn,
                params["retries"],
                wait=1.0,
            )

        if params["state"] == "absent":
            if current is None:
                module.exit_json(**result)
            result.update(changed=True, id=to_int(current.get("ID")))
            if module._diff:
                result["diff"] = {"before": normalize_template(document_body(current)), "after": {}}
            if not module.check_mode:
                delete_type = params["delete_type"]
                client.delete_template(
                    current["ID"], None if delete_type == "none" else delete_type
                )
            module.exit_json(**result)

        desired = copy.deepcopy(params["template"])
        if desired.get("name") not in (None, name):
            module.fail_json(
                msg=f"template name {desired.get('name')!r} differs from name {name!r}"
            )
        desired["name"] = name
        schema = None if params["schema"] == "auto" else params["schema"]
        if schema is None:
            schema = detect_schema(docs)
        if schema is None and current is None:
            schema = detect_schema(client.list_services())
        body = to_schema(desired, schema) if schema else desired
        result["schema"] = schema or body_schema(body)

        if current is None:
            result.update(changed=True, template=body)
            if module._diff:
                result["diff"] = {"before": {}, "after": normalize_template(body)}
            if not module.check_mode:
                try:
                    doc = create(body)
                except OpenNebulaHTTPError as exc:
                    if not _speaks_610(exc, schema, body):
                        raise
                    # The server stores nothing yet, so its schema was unknown; only 6.10
                    # asks for vm_template: send the body converted.
                    body = to_schema(desired, SCHEMA_610)
                    result["schema"] = SCHEMA_610
                    doc = create(body)
                result.update(id=to_int(doc.get("ID")), template=document_body(doc))
            module.exit_json(**result)

        result["id"] = to_int(current.get("ID"))
        stored = document_body(current)
        compare_schema = schema or body_schema(stored)
        differences = template_differences(stored, body, compare_schema)
        result["differences"] = differences
        result["template"] = stored
        if not differences:
            module.exit_json(**result)
        result["changed"] = True
        if module._diff:
            result["diff"] = {
                "before": normalize_template(stored, compare_schema),
                "after": normalize_template(body, compare_schema),
            }
        if module.check_mode:
            result["template"] = body
            module.exit_json(**result)
        doc = client.update_template(current["ID"], body)
        result["template"] = document_body(doc)
        module.exit_json(**result)
    except OpenNebulaError as exc:
        module.fail_json(msg=str(exc), **error_details(exc), **_partial(result))


def _speaks_610(exc, schema, body):
    """A 400 about a missing ``vm_template`` for a 7.0 body means the server validates 6.10."""
    return (
        schema is None
        and exc.status == 400
        and body_schema(body) == SCHEMA_70
        and "vm_template" in exc.server_text
    )


def _partial(result):
    return {k: v for k, v in result.items() if k in ("id", "schema")}


if __name__ == "__main__":
    main()
