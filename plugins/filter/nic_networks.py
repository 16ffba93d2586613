# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
"""The networks of a host's NICs, from Ansible's facts."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: nic_networks
short_description: The IPv4 and IPv6 networks of a host's NICs, from its facts
version_added: 0.1.0
description:
  - Reads C(interfaces) and each interface's C(ipv4), C(ipv4_secondaries) and C(ipv6) facts
    (C(setup) with the C(network) subset) and returns the networks in CIDR notation.
  - The loopback interface, link-local IPv6 networks and the interfaces matching O(exclude)
    (container bridges, for example) are left out.
positional: _input
options:
  _input:
    description: The host's facts (C(ansible_facts)).
    type: dict
    required: true
  exclude:
    description: Interface names to leave out; a trailing C(*) matches any suffix (C(br-*)).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Networks of the VM's NICs
  ansible.builtin.debug:
    msg: "{{ ansible_facts | opennebula.flower.nic_networks(['docker0', 'br-*', 'veth*']) }}"
  # => ["10.0.0.0/24", "fd00:0:0:1::/64"]
"""

RETURN = r"""
_value:
  description: Networks, IPv4 first, each list sorted.
  type: list
  elements: str
"""


def nic_networks(facts, exclude=()):
    """The IPv4 and IPv6 networks (link-local left out) of the NICs in Ansible's facts."""
    if not isinstance(facts, Mapping):
        raise AnsibleFilterError("nic_networks needs the host's facts (ansible_facts)")
    patterns = [str(p) for p in exclude]
    networks = []
    for iface in facts.get("interfaces") or []:
        if iface == "lo" or any(_matches(iface, p) for p in patterns):
            continue
        data = facts.get(iface.replace("-", "_").replace(".", "_")) or facts.get(iface) or {}
        for v4 in [data.get("ipv4"), *(data.get("ipv4_secondaries") or [])]:
            if isinstance(v4, Mapping) and v4.get("address") and v4.get("netmask"):
                networks.append(f"{v4['address']}/{v4['netmask']}")
        for v6 in data.get("ipv6") or []:
            if isinstance(v6, Mapping) and v6.get("address") and v6.get("scope") != "link":
                networks.append(f"{v6['address']}/{v6.get('prefix', 128)}")
    normal = {str(ipaddress.ip_network(n, strict=False)) for n in networks}
    return sorted(normal, key=lambda n: (ipaddress.ip_network(n).version, n))


def _matches(iface, pattern):
    """nftables-style interface match: a trailing * matches any suffix."""
    if pattern.endswith("*"):
        return iface.startswith(pattern[:-1])
    return iface == pattern


class FilterModule:
    def filters(self) -> dict:
        return {"nic_networks": nic_networks}
