"""The superlink role: a SuperLink container under systemd, state on disk, 9091 kept inside."""

import json
import re
import time

import pytest


@pytest.fixture(scope="module")
def container(host):
    return json.loads(host.check_output("docker inspect flower-superlink"))[0]


def wait_for_fleet(host, timeout=60):
    probe = (
        "docker exec flower-superlink python3 -c "
        "'import socket; socket.create_connection((\"127.0.0.1\", 9092), 2).close()'"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.run(probe).rc == 0:
            return
        time.sleep(1)
    pytest.fail("the Fleet API did not come back")


def test_service_enabled_and_running(host):
    service = host.service("flower-superlink")
    assert service.is_enabled
    assert service.is_running


def test_runs_as_flower_user(container):
    assert container["Config"]["User"] == "49999:49999"
    assert container["State"]["Running"]


def test_flower_arguments(container):
    args = container["Args"]
    assert "--insecure" not in args  # TLS is on by default
    assert args[args.index("--ssl-certfile") + 1] == "certificates/server.pem"
    assert args[args.index("--ssl-keyfile") + 1] == "certificates/server.key"
    assert args[args.index("--isolation") + 1] == "subprocess"
    assert args[args.index("--database") + 1] == "state/state.db"


def test_environment(host, container):
    env = container["Config"]["Env"]
    assert "FLWR_TELEMETRY_ENABLED=0" in env
    assert "FLWR_LOG_LEVEL=DEBUG" in env
    env_file = host.file("/opt/flower/config/superlink.env")
    assert env_file.mode == 0o640
    assert env_file.user == "root"


def host_ports(container):
    """The VM's published ports (from Flower 1.37 both lead to the container's one port)."""
    bindings = container["HostConfig"]["PortBindings"].values()
    return sorted(int(binding["HostPort"]) for each in bindings for binding in each)


def test_only_fleet_and_control_are_published(host, container):
    assert host_ports(container) == [9092, 9093]
    assert host.socket("tcp://0.0.0.0:9092").is_listening
    assert host.socket("tcp://0.0.0.0:9093").is_listening
    assert not host.socket("tcp://0.0.0.0:9091").is_listening


@pytest.mark.parametrize("sub", ["state", "certs", "config"])
def test_directories_owned_by_flower(host, sub):
    d = host.file(f"/opt/flower/{sub}")
    assert d.is_directory
    assert d.uid == 49999 and d.gid == 49999


def test_state_survives_restart(host):
    db = host.file("/opt/flower/state/state.db")
    assert db.exists and db.uid == 49999
    created = host.check_output("stat -c %W /opt/flower/state/state.db")
    host.run_expect([0], "systemctl restart flower-superlink")
    wait_for_fleet(host)
    assert host.check_output("stat -c %W /opt/flower/state/state.db") == created
    assert host.service("flower-superlink").is_running


# ---------------------------------------------------------------------------- least privilege
@pytest.mark.parametrize("name", ["flower-superlink", "flower-node-registrar"])
def test_containers_have_least_privilege(host, name):
    config = json.loads(host.check_output(f"docker inspect {name}"))[0]
    hc = config["HostConfig"]
    assert config["Config"]["User"] == "49999:49999"
    assert hc["CapDrop"] == ["ALL"] and not hc["CapAdd"]
    assert "no-new-privileges" in hc["SecurityOpt"]
    assert hc["ReadonlyRootfs"] is True
    assert set(hc["Tmpfs"]) >= {"/tmp", "/app/.flwr"}  # noqa: S108 (paths in a container)
    assert hc["PidsLimit"] > 0
    assert hc["Memory"] > 0
    status = host.check_output(f"docker exec {name} cat /proc/1/status")
    assert "CapEff:\t0000000000000000" in status
    assert "NoNewPrivs:\t1" in status


def test_limits_as_configured(container):
    assert container["HostConfig"]["Memory"] == 1024**3  # superlink_memory_limit: 1g
    assert container["HostConfig"]["PidsLimit"] == 1024


# ------------------------------------------------------------------------ node authentication
def test_supernode_authentication_on(container):
    assert "--enable-supernode-auth" in container["Args"]


# The registrar's own CLI wrapper asks the SuperLink which node ids it has.
LIVE_NODES = (
    "docker exec flower-node-registrar python3 -c 'import json, pathlib, sys, tempfile; "
    'sys.path.insert(0, "/app/registrar"); import node_registrar as r; '
    'c = json.load(open("/app/registrar/config.json")); '
    "print(json.dumps(sorted(r.FlwrCli(c, pathlib.Path(tempfile.mkdtemp())).live_node_ids())))'"
)


def test_registrar_registers_the_given_key(host):
    key = host.file("/opt/flower/node-keys/edge-1.pub")
    assert key.content_string.startswith("ecdsa-sha2-nistp384 ")
    state_file = host.file("/opt/flower/state/node-registrar.json")
    deadline = time.monotonic() + 60
    while not (state_file.exists and "file:edge-1" in state_file.content_string):
        if time.monotonic() > deadline:
            pytest.fail(host.run("docker logs flower-node-registrar").stdout)
        time.sleep(2)
    (node,) = json.loads(state_file.content_string)["nodes"].values()
    assert node["sources"] == ["file:edge-1"] and node["node_id"].isdigit()
    assert json.loads(host.check_output(LIVE_NODES)) == [node["node_id"]]


# ---------------------------------------------------------------------------------- firewall
def test_firewall_rules_match_the_published_ports(host, container):
    table = host.check_output("nft list table inet opennebula_flower")
    published = set(host_ports(container))
    allowed = {int(port) for port in re.findall(r"tcp dport (\d+) ", table)} - {22}
    assert published == {9092, 9093}
    # Fleet: the VM's networks; Control: loopback only by default (no sources, no rule).
    assert allowed == {9092}
    assert "tcp dport 9092 ip saddr @fleet_ipv4 accept" in table
    assert "control_ipv4" not in table and "control_ipv6" not in table
