# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
"""Parse one-context's environment file (``/run/one-context/one_env``) as data."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.opennebula.flower.plugins.module_utils._onegate import parse_one_env

DOCUMENTATION = r"""
name: one_env
short_description: Parse one-context's C(one_env) file into a dict
version_added: 0.1.0
description:
  - one-context's C(loc-16-gen-env) writes the VM context as shell C(export NAME="value") lines
    into C(/run/one-context/one_env) (among them C(ONEGATE_ENDPOINT), C(VMID) and C(TOKENTXT),
    the OneGate token). This filter parses that text as data, never executing it - quotes and
    backslash escapes are honoured, C($VAR) references left as they are.
  - The file holds the OneGate token; keep tasks that use the result C(no_log).
positional: _input
options:
  _input:
    description: The text of the file (e.g. C(slurp) content, C(b64decode)d).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Read one_env
  ansible.builtin.slurp:
    src: /run/one-context/one_env
  register: __one_env
  no_log: true

- name: The OneGate endpoint of this VM
  ansible.builtin.debug:
    msg: "{{ (__one_env.content | b64decode | opennebula.flower.one_env).ONEGATE_ENDPOINT }}"
"""

RETURN = r"""
_value:
  description: Variable name to value.
  type: dict
"""


def one_env(text):
    if not isinstance(text, str):
        raise AnsibleFilterError(f"one_env expects the file's text, not {type(text).__name__}")
    return parse_one_env(text)


class FilterModule:
    def filters(self) -> dict:
        return {"one_env": one_env}
