"""The SuperLink's metrics exporter (roles/superlink/files/flower_exporter.py).

- its log-line parsers (text, ANSI-coloured, JSON-wrapped) and its state machine (run and node
  transitions, events, series of finished runs) against a fake Control API;
- for real, once per Flower release (1.25.0: gRPC Control API, 1.42.0: protobuf over HTTP),
  against a bare local SuperLink and two SuperNodes (bench/bare_federation.py: processes,
  ``--insecure``, free loopback ports, ``--database`` in a temporary directory) from the
  ``.venv-flwr-<version>`` venvs (with ``prometheus-client``, scripts/bootstrap.sh), every
  process under the JSON log wrapper (roles/flower_container/files/flower_jsonlines.py): the idle
  federation, a two-round run of demo/sklearn (submitted with scripts/flwr_run_check.py) seen
  through ``/metrics`` with the exporter's JSON log lines and events, the wrapper's real run
  (tests/unit/test_jsonlines.py has its other tests: every line of every process a JSON object,
  the run's FL events with their fields, one SuperNode stopped), the SuperLink stopped
  (``flower_superlink_up 0``) and started again on the same database, and SIGTERM. The tests of
  one release run in order on one federation (each builds on the one before).

``/metrics`` is parsed with ``prometheus_client.parser`` in the flwr venv (the toolchain venv
has no prometheus-client).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import signal
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
VERSIONS = ("1.25.0", "1.42.0")
ROUNDS = 2
ROUND_CURRENT_RE = re.compile(r'^flower_round_current\{run_id="(\d+)"\} (\S+)$', re.M)
PARSE = (
    "import json, sys\n"
    "from prometheus_client.parser import text_string_to_metric_families\n"
    "print(json.dumps([[s.name, s.labels, s.value]\n"
    "    for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]))\n"
)


def load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fx = load("flower_exporter", EXPORTER)
bf = load("bare_federation", ROOT / "bench" / "bare_federation.py")


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
def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.5)


class Fed(bf.Federation):
    """bench/bare_federation.py's federation, every process under the JSON log wrapper."""

    def metrics(self) -> dict[tuple[str, tuple], float]:
        url = f"http://127.0.0.1:{self.ports['metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        parsed = subprocess.run(
            [str(self.python), "-c", PARSE],
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

    def lines(self, name: str) -> list[Any]:
        """Every line process ``name`` wrote, each parsed as JSON."""
        text = self.log(name).read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def exporter_lines(self) -> list[dict[str, Any]]:
        return self.lines("exporter")


@pytest.fixture(scope="module", params=VERSIONS)
def fed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One federation per Flower release for the exporter's tests and the JSON lines' test."""
    version = request.param
    venv = ROOT / f".venv-flwr-{version}"
    if not (venv / "bin" / "flower-superlink").exists():
        pytest.skip(f"{venv.name} missing (make bootstrap)")
    if subprocess.run([venv / "bin" / "python", "-c", "import prometheus_client"]).returncode:
        pytest.skip(f"{venv.name} has no prometheus-client (make bootstrap)")
    f = Fed(
        venv / "bin" / "python",
        tmp_path_factory.mktemp(f"federation-{version}"),
        version=version,
        exporter={"interval": 1, "log_format": "json"},
        jsonlines=True,
    )
    try:
        f.start_all()
        yield f
    finally:
        f.stop_all()


def test_idle_federation(fed: Fed) -> None:
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


def test_run_seen_through_metrics(fed: Fed) -> None:
    out = fed.tmp / "run.json"
    cmd = fed.demo_command(ROUNDS, 240, json_out=out, extra=("--min-accuracy", "0"))
    env = fed.env("cli")
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


# flower_jsonlines.py for real, on the same federation (each process under the wrapper): what
# each event type a healthy run produces must carry.
EVENT_FIELDS = {
    "run_submitted": {"run_id"},
    "round_start": {"round", "num_rounds"},
    "round_end": {"round", "num_rounds", "loss", "accuracy"},
    "round_results": {"phase", "results", "failures"},
    "training_finished": {"duration"},
    "client_join": {"node_id"},
    "client_leave": {"node_id"},
}
PROCESSES = ("superlink", "supernode-0", "supernode-1", "exporter")


def test_jsonlines_every_line_json_with_the_fl_events(fed: Fed) -> None:
    """Every line of every process (SuperLink, SuperNodes, exporter) is a JSON object, and the
    events of the run above appear with their fields (the ServerApp's lines of Flower 1.42,
    which its SuperExec does not show, come through the exporter as component serverapp).
    Before the SuperLink's restart: a SuperNode still reconnecting to it would leave unseen."""
    # A clean stop of one SuperNode (SIGTERM to its wrapper): the SuperLink logs its leave.
    supernode = fed.procs.pop("supernode-1")
    supernode.send_signal(signal.SIGTERM)
    assert supernode.wait(timeout=30) in (0, 143, -15)
    bf.stop_group(supernode)  # what it may have left in its process group

    def events() -> list[dict[str, Any]]:
        lines = []
        for name in PROCESSES:
            for record in fed.lines(name):  # every line one JSON object
                assert isinstance(record, dict), (name, record)
                lines.append(record)
        return lines

    wait_for("client_leave", lambda: any(r.get("event") == "client_leave" for r in events()), 30)
    records = events()
    for record in records:
        if "component" in record:  # the wrapper's lines (the exporter's own pass through)
            assert {"time", "level", "component", "message"} <= record.keys(), record
    seen: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record.get("event") in EVENT_FIELDS:
            seen.setdefault(record["event"], []).append(record)
    assert set(seen) == set(EVENT_FIELDS), sorted(seen)
    for event, fields in EVENT_FIELDS.items():
        assert any(fields <= r.keys() for r in seen[event]), (event, seen[event])
    assert {r["round"] for r in seen["round_end"]} >= set(range(1, ROUNDS + 1))
    # Parsed by the wrapper from the SuperLink's own lines (the exporter writes a client_leave
    # of its own; the ServerApp's lines of Flower 1.42 come through it as component serverapp).
    for event in ("run_submitted", "client_join", "client_leave"):
        assert any(r["component"] == "superlink" for r in seen[event]), (event, seen[event])
    assert {r["node_id"] for r in seen["client_join"]} >= {
        r["node_id"] for r in seen["client_leave"]
    }


def test_superlink_restart(fed: Fed) -> None:
    fed.stop("superlink")
    wait_for("superlink_up 0", lambda: fed.value("flower_superlink_up") == 0, 30)
    assert fed.value("flower_build_info", flower_version=fed.version) == 1  # still answers
    assert fed.value("flower_runs", status="finished:completed") is None  # no stale counts
    fed.start_superlink()
    wait_for("superlink_up 1", lambda: fed.value("flower_superlink_up") == 1, 60)
    assert fed.value("flower_runs", status="finished:completed") == 1  # the same database
    lines = fed.exporter_lines()
    assert any("not answering" in line["message"] for line in lines)


def test_sigterm(fed: Fed) -> None:
    exporter = fed.procs.pop("exporter")
    started = time.monotonic()
    exporter.send_signal(signal.SIGTERM)
    assert exporter.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert fed.exporter_lines()[-1]["message"] == "stopping"
