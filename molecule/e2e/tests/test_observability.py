"""Observability of the federation site.yml deployed (after test_federation.py's runs).

A real Prometheus (Debian's ``prometheus``, on the controller's loopback) scrapes the
SuperLink's metrics exporter while the demo trains; the values read back through Prometheus's
HTTP API must match the run (rounds, last accuracy, SuperNodes), every dashboard expression must
evaluate on them, and the exporter must answer again after a SuperLink restart. The scenario
runs with JSON logs: every line the Flower containers wrote must be one JSON object, and the FL
events must appear with their fields.
"""

import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from test_federation import in_vm, train, vm_address

ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
VERSION = os.environ.get("FLOWER_VERSION", "1.42.0")
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "unit")]
import test_dashboards as dashboards  # noqa: E402 (the dashboards and their test values)
from prometheus_server import Prometheus  # noqa: E402

testinfra_hosts = ["ansible://superlink"]

METRICS_PORT = 9101
ROUNDS = 2
# A moment the training run was running (test_metrics_follow_a_training_run sets it): the
# dashboards' per-run panels (current round) have data only while a run runs.
RUNNING = {}
SUPERNODES = 2
RULES = next(ROOT.glob("**/prometheus/flower-alerts.yml"))


@pytest.fixture(scope="module")
def prometheus(host, tmp_path_factory):
    config = {
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "2s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "flower-superlink",
                "static_configs": [{"targets": [f"{vm_address(host)}:{METRICS_PORT}"]}],
            }
        ],
    }
    with Prometheus(config, tmp_path_factory.mktemp("prometheus")) as prom:
        prom.wait_until(lambda: prom.values("flower_superlink_up") == [1.0], 60,
                        "the exporter was not scraped, or the SuperLink not seen up")  # fmt: skip
        yield prom


def test_metrics_follow_a_training_run(host, prometheus, tmp_path):
    # The SuperLink may resume the last checkpoint (test_federation.py turned it on): a trained
    # model needs not improve, and the metrics are what this checks.
    result = train(host, tmp_path, ROUNDS, improvement=False)
    run = f'run_id="{result["run_id"]}"'
    prometheus.wait_until(
        lambda: prometheus.values(f"flower_rounds_completed_total{{{run}}}") == [ROUNDS], 60,
        f"Prometheus did not see {ROUNDS} rounds of run {result['run_id']}",
    )  # fmt: skip
    accuracy = prometheus.values(f"flower_last_round_accuracy_ratio{{{run}}}")
    assert accuracy == [pytest.approx(result["rounds"][-1]["accuracy"], abs=1e-4)], accuracy
    loss = prometheus.values(f"flower_last_round_loss{{{run}}}")
    assert loss == [pytest.approx(result["rounds"][-1]["loss"], abs=1e-4)], loss
    assert prometheus.values("flower_supernodes_connected") == [SUPERNODES]
    assert prometheus.values('flower_runs{status="finished:completed"}')[0] >= 1
    assert prometheus.values(f'flower_build_info{{flower_version="{VERSION}"}}') == [1]
    assert prometheus.values("flower_round_duration_seconds_count")[0] >= ROUNDS
    seen = prometheus.api("query", query=f"flower_round_current{{{run}}}[10m]")["data"]["result"]
    assert seen, "Prometheus never saw the run's current round"
    RUNNING.update(at=float(seen[0]["values"][-1][0]), run_id=str(result["run_id"]))


EXPRS = dashboards._all_exprs()


@pytest.mark.parametrize(("stem", "where", "expr"), EXPRS, ids=[f"{s}: {w}" for s, w, _ in EXPRS])
def test_dashboard_expressions_evaluate(host, prometheus, stem, where, expr):
    assert "at" in RUNNING, "no training run was seen"
    board = dashboards._boards()[stem]
    instance = f"{vm_address(host)}:{METRICS_PORT}"
    sent = dashboards._substitute(expr, board, instance, RUNNING["run_id"])
    answer = prometheus.query(sent, at=RUNNING["at"])
    assert answer["status"] == "success", (sent, answer.get("error"))
    if stem != dashboards.GPU_BOARD:  # no GPU here: the DCGM series stay empty
        assert answer["data"]["result"], f"{stem} / {where}: no data for {sent}"


def test_alert_rules_loaded_and_quiet(prometheus):
    declared = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    groups = prometheus.api("rules")["data"]["groups"]
    rules = {rule["name"]: rule["state"] for group in groups for rule in group["rules"]}
    assert rules.keys() == declared
    firing = {name for name, state in rules.items() if state != "inactive"}
    healthy = {"FlowerSuperLinkExporterDown", "FlowerSuperLinkDown", "FlowerNoSuperNodeConnected"}
    assert not firing & healthy, firing


def test_metrics_port_open_to_the_monitoring_sources_only(host):
    probe = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)"
    reach = in_vm("supernode-1", "python3", "-c", probe, vm_address(host), str(METRICS_PORT))
    assert reach.returncode != 0, "a SuperNode VM reached the metrics port"
    assert f"tcp dport {METRICS_PORT} ip saddr @metrics_ipv4 accept" in host.check_output(
        "nft list table inet opennebula_flower"
    )


# ------------------------------------------------------------------------- JSON logs

# What each FL event must carry (flower_jsonlines.py and the exporter add them).
EVENT_FIELDS = {
    "run_submitted": {"run_id"},
    "run_started": {"run_id"},
    "run_finished": {"run_id"},
    "strategy_start": {"strategy"},
    "round_start": {"round", "num_rounds"},
    "train_configured": {"sampled", "available"},
    "evaluate_configured": {"sampled", "available"},
    "round_results": {"phase", "results", "failures"},
    "round_end": {"round", "num_rounds", "loss", "accuracy", "duration"},
    "training_finished": {"duration"},
    "client_join": {"node_id"},
    "client_leave": {"node_id"},
}
VMS = ["superlink", "supernode-1", "supernode-2"]


def flower_containers(vm):
    proc = in_vm(vm, "docker", "ps", "--format", "{{.Names}}", "--filter", "name=^flower-")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def container_log_lines(vm, container):
    proc = in_vm(vm, "sh", "-c", f"docker logs {container} 2>&1")
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line.strip()]


def test_every_container_log_line_is_a_json_object(host):
    # A SuperNode that stops leaves cleanly (client_leave) and joins again (client_join).
    restart = in_vm("supernode-2", "systemctl", "restart", "flower-supernode", timeout=180)
    assert restart.returncode == 0, restart.stderr
    accepted = "until docker logs flower-supernode 2>&1 | grep -q 'SuperNode ID:'; do sleep 2; done"
    wait = in_vm("supernode-2", "sh", "-c", accepted, timeout=180)
    assert wait.returncode == 0, wait.stderr
    seen = {}
    for vm in VMS:
        containers = flower_containers(vm)
        assert containers, f"no Flower container on {vm}"
        for container in containers:
            lines = container_log_lines(vm, container)
            assert lines, f"{vm}/{container} logged nothing"
            for line in lines:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    pytest.fail(f"{vm}/{container}: not JSON: {line!r}")
                assert isinstance(entry, dict), line
                assert {"time", "level", "component", "message"} <= entry.keys(), line
                if "event" in entry:
                    seen.setdefault(entry["event"], []).append(entry)
    missing = set(EVENT_FIELDS) - seen.keys()
    assert not missing, f"events never logged: {sorted(missing)}; seen: {sorted(seen)}"
    for event, fields in EVENT_FIELDS.items():
        complete = [e for e in seen[event] if fields <= e.keys()]
        assert complete, f"{event} without {sorted(fields)}: {seen[event][:2]}"


def test_metrics_answer_after_a_superlink_restart(host, prometheus):
    # The exporter goes and comes back with the SuperLink (BindsTo): a later process start.
    before = prometheus.values('process_start_time_seconds{job="flower-superlink"}')
    assert before, "the exporter publishes no process_start_time_seconds"
    host.check_output("systemctl restart flower-superlink")
    prometheus.wait_until(
        lambda: prometheus.values('process_start_time_seconds{job="flower-superlink"}') > before
        and prometheus.values('up{job="flower-superlink"}') == [1]
        and prometheus.values("flower_superlink_up") == [1], 120,
        "the exporter did not answer again after the SuperLink restarted",
    )  # fmt: skip
    # The state database kept the finished runs.
    assert prometheus.values('flower_runs{status="finished:completed"}')[0] >= 1
