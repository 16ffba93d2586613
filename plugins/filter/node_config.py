# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
"""Render a dict as the value of Flower's ``--node-config`` option."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: node_config
short_description: Render a dict as Flower C(--node-config) C(k=v) pairs
version_added: 0.1.0
description:
  - Flower reads C(--node-config) as space-separated C(key=value) pairs whose values are TOML
    (integers, floats, booleans, quoted strings). Keys are sorted so the result is stable.
  - Keys must be TOML bare keys (letters, digits, C(-) and C(_)); anything else is an error that
    names the key.
positional: _input
options:
  _input:
    description: The node config.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Partition of this node
  ansible.builtin.debug:
    msg: >-
      {{ {'partition-id': 0, 'num-partitions': 2, 'site': 'h1'}
         | opennebula.flower.node_config }}
  # => num-partitions=2 partition-id=0 site="h1"
"""

RETURN = r"""
_value:
  description: The C(--node-config) value.
  type: str
"""

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_value(key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    raise AnsibleFilterError(
        f"node_config: value of '{key}' is a {_kind(value)} ({value!r}); "
        "allowed: integer, float, boolean or string"
    )


def _kind(value: object) -> str:
    # Ansible hands over lazy container types; name them as the user wrote them.
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "dict"
    if isinstance(value, Sequence):
        return "list"
    return type(value).__name__


def node_config(config: object) -> str:
    if not isinstance(config, Mapping):
        raise AnsibleFilterError(f"node_config: expected a dict, got {_kind(config)}")
    pairs = []
    for key in sorted(config):
        if not isinstance(key, str) or not _BARE_KEY.match(key):
            raise AnsibleFilterError(
                f"node_config: key {key!r} is not allowed; keys are letters, digits, '-' and '_'"
            )
        pairs.append(f"{key}={_toml_value(key, config[key])}")
    return " ".join(pairs)


class FilterModule:
    def filters(self) -> dict:
        return {"node_config": node_config}
