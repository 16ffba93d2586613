"""The docker role: Debian's engine installed, configured by daemon.json, running."""

import json


def test_packages(host):
    assert host.package("docker.io").is_installed
    assert host.package("python3-requests").is_installed


def test_daemon_json(host):
    config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert config["log-driver"] == "json-file"
    assert config["log-opts"] == {"max-size": "20m", "max-file": "3"}
    assert config["live-restore"] is True
    assert config["default-address-pools"] == [{"base": "10.123.0.0/16", "size": 24}]


def test_service(host):
    service = host.service("docker")
    assert service.is_running
    assert service.is_enabled


def test_engine_uses_the_configuration(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == "json-file"
    assert info["LiveRestoreEnabled"] is True
    assert info["Driver"] == "overlay2"
