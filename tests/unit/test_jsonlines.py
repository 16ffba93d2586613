"""flower_jsonlines.py (JSON logs): Flower's lines of 1.25 and 1.42 as JSON objects with the FL
events, and the wrapper as a container's PID 1 (the child's output, exit status and signals).

A real run: a bare local federation of Flower 1.42 and 1.25 (SuperLink, 2 SuperNodes, the
metrics exporter, each under the wrapper) trains demo/sklearn for 2 rounds; every line of every
process is a JSON object and the healthy run's events appear with their fields. The same path in
containers is checked in the end-to-end scenario (molecule/e2e/tests/test_observability.py).
"""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "roles" / "flower_container" / "files" / "flower_jsonlines.py"
_spec = importlib.util.spec_from_file_location("flower_jsonlines", WRAPPER)
jsonlines = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(jsonlines)

GREEN, RESET = "\x1b[32m", "\x1b[0m"

# (the line as Flower writes it, the event, its fields); the texts are Flower's format strings
# (see design/observability.md for where each comes from) and the bundled demos' lines.
LINES = [
    ("INFO :      Created run 4242", "run_submitted", {"run_id": 4242}),
    (
        "INFO :      Created run 4242 in federation default",
        "run_submitted",
        {"run_id": 4242, "federation": "default"},
    ),
    ("INFO :      Starting run 4242", "run_started", {"run_id": 4242}),
    ("INFO :      Run ID 4242 stopped.", "run_finished", {"run_id": 4242}),
    ("INFO :      Starting FedAvg strategy:", "strategy_start", {"strategy": "FedAvg"}),
    (f"{GREEN}INFO {RESET}:      [ROUND 2/3]", "round_start", {"round": 2, "num_rounds": 3}),
    (
        "INFO :      configure_train: Sampled 2 nodes (out of 3)",
        "train_configured",
        {"sampled": 2, "available": 3},
    ),
    (
        "INFO :      configure_evaluate: Sampled 2 nodes (out of 2)",
        "evaluate_configured",
        {"sampled": 2, "available": 2},
    ),
    (
        "INFO :      aggregate_train: Received 1 results and 1 failures",
        "round_results",
        {"phase": "train", "results": 1, "failures": 1},
    ),
    (
        "ERROR :     \t> Received error in reply from node 77: timed out",
        "client_failure",
        {"node_id": 77, "reason": "timed out"},
    ),
    (
        "INFO :      Strategy execution finished in 12.34s",
        "training_finished",
        {"duration": 12.34},
    ),
    ("INFO :      [Fleet.ActivateNode] Activated node_id=99", "client_join", {"node_id": 99}),
    (
        "INFO :      [Fleet.DeactivateNode] Deactivated node_id=99",
        "client_leave",
        {"node_id": 99, "reason": "deactivated"},
    ),
    ("ERROR :     ServerApp raised an exception", "error", {}),
]


@pytest.mark.parametrize(("line", "event", "fields"), LINES, ids=[e for _, e, _ in LINES])
def test_flower_line_becomes_an_event(line, event, fields):
    record = jsonlines.Formatter("superlink").record(line, "stderr")
    assert record["event"] == event
    assert {k: record[k] for k in fields} == fields
    assert record["component"] == "superlink"
    assert "\x1b" not in record["message"] and not record["message"].startswith(("\t", ">"))


def test_round_end_carries_loss_accuracy_and_the_round_duration():
    formatter = jsonlines.Formatter("superlink")
    formatter.record("INFO :      INITIAL loss=2.3026 accuracy=0.1000 elapsed=0.50", "stdout")
    first = formatter.record(
        "INFO :      ROUND 1/2 loss=0.3240 accuracy=0.9083 elapsed=10.50", "stdout"
    )
    second = formatter.record(
        "INFO :      ROUND 2/2 loss=0.2000 accuracy=0.9400 elapsed=18.00", "stdout"
    )
    assert first["event"] == second["event"] == "round_end"
    assert (first["round"], first["num_rounds"], first["loss"], first["accuracy"]) == (
        1,
        2,
        0.324,
        0.9083,
    )
    assert (first["duration"], second["duration"]) == (10.0, 7.5)


@pytest.mark.parametrize(
    ("line", "stream", "level", "message"),
    [
        ("WARNING :   DEPRECATED FEATURE", "stderr", "WARNING", "DEPRECATED FEATURE"),
        ("DEBUG 2026-12-08 02:03:01,198:  ping", "stderr", "DEBUG", "ping"),
        ("{lvl='ERROR', time='2026-12-08 02:03:01', msg='boom'}", "stderr", "ERROR", "boom"),
        ("INFO:     Started server process [1]", "stderr", "INFO", "Started server process [1]"),
        ("E0000 00:00:1733622181.123 ev_poll_posix.cc:593] lost", "stderr", "ERROR", None),
        ("Traceback (most recent call last):", "stderr", "ERROR", None),
        ("plain print()", "stdout", "INFO", "plain print()"),
        ("fatal: [localhost]: FAILED! => {}", "stdout", "ERROR", None),
        ("[WARNING]: no inventory", "stderr", "WARNING", None),
        ("TASK [opennebula.flower.superlink : Validate] ***", "stdout", "INFO", None),
    ],
)
def test_level_and_message_of_other_lines(line, stream, level, message):
    record = jsonlines.Formatter("supernode").record(line, stream)
    assert record["level"] == level
    assert record["message"] == (message or line)


def test_named_logger_lines_keep_the_logger():
    line = '2026-12-08 02:03:01,198 INFO [uvicorn.access] "POST /v1/control/list-runs HTTP/1.1" 200'
    record = jsonlines.Formatter("superlink").record(line, "stderr")
    assert (record["level"], record["logger"]) == ("INFO", "uvicorn.access")
    assert record["message"].startswith('"POST /v1/control/list-runs')


def test_traceback_lines_stay_errors_until_the_next_log_line():
    formatter = jsonlines.Formatter("superlink")
    levels = [
        formatter.record(line, "stderr")["level"]
        for line in [
            "Traceback (most recent call last):",
            '  File "app.py", line 1, in <module>',
            "ValueError: bad",
            "INFO :      back to normal",
        ]
    ]
    assert levels == ["ERROR", "ERROR", "ERROR", "INFO"]


def test_spacer_lines_are_dropped():
    formatter = jsonlines.Formatter("superlink")
    assert formatter.record("INFO :      ", "stderr") is None
    assert formatter.record("   ", "stdout") is None


CHILD = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))
print("INFO :      [ROUND 1/1]", file=sys.stderr, flush=True)
print('{"event": "run_started", "run_id": 7}', flush=True)
print("a line of its own", flush=True)
print("", flush=True)
if sys.argv[1] == "wait":
    time.sleep(60)
sys.exit(int(sys.argv[1]))
"""


def wrap(*args):
    cmd = [sys.executable, str(WRAPPER), "--component", "supernode", "--"]
    return subprocess.Popen(
        [*cmd, sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, text=True
    )


def test_every_line_a_json_object_and_the_childs_exit_status():
    proc = wrap("3")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3
    records = [json.loads(line) for line in out.splitlines()]
    assert {"event": "run_started", "run_id": 7} in records  # passed through as is
    wrapped = [r for r in records if "component" in r]
    assert sorted(r["message"] for r in wrapped) == ["[ROUND 1/1]", "a line of its own"]
    assert all(r["component"] == "supernode" and r["time"].endswith("+00:00") for r in wrapped)


def test_sigterm_reaches_the_child():
    proc = wrap("wait")
    first = proc.stdout.readline()
    assert json.loads(first)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 42


def test_usage_error():
    proc = subprocess.run(
        [sys.executable, str(WRAPPER), "flower-superlink"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "usage" in proc.stderr


# A real run: a bare local federation (SuperLink, 2 SuperNodes and the SuperLink's metrics
# exporter, which writes the ServerApp's lines that Flower 1.42's SuperExec does not show),
# each process under the wrapper, and a 2-round demo/sklearn run submitted as the project does.
EXPORTER = ROOT / "roles" / "superlink" / "files" / "flower_exporter.py"
ROUNDS = 2
# What each event type a healthy run produces must carry.
EVENT_FIELDS = {
    "run_submitted": {"run_id"},
    "round_start": {"round", "num_rounds"},
    "round_end": {"round", "num_rounds", "loss", "accuracy"},
    "round_results": {"phase", "results", "failures"},
    "training_finished": {"duration"},
    "client_join": {"node_id"},
    "client_leave": {"node_id"},
}


def _free_ports(count):
    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), 1.0):
            return True
    except OSError:
        return False


def _wait(what, check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f}s: {what}"
        time.sleep(0.5)


@pytest.mark.parametrize("version", ["1.42.0", "1.25.0"])
def test_real_run_every_line_json_with_the_fl_events(version, tmp_path):
    venv = ROOT / f".venv-flwr-{version}"
    if not (venv / "bin" / "flower-superlink").exists():
        pytest.skip(f"{venv.name} missing (make bootstrap)")
    http_api = tuple(int(x) for x in version.split(".")[:2]) >= (1, 37)
    py = str(venv / "bin" / "python")
    sl, fleet, control, cio0, cio1, metrics = _free_ports(6)
    if http_api:
        fleet = control = sl
        apis = ["--host", "127.0.0.1", "--port", str(sl)]
    else:
        apis = ["--serverappio-api-address", f"127.0.0.1:{sl}"]
        apis += ["--fleet-api-address", f"127.0.0.1:{fleet}"]
        apis += ["--control-api-address", f"127.0.0.1:{control}"]
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env |= {"FLWR_TELEMETRY_ENABLED": "0", "FL_LOG_FORMAT": "json"}
    env.pop("VIRTUAL_ENV", None)
    config = {
        "control_address": f"127.0.0.1:{control}",
        "http_api": http_api,
        "root_certificates": None,
        "listen_address": "127.0.0.1",
        "port": metrics,
        "interval": 1,
        "min_available_nodes": 2,
        "log_format": "json",
    }
    (tmp_path / "exporter.json").write_text(json.dumps(config))
    programs = {
        "superlink": ["flower-superlink", "--insecure", "--database", "state.db", *apis],
        "exporter": [py, str(EXPORTER), str(tmp_path / "exporter.json")],
    }
    for i, port in enumerate((cio0, cio1)):
        programs[f"supernode-{i}"] = [
            "flower-supernode",
            "--insecure",
            "--superlink",
            f"127.0.0.1:{fleet}",
            *(["--host", "127.0.0.1", "--port", str(port)] if http_api else []),
            *([] if http_api else ["--clientappio-api-address", f"127.0.0.1:{port}"]),
            "--node-config",
            f"partition-id={i} num-partitions=2",
        ]
    procs = {}
    try:
        for name, cmd in programs.items():
            home = tmp_path / name
            home.mkdir()
            with (tmp_path / f"{name}.log").open("wb") as log:
                procs[name] = subprocess.Popen(
                    [py, str(WRAPPER), "--component", name.split("-")[0], "--", *cmd],
                    stdout=log,
                    stderr=subprocess.STDOUT,  # the wrapper itself must write nothing on stderr
                    stdin=subprocess.DEVNULL,
                    env={**env, "FLWR_HOME": str(home)},
                    cwd=home,
                )
            if name == "superlink":
                _wait("the SuperLink's ports", lambda: _port_open(fleet) and _port_open(control))
        _wait("the exporter", lambda: _port_open(metrics), 30)
        cmd = [py, str(ROOT / "scripts" / "flwr_run_check.py"), str(ROOT / "demo" / "sklearn")]
        cmd += ["local", "--address", f"127.0.0.1:{control}", "--min-accuracy", "0"]
        cmd += ["--run-config", f"num-server-rounds={ROUNDS}", "--min-rounds", str(ROUNDS)]
        cmd += ["--timeout", "240"]
        run = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**env, "FLWR_HOME": str(tmp_path / "cli")},
            timeout=300,
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        # A clean stop of one SuperNode (SIGTERM to its wrapper): the SuperLink logs its leave.
        procs["supernode-1"].send_signal(signal.SIGTERM)
        assert procs["supernode-1"].wait(timeout=30) in (0, 143, -15)

        def events():
            lines = []
            for name in programs:
                for line in (tmp_path / f"{name}.log").read_text().splitlines():
                    record = json.loads(line)  # every line one JSON object
                    assert isinstance(record, dict), (name, line)
                    lines.append(record)
            return lines

        _wait(
            "client_leave",
            lambda: any(r.get("event") == "client_leave" for r in events()),
            30,
        )
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    records = events()
    for record in records:
        if "component" in record:  # the wrapper's lines (the exporter's own pass through)
            assert {"time", "level", "component", "message"} <= record.keys(), record
    seen = {}
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
