# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
#
# Note that this doc fragment is **PRIVATE** to the collection. It can have breaking changes at
# any time. Do not use this from other collections or standalone plugins/modules!


class ModuleDocFragment:
    # Standard attribute descriptions; modules state their support next to them.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying
      target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in
      C(check_mode)), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation
        indicates no change.
      - This assumes that the system controlled/queried by the module has not changed in a relevant
        way.
"""

    ACTIONGROUP_OPENNEBULA = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/opennebula.flower.opennebula) in C(module_defaults) to set defaults for
      this module.
    support: full
    membership:
      - opennebula.flower.opennebula
"""

    # Modules whose results carry what VMs and users wrote.
    VM_DATA = r"""
options: {}
notes:
  - Names, USER_TEMPLATE values and published keys in the result are written by VMs (any VM of a
    service can write its siblings' USER_TEMPLATE) and by users. ansible-core never templates a
    registered result, so they stay data; do not pass them on to places that template them.
"""

    # Use together with DOCUMENTATION.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    support: full
    details:
      - This action does not modify state.
"""
