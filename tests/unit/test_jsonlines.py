"""flower_jsonlines.py (JSON logs): Flower's lines of 1.25 and 1.42 as JSON objects with the FL
events, and the wrapper as a container's PID 1 (the child's output, exit status and signals).

The real run (a bare local federation of Flower 1.42 and 1.25: SuperLink, 2 SuperNodes and the
metrics exporter, each under the wrapper, training demo/sklearn for 2 rounds; every line of every
process a JSON object, the healthy run's events with their fields) shares the exporter's
federation: tests/unit/test_flower_exporter.py, test_jsonlines_every_line_json_with_the_fl_events.
The same path in containers is checked in the end-to-end scenario
(molecule/e2e/tests/test_observability.py).
"""

import importlib.util
import json
import signal
import subprocess
import sys
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
