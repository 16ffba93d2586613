"""The firewall role: a published container port reachable from the allowed client only, SSH
from both, anything else from neither; the ruleset is loaded by its own unit at boot."""

import pytest


@pytest.fixture(scope="module")
def target(host):
    """The target's container name, which Docker's DNS resolves on the scenario's network."""
    (name,) = host.ansible.get_variables()["groups"]["target"]
    return name


def connects(host, name, port):
    """A TCP connection from ``host`` to name:port within 3 s (a dropped SYN times out)."""
    return host.run(f"timeout 3 bash -c '</dev/tcp/{name}/{port}'").rc == 0


def test_unit_enabled_and_table_loaded(host):
    if "target" not in host.ansible.get_variables()["group_names"]:
        pytest.skip("the firewall runs on the target")
    assert host.service("flower-firewall").is_enabled
    assert host.service("flower-firewall").is_running  # oneshot, RemainAfterExit
    table = host.check_output("nft list table inet opennebula_flower")
    assert "hook prerouting priority mangle" in table
    assert "tcp dport 8080 ip saddr @web_ipv4 accept" in table


def test_docker_tables_untouched(host):
    if "target" not in host.ansible.get_variables()["group_names"]:
        pytest.skip("the firewall runs on the target")
    assert "DNAT" in host.check_output("iptables -t nat -S DOCKER")


def test_reachability(host, target):
    groups = host.ansible.get_variables()["group_names"]
    if "clients" not in groups:
        pytest.skip("checked from the clients")
    inside = "inside" in groups
    assert connects(host, target, 8080) is inside, "published port 8080"
    assert connects(host, target, 22), "SSH is open to every source by default"
    assert not connects(host, target, 9999), "a port in no rule is closed"
