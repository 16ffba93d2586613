"""The monitoring role: Debian's Prometheus on loopback with the collection's alert rules loaded,
a configuration promtool accepts, and the scrape jobs the rules expect reporting the stand-in
exporters (prepare.yml) up - the SuperLink's target taken from the inventory."""

import json
import time
from pathlib import Path

import yaml

RULES = Path(__file__).resolve().parents[3] / "monitoring" / "prometheus" / "flower-alerts.yml"
API = "http://127.0.0.1:9090/api/v1/"


def api(host, path):
    """GET a Prometheus API path from inside the VM (the port is on its loopback)."""
    cmd = (
        "python3 -c 'import sys, urllib.request; "
        "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "
        f"'{API}{path}'"
    )
    body = json.loads(host.check_output(cmd))
    assert body["status"] == "success", body
    return body["data"]


def test_prometheus_running_on_loopback(host):
    service = host.service("prometheus")
    assert service.is_enabled
    assert service.is_running
    assert host.socket("tcp://127.0.0.1:9090").is_listening
    assert not host.socket("tcp://0.0.0.0:9090").is_listening


def test_config_passes_promtool(host):
    out = host.run("promtool check config /etc/prometheus/prometheus.yml")
    assert out.rc == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_rules_loaded(host):
    wanted = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    loaded = {rule["name"] for group in api(host, "rules")["groups"] for rule in group["rules"]}
    assert wanted and wanted <= loaded, wanted - loaded


def test_targets_up(host):
    """flower-superlink: the inventory's SuperLink (this VM's name, its superlink_metrics_port);
    flower-dcgm: the explicit list. Both up within a minute (2 s scrape interval)."""
    (superlink,) = host.ansible.get_variables()["groups"]["superlink"]
    deadline = time.monotonic() + 60
    while True:
        active = api(host, "targets?state=active")["activeTargets"]
        found = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in active}
        expected = {("flower-superlink", f"{superlink}:9109"), ("flower-dcgm", "127.0.0.1:9400")}
        if all(found.get(key) == "up" for key in expected) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert expected <= found.keys(), found
    assert all(found[key] == "up" for key in expected), found


def test_values_scraped(host):
    result = api(host, "query?query=flower_supernodes_connected")["result"]
    assert [r["value"][1] for r in result] == ["2"], result
    result = api(host, "query?query=DCGM_FI_DEV_GPU_TEMP")["result"]
    assert [r["value"][1] for r in result] == ["41"], result


def test_alertmanager_on_loopback_and_known_to_prometheus(host):
    assert host.service("prometheus-alertmanager").is_running
    assert host.socket("tcp://127.0.0.1:9093").is_listening
    assert not host.socket("tcp://0.0.0.0:9094").is_listening  # clustering off
    deadline = time.monotonic() + 30
    while not api(host, "alertmanagers")["activeAlertmanagers"] and time.monotonic() < deadline:
        time.sleep(2)
    urls = [a["url"] for a in api(host, "alertmanagers")["activeAlertmanagers"]]
    assert urls == ["http://127.0.0.1:9093/api/v2/alerts"], urls
