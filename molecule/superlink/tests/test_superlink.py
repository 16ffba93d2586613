"""The superlink role: a SuperLink container under systemd, state on disk, 9091 kept inside."""

import json
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


def test_only_fleet_and_control_are_published(host, container):
    published = sorted(container["HostConfig"]["PortBindings"])
    assert published == ["9092/tcp", "9093/tcp"]
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
