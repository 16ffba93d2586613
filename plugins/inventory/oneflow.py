# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
"""Inventory of the VMs of OneFlow services, grouped by role."""

from __future__ import annotations

DOCUMENTATION = r"""
name: oneflow
short_description: The VMs of one or more OneFlow services, grouped by role
version_added: 0.1.0
description:
  - Lists the VMs of the OneFlow services named in O(services), with a group per role (for a
    Flower federation C(superlink) and C(supernode)) and a group per service.
  - Reads each service from OneFlow (one request per service, or one request for all of them when
    some are given by name) and all their VMs from oned in one C(one.vmpool.infoset) request
    through pyone. The number of requests does not grow with the size of the VM pool or of the
    services. Should oned refuse C(one.vmpool.infoset), the VMs are read with
    C(one.vmpool.infoextended) over their id ranges.
  - Host names are unique and stable (by default C(<role>-<vm id>)); VMs of any state are listed,
    with their state in host variables, so a powered-off member does not silently disappear.
  - The configuration file name must end with C(oneflow.yml) or C(oneflow.yaml).
author:
  - opennebula.flower contributors (@opennebula)
requirements:
  - pyone
extends_documentation_fragment:
  - constructed
  - inventory_cache
  - opennebula.flower._opennebula
options:
  plugin:
    description: Marks this file as a configuration of this plugin.
    type: str
    required: true
    choices: [opennebula.flower.oneflow]
  services:
    description:
      - The OneFlow services whose VMs to list, by id (integer) or name (string).
    type: list
    elements: raw
    required: true
  role_group_prefix:
    description: Prefix of the per-role groups (V(superlink), V(supernode) with the default).
    type: str
    default: ""
  service_group_prefix:
    description: Prefix of the per-service groups, followed by the service id.
    type: str
    default: service_
  hostname_format:
    description:
      - Python format string of the inventory host names. Fields are C(role), C(id) (VM id),
        C(name) (VM name), C(service) (service name) and C(service_id).
      - The result must be unique; the default is unique and does not change when the service is
        scaled.
    type: str
    default: "{role}-{id}"
  address_from:
    description:
      - Where C(ansible_host) comes from. V(first_ip) takes the first address of the VM (see
        O(ip_version)); V(network) the address on the NIC attached to O(network_name);
        V(nic) the address of the NIC named O(nic_name) (C(NIC0), C(NIC1), ...).
    type: str
    choices: [first_ip, network, nic]
    default: first_ip
  network_name:
    description: Virtual network name used when O(address_from=network).
    type: str
  nic_name:
    description: NIC name used when O(address_from=nic), e.g. V(NIC0).
    type: str
  ip_version:
    description: Which address family to prefer for C(ansible_host); the other one is the fallback.
    type: int
    choices: [4, 6]
    default: 4
  published_prefix:
    description:
      - VM USER_TEMPLATE keys starting with this prefix become host variables under their own
        names (the SuperLink's C(FL_ENDPOINT), C(FL_READY), ...).
      - Any VM of a service can write them (OneGate C(PUT /vm), C(PUT /vms/<id>)), so they, like
        every other host variable this plugin sets (names, addresses) and what O(compose),
        O(groups) and O(keyed_groups) make of them, are marked unsafe (Ansible never templates
        them).
    type: str
    default: FL_
"""

EXAMPLES = r"""
# flower.oneflow.yml: the VMs of service "flower", as groups superlink and supernode
plugin: opennebula.flower.oneflow
services: [flower]
address_from: network
network_name: private
keyed_groups:
  - key: one_state
    prefix: state
compose:
  # empty on the hosts that have not published FL_ENDPOINT (omit is not defined here)
  flower_endpoint: FL_ENDPOINT | default('')
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/ansible-inventory
"""

import re

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var
from ansible_collections.opennebula.flower.plugins.module_utils._one_auth import (
    oned_credentials,
)
from ansible_collections.opennebula.flower.plugins.module_utils._one_common import (
    IPV6_FIELDS,
    vm_summary,
)
from ansible_collections.opennebula.flower.plugins.module_utils._one_http import OpenNebulaError
from ansible_collections.opennebula.flower.plugins.module_utils._oned import OnedClient
from ansible_collections.opennebula.flower.plugins.module_utils._oneflow import (
    client_from_params,
    document_body,
    find_by_name,
    service_node_ids,
)

CONNECTION_OPTIONS = (
    "oneflow_url",
    "oneflow_username",
    "oneflow_password",
    "one_url",
    "one_username",
    "one_password",
    "one_auth_file",
    "validate_certs",
    "ca_path",
    "request_timeout",
    "retries",
)
DONE = 5  # a service in DONE is gone for good: names are matched among the others
_UNSAFE_GROUP_CHARS = re.compile(r"[^A-Za-z0-9_]")


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "opennebula.flower.oneflow"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("oneflow.yml", "oneflow.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        hosts = None
        if use_cache:
            try:
                hosts = self._cache[cache_key]
            except KeyError:
                hosts = None
        if hosts is None:
            hosts = self._fetch()
            if self.get_option("cache"):
                self._cache[cache_key] = hosts
        self._populate(hosts)

    # -------------------------------------------------------------------------------- fetching
    def _params(self):
        return {name: self.get_option(name) for name in CONNECTION_OPTIONS}

    def _fetch(self):
        """Host records (plain data, cacheable) of every VM of the selected services."""
        params = self._params()
        try:
            services = self._services(client_from_params(params))
            all_ids = [i for doc in services for ids in service_node_ids(doc).values() for i in ids]
            oned = OnedClient(
                oned_credentials(params),
                validate_certs=params["validate_certs"],
                ca_path=params["ca_path"],
                timeout=params["request_timeout"],
                retries=params["retries"],
            )
            vms = oned.vms(all_ids)
        except OpenNebulaError as exc:
            raise AnsibleParserError(f"{self.NAME}: {exc}") from exc
        prefix = self.get_option("published_prefix")
        hosts = []
        for doc in services:
            service_id, service_name = int(doc["ID"]), doc.get("NAME") or ""
            for role, ids in service_node_ids(doc).items():
                for vm_id in ids:
                    summary = vm_summary(vms.get(vm_id, {"ID": vm_id}), prefix)
                    hosts.append(
                        {
                            "service_id": service_id,
                            "service": service_name,
                            "role": role,
                            "vm": summary,
                        }
                    )
        return hosts

    def _services(self, flow):
        wanted = self.get_option("services") or []
        by_name = [s for s in wanted if not _is_id(s)]
        listing = flow.list_services() if by_name else []
        docs, seen = [], set()
        for item in wanted:
            if _is_id(item):
                doc = flow.get_service(int(item))
            else:
                matches = [
                    d
                    for d in find_by_name(listing, str(item))
                    if document_body(d).get("state") != DONE
                ]
                if len(matches) != 1:
                    found = ", ".join(str(d.get("ID")) for d in matches) or "none"
                    raise AnsibleParserError(
                        f"{self.NAME}: service name '{item}' must match exactly one OneFlow "
                        f"service; matching ids: {found}"
                    )
                doc = matches[0]
            if int(doc["ID"]) not in seen:
                seen.add(int(doc["ID"]))
                docs.append(doc)
        return docs

    # ------------------------------------------------------------------------------ populating
    def _populate(self, hosts):
        strict = self.get_option("strict")
        names = {}
        for record in hosts:
            vm = record["vm"]
            name = wrap_var(self._hostname(record))  # it may hold a service or VM name
            if name in names and names[name] != vm["id"]:
                raise AnsibleParserError(
                    f"{self.NAME}: hostname_format '{self.get_option('hostname_format')}' gives "
                    f"'{name}' to VMs {names[name]} and {vm['id']}; add {{id}} to make it unique"
                )
            names[name] = vm["id"]
            groups = [
                _UNSAFE_GROUP_CHARS.sub("_", group)
                for group in (
                    f"{self.get_option('role_group_prefix')}{record['role']}",
                    f"{self.get_option('service_group_prefix')}{record['service_id']}",
                )
            ]
            if name in groups:
                raise AnsibleParserError(
                    f"{self.NAME}: host name '{name}' (hostname_format "
                    f"'{self.get_option('hostname_format')}') is also a group name"
                )
            self.inventory.add_host(name)
            for group in groups:
                self.inventory.add_child(self.inventory.add_group(group), name)
            # VMs write their USER_TEMPLATE and users name services: all of it is data, never
            # a template (ansible-core 2.17/2.18 would template plain strings).
            variables = wrap_var(self._host_vars(record))
            for key, value in variables.items():
                self.inventory.set_variable(name, key, value)
            self._set_composite_vars(self.get_option("compose"), variables, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), variables, name, strict)
            self._add_host_to_keyed_groups(
                self.get_option("keyed_groups"), variables, name, strict=strict
            )

    def _hostname(self, record):
        vm = record["vm"]
        try:
            return self.get_option("hostname_format").format(
                role=record["role"],
                id=vm["id"],
                name=vm["name"] or vm["id"],
                service=record["service"],
                service_id=record["service_id"],
            )
        except (KeyError, IndexError, ValueError) as exc:
            raise AnsibleParserError(
                f"{self.NAME}: hostname_format '{self.get_option('hostname_format')}' is not "
                f"valid ({exc}); fields: role, id, name, service, service_id"
            ) from exc

    def _host_vars(self, record):
        vm = record["vm"]
        variables = {
            "one_vm_id": vm["id"],
            "one_vm_name": vm["name"],
            "one_service_id": record["service_id"],
            "one_service_name": record["service"],
            "one_role": record["role"],
            "one_state": vm["state"],
            "one_lcm_state": vm["lcm_state"],
            "one_ready": vm["ready"],
            "one_ips": vm["ips"],
        }
        variables.update(vm["published"])
        address = self._address(vm)
        if address:
            variables["ansible_host"] = address
        return variables

    def _address(self, vm):
        how = self.get_option("address_from")
        nics = [n for n in vm["nics"] if not n.get("alias")]
        if how == "network":
            nics = [n for n in nics if n.get("network") == self.get_option("network_name")]
        elif how == "nic":
            nics = [n for n in nics if n.get("name") == self.get_option("nic_name")]
        v4 = [n["ip"] for n in nics if n.get("ip")]
        v6 = [n[f] for n in nics for f in IPV6_FIELDS if n.get(f)]
        ordered = v4 + v6 if self.get_option("ip_version") == 4 else v6 + v4
        return ordered[0] if ordered else None


def _is_id(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.isdigit()
