"""The supernode role: a built sklearn image, a node config, data mounted read-only, TLS and
SuperNode authentication with a key pair of its own, least privilege, the firewall."""

import json
import os
import re

import pytest

VERSION = os.environ.get("FLOWER_VERSION", "1.42.0")
IMAGE = f"localhost/flower-supernode:{VERSION}-sklearn"


@pytest.fixture(scope="module")
def container(host):
    return json.loads(host.check_output("docker inspect flower-supernode"))[0]


def test_service_enabled_and_running(host):
    service = host.service("flower-supernode")
    assert service.is_enabled
    assert service.is_running


def test_built_image(host, container):
    assert container["Config"]["Image"] == IMAGE
    versions = host.check_output(
        f"docker run --rm --entrypoint python3 {IMAGE} -c "
        "'import flwr, sklearn; print(flwr.__version__, sklearn.__version__)'"
    )
    assert versions.split()[0] == VERSION


def test_arguments(container):
    args = container["Args"]
    assert "--insecure" not in args
    assert args[args.index("--root-certificates") + 1] == "certificates/ca.crt"
    assert args[args.index("--auth-supernode-private-key") + 1] == "keys/supernode"
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


def test_node_key_pair_made_here_for_the_flower_user_alone(host, container):
    key = host.file("/opt/flower/keys/supernode")
    assert key.uid == 49999 and key.mode == 0o600
    assert key.content_string.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert host.file("/opt/flower/keys").mode == 0o700
    public = host.file("/opt/flower/keys/supernode.pub").content_string
    assert public.startswith("ecdsa-sha2-nistp384 ")
    mounts = {m["Destination"]: m for m in container["Mounts"]}
    assert mounts["/app/keys"]["Source"] == "/opt/flower/keys"
    assert mounts["/app/keys"]["RW"] is False


def test_least_privilege(host, container):
    hc = container["HostConfig"]
    assert hc["CapDrop"] == ["ALL"] and not hc["CapAdd"]
    assert "no-new-privileges" in hc["SecurityOpt"]
    assert hc["ReadonlyRootfs"] is True
    assert set(hc["Tmpfs"]) == {"/tmp", "/app/.flwr", "/app/.cache"}  # noqa: S108
    assert hc["Memory"] == 768 * 1024**2 and hc["PidsLimit"] == 4096
    status = host.check_output("docker exec flower-supernode cat /proc/1/status")
    assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status


def test_firewall_only_ssh(host):
    assert host.service("flower-firewall").is_enabled
    table = host.check_output("nft list table inet opennebula_flower")
    assert set(re.findall(r"tcp dport (\d+) ", table)) == {"22"}
