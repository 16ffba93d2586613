# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
"""Quote one command-line argument for a systemd unit's ExecStart= line."""

from __future__ import annotations

DOCUMENTATION = r"""
name: systemd_quote
short_description: Quote one argument for a systemd C(ExecStart=) line
version_added: 0.1.0
description:
  - Returns the argument unchanged when systemd would read it back as the same single word,
    otherwise wraps it in double quotes with C(\) and C(") escaped.
  - Always doubles C(%) (systemd specifiers) and C($) (environment variable expansion), so the
    program receives exactly the given text.
positional: _input
options:
  _input:
    description: The argument.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Node config with spaces becomes one argument
  ansible.builtin.debug:
    msg: "{{ 'partition-id=0 num-partitions=2' | opennebula.flower.systemd_quote }}"
  # => "partition-id=0 num-partitions=2" (with the double quotes)
"""

RETURN = r"""
_value:
  description: The quoted argument.
  type: str
"""

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=.,:/@")


def systemd_quote(value: object) -> str:
    text = str(value).replace("%", "%%").replace("$", "$$")
    if text and all(c in _SAFE for c in text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class FilterModule:
    def filters(self) -> dict:
        return {"systemd_quote": systemd_quote}
