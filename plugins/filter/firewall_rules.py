# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
"""Check and normalise the inbound rules of the firewall role."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: firewall_rules
short_description: Check and normalise inbound firewall rules (TCP ports and allowed sources)
version_added: 0.1.0
description:
  - Each rule is a dict with C(name), C(port) (or C(ports), a list), C(cidrs) (the allowed
    sources) and optionally C(variable), the variable the sources come from (named in errors).
  - A source is an IPv4 or IPv6 network (C(10.0.0.0/24), C(fd00::/64)), a single address, or the
    word C(nic_networks), which stands for the networks of the host's NICs (O(networks), see the
    P(opennebula.flower.nic_networks#filter) filter).
  - Host bits are cleared (C(10.0.0.5/24) becomes C(10.0.0.0/24)) and duplicates dropped, so the
    result is stable from run to run. An empty source list allows nobody.
  - An invalid rule is an error that names the variable, the value and what is allowed.
positional: _input
options:
  _input:
    description: The rules.
    type: list
    elements: dict
    required: true
  networks:
    description: What C(nic_networks) stands for.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Fleet API from the VM's networks and one more address
  ansible.builtin.debug:
    msg: >-
      {{ [{'name': 'fleet', 'port': 9092, 'cidrs': ['nic_networks', '192.0.2.7']}]
         | opennebula.flower.firewall_rules(['10.0.0.0/24']) }}
  # => [{"name": "fleet", "ports": [9092], "ipv4": ["10.0.0.0/24", "192.0.2.7/32"], "ipv6": []}]
"""

RETURN = r"""
_value:
  description: The rules as C(name), C(ports), C(ipv4) and C(ipv6) (sorted networks).
  type: list
  elements: dict
"""

NIC_NETWORKS = "nic_networks"
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,23}$")
SOURCES = (
    "a list of IPv4 or IPv6 networks or addresses (10.0.0.0/24, 192.0.2.7, fd00::/64) and "
    "nic_networks (the networks of this host's NICs)"
)


def firewall_rules(rules, networks=()):
    if isinstance(rules, (str, Mapping)) or not isinstance(rules, Sequence):
        raise AnsibleFilterError(f"firewall rules must be a list of dicts, not {rules!r}")
    return [_rule(rule, networks) for rule in rules]


def _rule(rule, networks):
    if not isinstance(rule, Mapping) or not _NAME_RE.match(str(rule.get("name", ""))):
        raise AnsibleFilterError(
            f"firewall_services: {rule!r}; allowed: dicts with a name (letters, digits and _), "
            "a port and cidrs"
        )
    where = rule.get("variable") or f"firewall_services ({rule['name']})"
    ports = rule["ports"] if "ports" in rule else [rule.get("port")]
    if isinstance(ports, (str, Mapping)) or not isinstance(ports, Sequence) or not ports:
        ports = [ports]
    if not all(_port(p) for p in ports):
        raise AnsibleFilterError(
            f"{where}: port {rule.get('ports', rule.get('port'))!r} of {rule['name']}; "
            "allowed: TCP ports 1-65535"
        )
    cidrs = rule.get("cidrs")
    if isinstance(cidrs, (str, Mapping)) or not isinstance(cidrs, Sequence):
        raise AnsibleFilterError(f"{where}={cidrs!r}: not a list; allowed: {SOURCES}")
    found = {4: set(), 6: set()}
    for item in cidrs:
        for value in networks if str(item).strip() == NIC_NETWORKS else [item]:
            try:
                network = ipaddress.ip_network(str(value).strip(), strict=False)
            except ValueError:
                raise AnsibleFilterError(
                    f"{where}: {value!r} is not a network or address; allowed: {SOURCES}"
                ) from None
            found[network.version].add(network)
    return {
        "name": str(rule["name"]),
        "ports": sorted({int(p) for p in ports}),
        "ipv4": [str(n) for n in sorted(found[4])],
        "ipv6": [str(n) for n in sorted(found[6])],
    }


def _port(value):
    text = str(value).strip()
    return not isinstance(value, bool) and text.isdigit() and 1 <= int(text) <= 65535


class FilterModule:
    def filters(self) -> dict:
        return {"firewall_rules": firewall_rules}
