"""The supernode role: a built sklearn image, a node config, data mounted read-only."""

import json

import pytest


@pytest.fixture(scope="module")
def container(host):
    return json.loads(host.check_output("docker inspect flower-supernode"))[0]


def test_service_enabled_and_running(host):
    service = host.service("flower-supernode")
    assert service.is_enabled
    assert service.is_running


def test_built_image(host, container):
    assert container["Config"]["Image"] == "localhost/flower-supernode:1.25.0-sklearn"
    versions = host.check_output(
        "docker run --rm --entrypoint python3 localhost/flower-supernode:1.25.0-sklearn -c "
        "'import flwr, sklearn; print(flwr.__version__, sklearn.__version__)'"
    )
    assert versions.split()[0] == "1.25.0"


def test_arguments(container):
    args = container["Args"]
    assert "--insecure" in args
    assert args[args.index("--superlink") + 1] == "192.0.2.1:9092"
    assert args[args.index("--node-config") + 1] == (
        'num-partitions=2 partition-id=1 site="hospital a"'
    )
    assert "--max-retries" not in args  # 0 means unlimited: the flag is left out


def test_runs_as_flower_user(container):
    assert container["Config"]["User"] == "49999:49999"
    assert "FLWR_TELEMETRY_ENABLED=0" in container["Config"]["Env"]


def test_data_mounted_read_only(container):
    mounts = {m["Destination"]: m for m in container["Mounts"]}
    assert mounts["/app/data"]["Source"] == "/opt/flower/data"
    assert mounts["/app/data"]["RW"] is False


def test_keeps_retrying_an_absent_superlink(host):
    # An unreachable SuperLink is retryable: the container stays up instead of exiting.
    state = json.loads(host.check_output("docker inspect -f '{{json .State}}' flower-supernode"))
    assert state["Running"] and not state["Restarting"]
    assert host.check_output("systemctl show -p NRestarts --value flower-supernode") == "0"
