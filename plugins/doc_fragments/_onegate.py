# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
#
# Note that this doc fragment is **PRIVATE** to the collection. It can have breaking changes at
# any time. Do not use this from other collections or standalone plugins/modules!


class ModuleDocFragment:
    # How a module running inside a VM finds OneGate.
    DOCUMENTATION = r"""
options:
  onegate_endpoint:
    description:
      - Base URL of OneGate, for example V(http://169.254.16.9:5030).
      - If not set, E(ONEGATE_ENDPOINT) is used, then C(ONEGATE_ENDPOINT) from O(one_env_file).
    type: str
  onegate_vmid:
    description:
      - ID of the VM the request is made for (the C(X-ONEGATE-VMID) header); the token must belong
        to this VM.
      - If not set, E(VMID) is used, then C(VMID) from O(one_env_file).
    type: int
  onegate_token:
    description:
      - The OneGate token (the C(X-ONEGATE-TOKEN) header), that is the contents of C(token.txt).
      - "If not set: the file O(onegate_token_file) when given, E(TOKENTXT), C(TOKENTXT) from
        O(one_env_file), then C(/run/one-context/token.txt)."
    type: str
  onegate_token_file:
    description:
      - File holding the OneGate token. When given it must exist, and it is used before the
        environment and one_env.
    type: path
  one_env_file:
    description:
      - The shell environment file one-context writes inside the VM (C(export VAR="value") lines).
        It is parsed as data, never executed.
      - Defaults to C(/run/one-context/one_env), or C(/var/run/one-context/one_env) where only that
        exists.
    type: path
notes:
  - Inside a VM started with C(CONTEXT=[TOKEN="YES", ...]), one-context provides everything OneGate
    needs, so no OneGate option has to be set. C(one_env) and C(token.txt) are readable by root
    only, so run the task with C(become) or as root.
  - Requests are sent to the OneGate endpoint from the host the module runs on, normally the VM
    itself.
"""
