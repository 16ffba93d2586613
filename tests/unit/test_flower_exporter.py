"""The SuperLink's metrics exporter (roles/superlink/files/flower_exporter.py).

- its log-line parsers (text, ANSI-coloured, JSON-wrapped) and its state machine (run and node
  transitions, events, series of finished runs) against a fake Control API;
- for real, once per Flower release (1.25.0: gRPC Control API, 1.42.0: protobuf over HTTP),
  against a bare local SuperLink and two SuperNodes (processes, ``--insecure``, free loopback
  ports, ``--database`` in a temporary directory) from the ``.venv-flwr-<version>`` venvs (with
  ``prometheus-client``, scripts/bootstrap.sh): the idle federation, a two-round run of
  demo/sklearn (submitted with scripts/flwr_run_check.py) seen through ``/metrics``, the SuperLink
  stopped (``flower_superlink_up 0``) and started again on the same database, the exporter's
  JSON log lines and events, and SIGTERM.

``/metrics`` is parsed with ``prometheus_client.parser`` in the flwr venv (the toolchain venv
has no prometheus-client).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXPORTER = ROOT / "roles" / "superlink" / "files" / "flower_exporter.py"
APP_DIR = ROOT / "demo" / "sklearn"
RUN_CHECK = ROOT / "scripts" / "flwr_run_check.py"
VERSIONS = ("1.25.0", "1.42.0")
ROUNDS = 2
ROUND_CURRENT_RE = re.compile(r'^flower_round_current\{run_id="(\d+)"\} (\S+)$', re.M)
PARSE = (
    "import json, sys\n"
    "from prometheus_client.parser import text_string_to_metric_families\n"
    "print(json.dumps([[s.name, s.labels, s.value]\n"
    "    for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]))\n"
)


def load_exporter() -> Any:
    spec = importlib.util.spec_from_file_location("flower_exporter", EXPORTER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["flower_exporter"] = module
    spec.loader.exec_module(module)
    return module


fx = load_exporter()


# ------------------------------------------------------------------------------ the parsers
@pytest.mark.parametrize(
    "line",
    [
        "ROUND 2/3 loss=0.2410 accuracy=0.9444 elapsed=21.03",
        "\x1b[92mINFO \x1b[0m:      ROUND 2/3 loss=0.2410 accuracy=0.9444 elapsed=21.03\n",
        json.dumps(
            {
                "time": "2026-01-01T00:00:00Z",
                "level": "INFO",
                "component": "serverapp",
                "message": "ROUND 2/3 loss=0.2410 accuracy=0.9444 elapsed=21.03",
            }
        ),
        "{lvl='INFO', time='2026-01-01', msg='ROUND 2/3 loss=0.2410 accuracy=0.9444 "
        "elapsed=21.03'}",
    ],
)
def test_demo_round_line(line: str) -> None:
    event = fx.parse_line(line)
    assert event is not None and event.kind == "round_end"
    assert (event.round, event.total) == (2, 3)
    assert (event.loss, event.accuracy, event.elapsed) == (0.2410, 0.9444, 21.03)


def test_other_lines() -> None:
    start = fx.parse_line("\x1b[92mINFO \x1b[0m:      [ROUND 3/10]")
    assert (start.kind, start.round, start.total) == ("round_start", 3, 10)
    wrapped = fx.parse_line(json.dumps({"level": "INFO", "message": "[ROUND 4/10]"}))
    assert (wrapped.kind, wrapped.round) == ("round_start", 4)
    failures = fx.parse_line("INFO :      aggregate_train: Received 1 results and 2 failures")
    assert (failures.kind, failures.phase, failures.results, failures.failures) == (
        "failures",
        "aggregate_train",
        1,
        2,
    )
    initial = fx.parse_line("INITIAL loss=2.3026 accuracy=0.1000 elapsed=0.01")
    assert (initial.kind, initial.elapsed) == ("initial", 0.01)
    no_elapsed = fx.parse_line("ROUND 1/1 loss=0.5 accuracy=0.75")
    assert (no_elapsed.kind, no_elapsed.elapsed) == ("round_end", None)
    for line in (
        "",
        "FINAL rounds=3 loss=0.2143 accuracy=0.9611 elapsed=31.56",
        "configure_train: Sampled 2 nodes (out of 2)",
        '{"message": ""}',
        "{not json",
        "[1, 2]",
    ):
        assert fx.parse_line(line) is None, line


# ---------------------------------------------------------------- the state machine (fake API)
def fake_run(run_id: int, status: str, sub: str = "", **times: str) -> SimpleNamespace:
    return SimpleNamespace(
        run_id=run_id,
        status=SimpleNamespace(status=status, sub_status=sub, details=""),
        pending_at=times.get("pending_at", ""),
        starting_at=times.get("starting_at", ""),
        running_at=times.get("running_at", ""),
        finished_at=times.get("finished_at", ""),
    )


def fake_node(node_id: int, status: str, deactivated: str = "", until: float = 0.0) -> Any:
    return SimpleNamespace(
        node_id=node_id, status=status, last_deactivated_at=deactivated, online_until=until
    )


@dataclass
class FakeClient:
    runs: dict[int, Any] = field(default_factory=dict)
    nodes: list[Any] = field(default_factory=list)
    logs: dict[int, list[str]] = field(default_factory=dict)
    down: bool = False
    resets: int = 0

    def list_runs(self) -> dict[int, Any]:
        if self.down:
            raise OSError("connection refused")
        return dict(self.runs)

    def list_nodes(self) -> list[Any]:
        return list(self.nodes)

    def read_logs(self, run_id: int, after: float) -> tuple[str, float | None, bool]:
        pending = self.logs.get(run_id) or []
        self.logs[run_id] = []
        finished = self.runs[run_id].status.status == "finished"
        return "".join(pending), (after + 1 if pending else None), finished

    def reset(self) -> None:
        self.resets += 1


def test_state_machine() -> None:
    events: list[tuple[str | None, dict[str, Any]]] = []

    def log(level: str, message: str, event: str | None = None, **fields: Any) -> None:
        events.append((event, fields))

    old = fake_run(1, "finished", "completed")
    client = FakeClient(runs={1: old}, nodes=[fake_node(7, "online", until=2000.0)])
    exp = fx.Exporter({"control_address": "x", "min_available_nodes": 2}, log, client)
    exp.poll()
    snap = exp.snapshot
    assert snap.up and snap.connected == 1 and snap.runs["finished:completed"] == 1
    assert snap.per_run == [] and [e for e, _ in events if e] == []  # history: no events

    client.runs[2] = fake_run(2, "running", running_at="2026-01-01T00:00:00+00:00")
    client.logs[2] = ["INITIAL loss=2.0 accuracy=0.1 elapsed=1.00\n[ROUND 1/2]\nROUND 1/2 loss=0"]
    exp.poll()
    assert [e for e, _ in events if e] == ["run_started"]
    (run,) = exp.snapshot.per_run
    assert run["round_current"] == 1 and run["rounds_completed"] == 0  # partial line kept

    client.logs[2] = [
        ".5 accuracy=0.8 elapsed=4.00\n",
        "INFO :      aggregate_evaluate: Received 1 results and 1 failures\n",
        json.dumps({"message": "[ROUND 2/2]"}) + "\n",
    ]
    exp.poll()
    (run,) = exp.snapshot.per_run
    assert (run["round_current"], run["rounds_completed"], run["loss"], run["accuracy"]) == (
        2,
        1,
        0.5,
        0.8,
    )
    assert run["failures"] == 1 and exp.snapshot.duration_sum == 3.0

    client.runs[2] = fake_run(
        2,
        "finished",
        "completed",
        running_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:09.5+00:00",
    )
    client.logs[2] = ["ROUND 2/2 loss=0.25 accuracy=0.9 elapsed=9.00"]  # no newline at the end
    # node 7 timed out (left at its lease's end); node 8 said goodbye before its lease ended
    client.nodes = [
        fake_node(7, "offline", "1970-01-01T00:33:20+00:00", until=2000.0),
        fake_node(8, "online", until=5000.0),
    ]
    exp.poll()
    client.nodes = [
        fake_node(7, "offline", "1970-01-01T00:33:20+00:00", until=2000.0),
        fake_node(8, "offline", "1970-01-01T00:50:00+00:00", until=3000.0),
    ]
    exp.poll()
    finished = [f for e, f in events if e == "run_finished"]
    assert finished == [{"run_id": 2, "sub_status": "completed", "details": "", "duration": 9.5}]
    leaves = [f for e, f in events if e == "client_leave"]
    assert leaves == [{"node_id": 7, "reason": "timeout"}, {"node_id": 8, "reason": "deactivated"}]
    snap = exp.snapshot
    assert snap.dropouts == 1 and snap.connected == 0
    (run,) = snap.per_run
    assert not run["running"] and (run["rounds_completed"], run["accuracy"]) == (2, 0.9)
    assert snap.buckets[1] == 2 and snap.buckets[-1] == 2  # 3 s and 5 s rounds: <= 5

    client.down = True
    exp.poll()
    assert not exp.snapshot.up and exp.snapshot.runs is None and client.resets == 1
    assert exp.snapshot.per_run and exp.snapshot.dropouts == 1  # kept while it is down
    client.down = False
    exp.retention = 0.0
    exp.poll()
    assert exp.snapshot.up and exp.snapshot.per_run == []  # the finished run expired
    assert exp.snapshot.runs["finished:completed"] == 2


# ------------------------------------------------------------------ a real federation
def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1.0):
        return True
    return False


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.5)


@dataclass
class Federation:
    version: str
    venv: Path
    tmp: Path
    ports: dict[str, int]
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, cmd: list[str]) -> None:
        home = self.tmp / name
        home.mkdir(exist_ok=True)
        log = (self.tmp / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**self.env, "FLWR_HOME": str(home)},
            cwd=home,
            start_new_session=True,
        )
        log.close()

    @property
    def http_api(self) -> bool:
        """Flower >= 1.37 serves every API over HTTP on one port (--host/--port)."""
        return tuple(int(x) for x in self.version.split(".")[:2]) >= (1, 37)

    def start_superlink(self) -> None:
        p = self.ports
        if self.http_api:
            p["fleet"] = p["control"] = p["serverappio"]
            apis = ["--host", "127.0.0.1", "--port", str(p["serverappio"])]
        else:
            apis = ["--serverappio-api-address", f"127.0.0.1:{p['serverappio']}"]
            apis += ["--fleet-api-address", f"127.0.0.1:{p['fleet']}"]
            apis += ["--control-api-address", f"127.0.0.1:{p['control']}"]
        cmd = [str(self.venv / "bin" / "flower-superlink"), "--insecure"]
        self.start("superlink", [*cmd, "--database", str(self.tmp / "state.db"), *apis])
        wait_for("the SuperLink's ports", lambda: port_open(p["fleet"]) and port_open(p["control"]))

    def metrics(self) -> dict[tuple[str, tuple], float]:
        url = f"http://127.0.0.1:{self.ports['metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        parsed = subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", PARSE],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return {
            (name, tuple(sorted(labels.items()))): value
            for name, labels, value in json.loads(parsed.stdout)
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def exporter_lines(self) -> list[dict[str, Any]]:
        text = (self.tmp / "exporter.log").read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module", params=VERSIONS)
def fed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    version = request.param
    venv = ROOT / f".venv-flwr-{version}"
    if not (venv / "bin" / "flower-superlink").exists():
        pytest.skip(f"{venv.name} missing (make bootstrap)")
    if subprocess.run([venv / "bin" / "python", "-c", "import prometheus_client"]).returncode:
        pytest.skip(f"{venv.name} has no prometheus-client (make bootstrap)")
    names = ("serverappio", "fleet", "control", "clientappio-0", "clientappio-1", "metrics")
    tmp = tmp_path_factory.mktemp(f"exporter-{version}")
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env |= {"FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    # What the JSON log wrapper (flower_jsonlines.py) tells the programs it runs.
    env["FLOWER_JSONLINES_DIR"] = str(ROOT / "roles" / "flower_container" / "files")
    env.pop("VIRTUAL_ENV", None)
    env.pop("FL_LOG_FORMAT", None)
    f = Federation(version, venv, tmp, dict(zip(names, free_ports(len(names)), strict=True)), env)
    if f.http_api:
        f.ports["fleet"] = f.ports["control"] = f.ports["serverappio"]
    config = {
        "control_address": f"127.0.0.1:{f.ports['control']}",
        "http_api": f.http_api,
        "root_certificates": None,
        "listen_address": "127.0.0.1",
        "port": f.ports["metrics"],
        "interval": 1,
        "min_available_nodes": 2,
        "log_format": "json",
    }
    (tmp / "exporter.json").write_text(json.dumps(config))
    try:
        f.start_superlink()
        for i in range(2):
            f.start(
                f"supernode-{i}",
                [
                    str(venv / "bin" / "flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{f.ports['fleet']}",
                    *(
                        ["--host", "127.0.0.1", "--port"]
                        if f.http_api
                        else ["--clientappio-api-address"]
                    ),
                    f"{'' if f.http_api else '127.0.0.1:'}{f.ports[f'clientappio-{i}']}",
                    "--node-config",
                    f"partition-id={i} num-partitions=2",
                ],
            )
        f.start(
            "exporter", [str(venv / "bin" / "python"), str(EXPORTER), str(tmp / "exporter.json")]
        )
        wait_for("/metrics", lambda: port_open(f.ports["metrics"]), 30)
        yield f
    finally:
        for name in reversed(list(f.procs)):
            stop_group(f.procs[name])


def test_idle_federation(fed: Federation) -> None:
    wait_for("2 SuperNodes connected", lambda: fed.value("flower_supernodes_connected") == 2)
    m = fed.metrics()
    assert m[("flower_superlink_up", ())] == 1
    assert m[("flower_build_info", (("flower_version", fed.version),))] == 1
    assert m[("flower_min_available_nodes", ())] == 2
    assert m[("flower_supernodes_registered", ())] == 2
    for status in fx.RUN_STATUSES:
        assert m[("flower_runs", (("status", status),))] == 0
    assert m[("flower_round_duration_seconds_count", ())] == 0
    assert m[("flower_supernode_dropouts_total", ())] == 0


def test_run_seen_through_metrics(fed: Federation) -> None:
    out = fed.tmp / "run.json"
    cmd = [str(fed.venv / "bin" / "python"), str(RUN_CHECK), str(APP_DIR), "local"]
    cmd += ["--address", f"127.0.0.1:{fed.ports['control']}", "--min-accuracy", "0"]
    cmd += ["--run-config", f"num-server-rounds={ROUNDS}", "--min-rounds", str(ROUNDS)]
    cmd += ["--timeout", "240", "--json-out", str(out)]
    env = {**fed.env, "FLWR_HOME": str(fed.tmp / "cli")}
    seen: set[str] = set()  # flower_round_current samples while the run runs
    done = threading.Event()

    def watch() -> None:
        url = f"http://127.0.0.1:{fed.ports['metrics']}/metrics"
        while not done.wait(0.5):
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as answer:
                seen.update(ROUND_CURRENT_RE.findall(answer.read().decode()))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=300, check=False
        )
    finally:
        done.set()
        watcher.join()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    run_id, rounds = str(result["run_id"]), result["rounds"]
    assert len(rounds) == ROUNDS

    wait_for(
        "the finished run counted",
        lambda: fed.value("flower_runs", status="finished:completed") == 1,
        30,
    )
    m = fed.metrics()
    assert m[("flower_superlink_up", ())] == 1
    assert m[("flower_supernodes_connected", ())] == 2
    assert m[("flower_rounds_completed_total", (("run_id", run_id),))] == ROUNDS
    assert m[("flower_last_round_accuracy_ratio", (("run_id", run_id),))] == rounds[-1]["accuracy"]
    assert m[("flower_last_round_loss", (("run_id", run_id),))] == rounds[-1]["loss"]
    assert m[("flower_node_failures_total", (("run_id", run_id),))] == 0
    assert m[("flower_round_duration_seconds_count", ())] == ROUNDS
    assert m[("flower_round_duration_seconds_sum", ())] > 0
    assert ("flower_round_current", (("run_id", run_id),)) not in m  # finished: no series
    assert {(run_id, "1.0"), (run_id, "2.0")} <= seen, seen  # while it ran: rounds 1 and 2
    assert m[("flower_runs", (("status", "running"),))] == 0

    # every name is the contract's (meta/metrics.yml), and every exporter metric is there
    contract = yaml.safe_load((ROOT / "meta" / "metrics.yml").read_text())["metrics"]
    declared = {c["name"] for c in contract if c["provider"] == "flower-exporter"}
    names = {re.sub(r"_(bucket|sum|count)$", "", name) for name, _ in m}
    own = {name for name in names if name.startswith("process_")}  # the exporter's process
    assert "process_start_time_seconds" in own
    assert names - own == declared - {"flower_round_current"}

    lines = fed.exporter_lines()  # every line is a JSON object
    assert all(line["time"].endswith("+00:00") for line in lines)
    assert {line["component"] for line in lines} <= {"exporter", "serverapp"}
    # Where the release's SuperExec discards the ServerApp's console output (1.42), the
    # exporter writes the ServerApp's lines it reads, with their events; else it does not.
    serverapp = [line for line in lines if line["component"] == "serverapp"]
    if fed.version == "1.42.0":
        ends = [line for line in serverapp if line.get("event") == "round_end"]
        assert [(e["run_id"], e["round"]) for e in ends] == [(int(run_id), 1), (int(run_id), 2)]
        assert all("accuracy" in e and "duration" in e for e in ends)
    else:
        assert serverapp == []
    events = {(line.get("event"), str(line.get("run_id"))): line for line in lines}
    assert ("run_started", run_id) in events
    done = events[("run_finished", run_id)]
    assert done["sub_status"] == "completed" and done["duration"] > 0


def test_superlink_restart(fed: Federation) -> None:
    stop_group(fed.procs.pop("superlink"))
    wait_for("superlink_up 0", lambda: fed.value("flower_superlink_up") == 0, 30)
    assert fed.value("flower_build_info", flower_version=fed.version) == 1  # still answers
    assert fed.value("flower_runs", status="finished:completed") is None  # no stale counts
    fed.start_superlink()
    wait_for("superlink_up 1", lambda: fed.value("flower_superlink_up") == 1, 60)
    assert fed.value("flower_runs", status="finished:completed") == 1  # the same database
    lines = fed.exporter_lines()
    assert any("not answering" in line["message"] for line in lines)


def test_sigterm(fed: Federation) -> None:
    exporter = fed.procs.pop("exporter")
    started = time.monotonic()
    exporter.send_signal(signal.SIGTERM)
    assert exporter.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert fed.exporter_lines()[-1]["message"] == "stopping"
