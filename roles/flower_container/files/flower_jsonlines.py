"""Run a program and write each line of its output as one JSON object (flower_container_log_format).

    python3 flower_jsonlines.py --component superlink -- flower-superlink --insecure ...

The entrypoint of a Flower container when its logs are JSON: the program (Flower's, or the
collection's registrar and exporter) runs as a child; every line it writes on stdout or stderr
becomes ``{"time", "level", "component", "message"}`` on stdout, plus ``"logger"`` for lines of
a named logger and ``"event"`` with its fields for the FL events Flower logs (EVENTS below).
A line that already is a JSON object (the exporter's own events) passes through unchanged.
Signals are forwarded to the child (this is PID 1 under ``docker run``); the exit status is the
child's. Standard library only: it runs with the python3 of any Flower image, stock ones too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
from typing import IO, Any

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LEVELS = "DEBUG|INFO|WARNING|ERROR|CRITICAL"
# Flower's console lines: "INFO :      msg", with FLWR_LOG_LEVEL=DEBUG a time before the colon;
# uvicorn's default "INFO:     msg".
FLOWER_LINE = re.compile(rf"^(?P<level>{LEVELS})(?: [\d-]+ [\d:,.]+)?\s*:\s?(?P<message>.*)$")
# Flower's "json" console mode, which is not JSON.
FLOWER_PSEUDO_JSON = re.compile(
    rf"^\{{lvl='(?P<level>{LEVELS})', time='[^']*', msg='(?P<message>.*)'\}}$"
)
# Flower 1.42's HTTP server: "2026-12-08 02:03:01,198 INFO [uvicorn.access] msg".
NAMED_LOGGER = re.compile(
    rf"^\d{{4}}-\d\d-\d\d[ T][\d:,.]+\S*\s+(?P<level>{LEVELS})"
    r"\s+\[(?P<logger>[^\]]+)\]\s+(?P<message>.*)$"
)
# gRPC's C core: "E0000 00:00:1733622181.123 ... message".
GLOG = re.compile(r"^(?P<level>[EWI])\d{4} ")
GLOG_LEVELS = {"E": "ERROR", "W": "WARNING", "I": "INFO"}
# ansible-playbook's own lines (the appliance's boot runs under this wrapper too).
ANSIBLE_LEVEL = [
    (re.compile(r"^(fatal|failed): \[|^ERROR! "), "ERROR"),
    (re.compile(r"^\[(DEPRECATION )?WARNING\]"), "WARNING"),
]
TRACEBACK = re.compile(r"^(Traceback \(most recent call last\)|\w+(Error|Exception)\b)")
DECORATION = re.compile(r"^[\s└─>]+")

NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"
# The FL events: name, pattern (searched in the message), converters of its named groups.
EVENTS: list[tuple[str, re.Pattern[str], dict[str, type]]] = [
    (
        "run_submitted",
        re.compile(r"\bCreated run (?P<run_id>\d+)(?: in federation (?P<federation>\S+))?"),
        {},
    ),
    ("run_started", re.compile(r"\bStarting run (?P<run_id>\d+)"), {}),
    ("run_finished", re.compile(r"\bRun ID (?P<run_id>\d+) stopped"), {}),
    ("strategy_start", re.compile(r"\bStarting (?P<strategy>\w+) strategy"), {}),
    (
        "round_start",
        re.compile(r"^\[ROUND (?P<round>\d+)/(?P<num_rounds>\d+)\]"),
        {"round": int, "num_rounds": int},
    ),
    (
        "train_configured",
        re.compile(
            r"\bconfigure_train: Sampled (?P<sampled>\d+) nodes \(out of (?P<available>\d+)\)"
        ),
        {"sampled": int, "available": int},
    ),
    (
        "evaluate_configured",
        re.compile(
            r"\bconfigure_evaluate: Sampled (?P<sampled>\d+) nodes \(out of (?P<available>\d+)\)"
        ),
        {"sampled": int, "available": int},
    ),
    (
        "round_results",
        re.compile(
            r"\baggregate_(?P<phase>train|evaluate): "
            r"Received (?P<results>\d+) results and (?P<failures>\d+) failures"
        ),
        {"results": int, "failures": int},
    ),
    (
        "client_failure",
        re.compile(r"\bReceived error in reply from node (?P<node_id>\d+): (?P<reason>.*)"),
        {},
    ),
    # The bundled demos' per-round line; elapsed counts from the ServerApp's start.
    (
        "round_end",
        re.compile(
            rf"\bROUND (?P<round>\d+)/(?P<num_rounds>\d+) loss=(?P<loss>{NUM})"
            rf" accuracy=(?P<accuracy>{NUM})(?: elapsed=(?P<elapsed>{NUM}))?"
        ),
        {"round": int, "num_rounds": int, "loss": float, "accuracy": float, "elapsed": float},
    ),
    (
        "training_finished",
        re.compile(rf"\bStrategy execution finished in (?P<duration>{NUM})s"),
        {"duration": float},
    ),
    ("client_join", re.compile(r"\bActivated node_id=(?P<node_id>\d+)"), {}),
    ("client_leave", re.compile(r"\bDeactivated node_id=(?P<node_id>\d+)"), {}),
]
# The demos' line before the first round: where round 1's duration starts.
INITIAL = re.compile(rf"\bINITIAL loss={NUM} accuracy={NUM} elapsed=(?P<elapsed>{NUM})")


class Formatter:
    """One output line per input line; remembers the last ``elapsed`` for round durations."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.elapsed: float | None = None
        self.traceback = False  # inside a traceback on stderr

    def record(self, raw: str, stream: str) -> dict[str, Any] | None:
        text = ANSI.sub("", raw).rstrip()
        if not text.strip():
            return None
        if stream == "stderr" and TRACEBACK.match(text):
            self.traceback = True
        elif stream == "stderr" and not text[0].isspace():
            self.traceback = False
        entry: dict[str, Any] = {
            "level": "ERROR" if stream == "stderr" and self.traceback else "INFO"
        }
        message = text
        if m := (FLOWER_PSEUDO_JSON.match(text) or FLOWER_LINE.match(text)):
            entry["level"], message = m["level"], m["message"]
        elif m := NAMED_LOGGER.match(text):
            entry.update(level=m["level"], logger=m["logger"])
            message = m["message"]
        elif m := GLOG.match(text):
            entry["level"] = GLOG_LEVELS[m["level"]]
        else:
            entry["level"] = next(
                (lvl for rx, lvl in ANSIBLE_LEVEL if rx.match(text)), entry["level"]
            )
        message = DECORATION.sub("", message).strip()
        if not message:  # Flower's empty spacer lines
            return None
        record = {
            "time": now(),
            "level": entry["level"],
            "component": self.component,
            "message": message,
        }
        if "logger" in entry:
            record["logger"] = entry["logger"]
        record.update(self.event(message, entry["level"]))
        return record

    def event(self, message: str, level: str) -> dict[str, Any]:
        if m := INITIAL.search(message):
            self.elapsed = float(m["elapsed"])
        for name, pattern, types in EVENTS:
            if m := pattern.search(message):
                fields = {
                    k: types.get(k, int if k.endswith("_id") else str)(v)
                    for k, v in m.groupdict().items()
                    if v is not None
                }
                if name == "round_end" and "elapsed" in fields:
                    if self.elapsed is not None:
                        fields["duration"] = round(fields["elapsed"] - self.elapsed, 3)
                    self.elapsed = fields["elapsed"]
                if name == "client_leave":
                    fields["reason"] = "deactivated"
                return {"event": name, **fields}
        if level in ("ERROR", "CRITICAL"):
            return {"event": "error"}
        return {}


def now() -> str:
    # timezone.utc, not UTC (3.11): the python3 of older images runs this too.
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")  # noqa: UP017


def is_json_object(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def pump(source: IO[bytes], stream: str, formatter: Formatter, lock: threading.Lock) -> None:
    for raw in iter(source.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if is_json_object(line.strip()):
            out = line.strip()
        else:
            with lock:
                record = formatter.record(line, stream)
            if record is None:
                continue
            out = json.dumps(record, ensure_ascii=False)
        with lock:
            sys.stdout.write(out + "\n")
            sys.stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] != "--component" or argv[2] != "--":
        print("usage: flower_jsonlines.py --component NAME -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    formatter = Formatter(argv[1])
    # FLOWER_JSONLINES_DIR: where the metrics exporter finds this formatter for the lines it reads.
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "FLOWER_JSONLINES_DIR": os.path.dirname(os.path.abspath(__file__)),
    }
    child = subprocess.Popen(argv[3:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    lock = threading.Lock()
    pumps = [
        threading.Thread(target=pump, args=(child.stdout, "stdout", formatter, lock), daemon=True),
        threading.Thread(target=pump, args=(child.stderr, "stderr", formatter, lock), daemon=True),
    ]
    for thread in pumps:
        thread.start()
    status = child.wait()
    for thread in pumps:  # a grandchild may still hold the pipes: do not wait for it forever
        thread.join(timeout=5)
    return 128 - status if status < 0 else status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
