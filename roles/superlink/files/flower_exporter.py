# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
"""Prometheus metrics of a Flower SuperLink, read from its Control API.

Runs next to the SuperLink (in its network namespace, as uid 49999, read-only root, no state
mount) with the Python and ``flwr`` of the SuperLink image plus ``prometheus-client``.
Every ``interval`` seconds it asks the Control API (what ``flwr ls``, ``flwr supernode list``
and ``flwr log`` ask):

* ListRuns (paged where the request has ``limit``/``skip``, Flower >= 1.37): runs by status,
  ``flower_superlink_up``, and the events ``run_started`` / ``run_finished``;
* ListNodes: SuperNodes online and registered; a node whose ``last_deactivated_at`` changed
  went offline: ``client_leave`` (reason ``timeout`` when it went offline when its heartbeat
  lease ran out, ``deactivated`` when it said goodbye), and a timeout counts as a dropout;
* StreamLogs of each running run (and twice more once it finished), from the last timestamp
  read, for at most a few seconds: the ServerApp's log lines give the round (Flower's
  ``[ROUND n/N]``), completed rounds with loss, accuracy and elapsed time (the bundled demos'
  ``ROUND n/N loss=... accuracy=... elapsed=...``) and failures (Flower's strategies'
  ``Received N results and M failures``). A line may be plain text or a JSON object whose
  ``message`` holds the text.

``/metrics`` renders the last snapshot (a scrape never waits for the SuperLink). The series of
a finished run are dropped ``finished_retention`` seconds after it finished (and beyond the
newest ``max_finished_runs``); ``flower_runs`` keeps counting it.

    flower_exporter.py CONFIG.json

CONFIG.json: ``control_address`` ("127.0.0.1:9093"), ``http_api`` (true: Flower >= 1.37's
protobuf-over-HTTP Control API; false: gRPC), ``root_certificates`` (CA file, or null: plain
text), ``listen_address``, ``port``, ``interval`` (15), ``min_available_nodes``,
``log_format`` ("text" or "json"; the environment's ``FL_LOG_FORMAT=json`` also selects JSON).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import re
import signal
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CALL_TIMEOUT = 5.0  # seconds for one unary Control API call
LOG_WAIT = 2.0  # seconds a StreamLogs read waits for the first answer
PAGE = 100  # runs per ListRuns page (Flower >= 1.37)
FINAL_LOG_READS = 2  # reads of a run's log after it finished (the last lines may come late)
DEFAULT_RETENTION = 3600.0  # seconds the series of a finished run stay
MAX_FINISHED_RUNS = 20  # finished runs whose series stay at most
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
RUN_STATUSES = (
    "pending",
    "starting",
    "running",
    "finished:completed",
    "finished:failed",
    "finished:stopped",
)

# ----------------------------------------------------------------------------- log lines
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf"
# Flower's strategies (Strategy.start): "[ROUND 3/10]"
FLOWER_ROUND_RE = re.compile(r"\[ROUND (?P<round>\d+)(?:/(?P<total>\d+))?\]")
# The bundled demos (demo/*/server_app.py): "ROUND 3/10 loss=0.2410 accuracy=0.9444 elapsed=21.03"
DEMO_ROUND_RE = re.compile(
    rf"(?<!\[)\bROUND (?P<round>\d+)/(?P<total>\d+) loss=(?P<loss>{NUM}) "
    rf"accuracy=(?P<acc>{NUM})(?: elapsed=(?P<elapsed>{NUM}))?"
)
DEMO_INITIAL_RE = re.compile(
    rf"\bINITIAL loss=(?P<loss>{NUM}) accuracy=(?P<acc>{NUM})"
    rf"(?: elapsed=(?P<elapsed>{NUM}))?"
)
# Flower's strategies: "aggregate_train: Received 2 results and 0 failures"
FAILURES_RE = re.compile(
    r"\b(?P<phase>\w+): Received (?P<results>\d+) results and (?P<failures>\d+) failures"
)
# Flower's own "json" console mode: {lvl='INFO', time='...', msg='...'}
FLOWER_PSEUDO_JSON_RE = re.compile(r"\bmsg='(?P<msg>.*)'\}\s*$")


def line_text(line: str) -> str:
    """The message of one log line: plain text, or the ``message`` of a JSON object line."""
    text = ANSI_RE.sub("", line).strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            message = obj.get("message", obj.get("msg"))
            return ANSI_RE.sub("", str(message)).strip() if message is not None else ""
        m = FLOWER_PSEUDO_JSON_RE.search(text)
        if m:
            return m["msg"]
    return text


@dataclass
class LogEvent:
    """What one ServerApp log line says (kind: round_start, round_end, initial, failures)."""

    kind: str
    round: int = 0
    total: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    elapsed: float | None = None
    phase: str = ""
    results: int = 0
    failures: int = 0


def parse_line(line: str) -> LogEvent | None:
    """Parse one ServerApp log line (text or JSON); None when it says nothing we count."""
    text = line_text(line)
    if not text:
        return None
    if m := DEMO_ROUND_RE.search(text):
        return LogEvent(
            "round_end",
            round=int(m["round"]),
            total=int(m["total"]),
            loss=float(m["loss"]),
            accuracy=float(m["acc"]),
            elapsed=float(m["elapsed"]) if m["elapsed"] else None,
        )
    if m := FLOWER_ROUND_RE.search(text):
        return LogEvent(
            "round_start", round=int(m["round"]), total=int(m["total"]) if m["total"] else None
        )
    if m := DEMO_INITIAL_RE.search(text):
        return LogEvent(
            "initial",
            loss=float(m["loss"]),
            accuracy=float(m["acc"]),
            elapsed=float(m["elapsed"]) if m["elapsed"] else None,
        )
    if m := FAILURES_RE.search(text):
        return LogEvent(
            "failures",
            phase=m["phase"],
            results=int(m["results"]),
            failures=int(m["failures"]),
        )
    return None


# ---------------------------------------------------------------------------------- logging
class Logger:
    """The exporter's own lines: plain text, or one JSON object per line."""

    def __init__(self, json_format: bool) -> None:
        self.json = json_format
        self.lock = threading.Lock()

    def __call__(self, level: str, message: str, event: str | None = None, **fields: Any) -> None:
        if self.json:
            record: dict[str, Any] = {
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                "level": level,
                "component": "exporter",
                "message": message,
            }
            if event:
                record["event"] = event
            record.update(fields)
            line = json.dumps(record, default=str)
        else:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            line = f"flower-exporter: {level} {message}" + (f" ({extra})" if extra else "")
        self.write(line)

    def write(self, line: str) -> None:
        with self.lock:
            print(line, flush=True)


def serverapp_relogger(log: Logger):
    """With JSON logs, a function that logs one ServerApp line (from StreamLogs) as a JSON
    object with its FL event, or None.

    Flower releases whose SuperExec sends the ServerApp's console output to /dev/null (1.42's
    AutoExecPlugin) leave the ServerApp's events (rounds, loss, accuracy, failures) out of every
    container's log: the exporter, which reads them anyway, writes them. The formatter is the
    containers' JSON log wrapper (flower_jsonlines.py, which runs this program and says where it
    is), so both write the same events.
    """
    try:
        from flwr.supercore.superexec.plugin.base_exec_plugin import AutoExecPlugin
    except ImportError:  # a release that prints the ServerApp's output
        return None
    where = os.environ.get("FLOWER_JSONLINES_DIR")
    if not (log.json and where and getattr(AutoExecPlugin, "suppress_output", False)):
        return None
    sys.path.insert(0, where)
    from flower_jsonlines import Formatter

    formatters: dict[int, Any] = {}

    def relog(line: str, run_id: int) -> None:
        formatter = formatters.setdefault(run_id, Formatter("serverapp"))
        record = formatter.record(line_text(line), "stdout")
        if record is not None:
            log.write(json.dumps({**record, "run_id": run_id}, default=str))

    return relog


# ------------------------------------------------------------------------------ Control API
class ControlClient:
    """ListRuns, ListNodes and short StreamLogs reads, over gRPC (Flower < 1.37) or Flower's
    protobuf-over-HTTP Control API (>= 1.37). Every call has a deadline."""

    def __init__(self, config: dict) -> None:
        self.address = config["control_address"]
        self.http_api = bool(config["http_api"])
        self.ca = config.get("root_certificates") or None
        self._open()

    def _open(self) -> None:
        if self.http_api:
            import httpx  # flwr >= 1.37 depends on it
            from flwr.supercore.control import ControlHttpClient

            scheme = "https" if self.ca else "http"
            self.base = f"{scheme}://{self.address}"
            verify: ssl.SSLContext | bool = (
                ssl.create_default_context(cafile=self.ca) if self.ca else False
            )
            self.client = ControlHttpClient(self.base, verify=verify, timeout=CALL_TIMEOUT)
            self.http = httpx.Client(verify=verify, timeout=CALL_TIMEOUT)
        else:
            from flwr.common.grpc import create_channel
            from flwr.proto.control_pb2_grpc import ControlStub

            ca = Path(self.ca).read_bytes() if self.ca else None
            self.channel = create_channel(
                server_address=self.address, insecure=ca is None, root_certificates=ca
            )
            self.stub = ControlStub(self.channel)

    def reset(self) -> None:
        """A fresh connection (a gRPC channel in reconnect back-off would lag a restart)."""
        self.close()
        self._open()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing what may be broken
            if self.http_api:
                self.client.close()
                self.http.close()
            else:
                self.channel.close()

    def list_runs(self) -> dict[int, Any]:
        from flwr.proto.control_pb2 import ListRunsRequest

        paged = "limit" in ListRunsRequest.DESCRIPTOR.fields_by_name
        runs: dict[int, Any] = {}
        skip = 0
        while True:
            request = ListRunsRequest(limit=PAGE, skip=skip) if paged else ListRunsRequest()
            if self.http_api:
                answer = self.client.ListRuns(request)
            else:
                answer = self.stub.ListRuns(request, timeout=CALL_TIMEOUT)
            runs.update(answer.run_dict)
            if not paged or len(answer.run_dict) < PAGE or skip > 100_000:
                return runs
            skip += PAGE

    def list_nodes(self) -> list[Any]:
        from flwr.proto.control_pb2 import ListNodesRequest

        if self.http_api:
            return list(self.client.ListNodes(ListNodesRequest()).nodes_info)
        return list(self.stub.ListNodes(ListNodesRequest(), timeout=CALL_TIMEOUT).nodes_info)

    def read_logs(self, run_id: int, after: float) -> tuple[str, float | None, bool]:
        """(new log text, its latest timestamp, whether the stream ended: the run finished).

        The SuperLink answers everything logged after ``after`` at once, then waits for more
        while the run runs: the first answer is taken and the stream closed; no answer within
        LOG_WAIT seconds means nothing new.
        """
        from flwr.proto.control_pb2 import StreamLogsRequest, StreamLogsResponse

        request = StreamLogsRequest(run_id=run_id, after_timestamp=after)
        if not self.http_api:
            import grpc

            call = self.stub.StreamLogs(request, timeout=LOG_WAIT)
            try:
                for answer in call:
                    call.cancel()
                    return answer.log_output, answer.latest_timestamp, False
            except grpc.RpcError as err:
                if err.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                    return "", None, False
                raise
            return "", None, True

        import httpx
        from flwr.supercore.protobuf.constants import (
            FRAME_HEADER_SIZE,
            PROTOBUF_MEDIA_TYPE,
            PROTOBUF_STREAM_MEDIA_TYPE,
        )

        deadline = time.monotonic() + LOG_WAIT
        headers = {
            "content-type": PROTOBUF_MEDIA_TYPE,
            "accept": PROTOBUF_STREAM_MEDIA_TYPE,
            "accept-encoding": "identity",
        }
        timeout = httpx.Timeout(CALL_TIMEOUT, read=LOG_WAIT)
        url = f"{self.base}/v1/control/stream-logs"
        body = request.SerializeToString()
        try:
            with self.http.stream(
                "POST", url, content=body, headers=headers, timeout=timeout
            ) as response:
                response.raise_for_status()
                buffer = bytearray()
                for chunk in response.iter_raw():
                    buffer.extend(chunk)
                    if len(buffer) >= FRAME_HEADER_SIZE:
                        size = int.from_bytes(buffer[:FRAME_HEADER_SIZE], "big")
                        if len(buffer) >= FRAME_HEADER_SIZE + size:
                            answer = StreamLogsResponse()
                            answer.ParseFromString(
                                bytes(buffer[FRAME_HEADER_SIZE : FRAME_HEADER_SIZE + size])
                            )
                            return answer.log_output, answer.latest_timestamp, False
                    if time.monotonic() > deadline:
                        return "", None, False
        except httpx.ReadTimeout:
            return "", None, False
        return "", None, True


# ----------------------------------------------------------------------------------- state
def iso_seconds(text: str) -> float | None:
    """POSIX seconds of one of Flower's ISO-8601 time strings ("" or junk: None)."""
    if not text:
        return None
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def run_status(run: Any) -> str:
    status, sub = run.status.status, run.status.sub_status
    return f"{status}:{sub}" if status == "finished" and sub else status


@dataclass
class RunState:
    """What the exporter knows of one run."""

    run_id: int
    status: str = ""
    after: float = 0.0  # the latest log timestamp read
    partial: str = ""  # a log line not yet ended
    round_current: int = 0
    rounds_completed: int = 0
    last_loss: float | None = None
    last_accuracy: float | None = None
    last_elapsed: float | None = None
    failures: int = 0
    final_reads: int = FINAL_LOG_READS
    finished_at: float | None = None  # monotonic, when we saw it finished
    track: bool = True  # read its log and publish its series


@dataclass
class Snapshot:
    """The values /metrics renders; replaced as a whole after each poll."""

    up: bool = False
    connected: int | None = None
    registered: int | None = None
    runs: dict[str, int] | None = None
    per_run: list[dict[str, Any]] = field(default_factory=list)
    dropouts: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0


class Exporter:
    """The poller (one thread) and the collector (/metrics) around the last snapshot."""

    def __init__(self, config: dict, log: Logger, client: ControlClient | None = None) -> None:
        self.config = config
        self.log = log
        self.client = client or ControlClient(config)
        self.flower_version = flower_version()
        self.min_available = int(config.get("min_available_nodes") or 0)
        self.retention = float(config.get("finished_retention", DEFAULT_RETENTION))
        self.runs: dict[int, RunState] = {}
        self.nodes: dict[int, tuple[str, str, float]] = {}
        self.first_poll = True
        self.was_up: bool | None = None
        self.dropouts = 0
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.snapshot = Snapshot()
        self.relog = serverapp_relogger(log)

    # ------------------------------------------------------------------ polling
    def poll(self) -> None:
        """One cycle; never raises (a failing SuperLink is ``flower_superlink_up 0``)."""
        try:
            runs = self.client.list_runs()
            nodes = self.client.list_nodes()
        except Exception as err:
            if self.was_up is not False:
                self.log("WARNING", f"SuperLink Control API not answering: {short(err)}")
            self.was_up = False
            self.client.reset()
            self.publish(up=False)
            return
        if self.was_up is not True:
            self.log("INFO", f"SuperLink Control API answers at {self.config['control_address']}")
        self.was_up = True
        self.update_runs(runs)
        self.update_nodes(nodes)
        self.first_poll = False
        for state in list(self.runs.values()):
            self.read_run_logs(state)
        self.expire_runs()
        self.publish(
            up=True,
            connected=sum(1 for n in nodes if n.status == "online"),
            registered=sum(1 for n in nodes if n.status != "unregistered"),
            runs=runs,
        )

    def update_runs(self, runs: dict[int, Any]) -> None:
        for run_id, run in runs.items():
            status = run_status(run)
            state = self.runs.get(run_id)
            if state is None:
                finished = status.startswith("finished")
                state = RunState(run_id, track=not (self.first_poll and finished))
                if finished and self.first_poll:
                    state.final_reads = 0
                    state.finished_at = time.monotonic() - self.retention
                self.runs[run_id] = state
                known_before = not self.first_poll
            else:
                known_before = True
            previous, state.status = state.status, status
            if previous == status:
                continue
            if known_before and status == "running" and previous in ("", "pending", "starting"):
                self.log("INFO", f"run {run_id} started", "run_started", run_id=run_id)
            if status.startswith("finished") and not previous.startswith("finished"):
                state.finished_at = time.monotonic()
                if known_before:
                    started = iso_seconds(run.running_at) or iso_seconds(run.starting_at)
                    ended = iso_seconds(run.finished_at)
                    duration = round(ended - started, 3) if started and ended else None
                    if previous in ("", "pending", "starting"):  # never seen running
                        self.log("INFO", f"run {run_id} started", "run_started", run_id=run_id)
                    self.log(
                        "INFO" if status == "finished:completed" else "WARNING",
                        f"run {run_id} finished: {run.status.sub_status}",
                        "run_finished",
                        run_id=run_id,
                        sub_status=run.status.sub_status,
                        details=run.status.details,
                        duration=duration,
                    )

    def update_nodes(self, nodes: list[Any]) -> None:
        seen = {}
        for node in nodes:
            before = self.nodes.get(node.node_id)
            seen[node.node_id] = (node.status, node.last_deactivated_at, node.online_until)
            if before is None or not node.last_deactivated_at:
                continue
            if node.last_deactivated_at == before[1]:
                continue
            left = iso_seconds(node.last_deactivated_at)
            # A node that said goodbye left before its heartbeat lease (online_until as last
            # seen) ran out; a node that went silent left when the lease ran out.
            timeout = left is None or before[2] <= 0 or left >= before[2] - 1.0
            if timeout:
                self.dropouts += 1
            self.log(
                "WARNING" if timeout else "INFO",
                f"SuperNode {node.node_id} went offline",
                "client_leave",
                node_id=node.node_id,
                reason="timeout" if timeout else "deactivated",
            )
        self.nodes = seen

    def read_run_logs(self, state: RunState) -> None:
        if not state.track:
            return
        running = state.status == "running"
        if not running and not (state.status.startswith("finished") and state.final_reads > 0):
            return
        if not running:
            state.final_reads -= 1
        try:
            text, latest, ended = self.client.read_logs(state.run_id, state.after)
        except Exception as err:
            self.log("WARNING", f"log of run {state.run_id} not readable: {short(err)}")
            return
        if latest is not None:
            state.after = max(state.after, latest)
        lines = (state.partial + text).split("\n")
        state.partial = lines.pop()
        if ended or not running:
            lines.append(state.partial)
            state.partial = ""
        for line in lines:
            if self.relog is not None:
                self.relog(line, state.run_id)
            event = parse_line(line)
            if event is not None:
                self.apply(state, event)

    def apply(self, state: RunState, event: LogEvent) -> None:
        if event.kind == "round_start":
            state.round_current = max(state.round_current, event.round)
        elif event.kind == "initial":
            state.last_elapsed = event.elapsed
        elif event.kind == "round_end":
            if event.round <= state.rounds_completed:
                return  # a line seen before (a resumed stream)
            state.round_current = max(state.round_current, event.round)
            state.rounds_completed = event.round
            state.last_loss, state.last_accuracy = event.loss, event.accuracy
            if event.elapsed is not None:
                seconds = event.elapsed - (state.last_elapsed or 0.0)
                state.last_elapsed = event.elapsed
                if seconds >= 0:
                    self.observe(seconds)
        elif event.kind == "failures":
            state.failures += event.failures

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
        self.buckets[-1] += 1
        self.duration_sum += seconds

    def expire_runs(self) -> None:
        now = time.monotonic()
        finished = sorted(
            (s for s in self.runs.values() if s.track and s.finished_at is not None),
            key=lambda s: s.finished_at or 0.0,
            reverse=True,
        )
        for i, state in enumerate(finished):
            if state.final_reads == 0 and (
                i >= MAX_FINISHED_RUNS or now - (state.finished_at or now) > self.retention
            ):
                state.track = False

    def publish(
        self,
        up: bool,
        connected: int | None = None,
        registered: int | None = None,
        runs: dict[int, Any] | None = None,
    ) -> None:
        counts = None
        if runs is not None:
            counts = dict.fromkeys(RUN_STATUSES, 0)
            for run in runs.values():
                status = run_status(run)
                counts[status] = counts.get(status, 0) + 1
        per_run = [
            {
                "run_id": str(s.run_id),
                "running": s.status == "running",
                "round_current": s.round_current,
                "rounds_completed": s.rounds_completed,
                "loss": s.last_loss,
                "accuracy": s.last_accuracy,
                "failures": s.failures,
            }
            for s in self.runs.values()
            if s.track
        ]
        self.snapshot = Snapshot(
            up=up,
            connected=connected,
            registered=registered,
            runs=counts,
            per_run=per_run,
            dropouts=self.dropouts,
            buckets=list(self.buckets),
            duration_sum=self.duration_sum,
        )

    # ---------------------------------------------------------------- rendering
    def collect(self):
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            InfoMetricFamily,
        )

        def gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, help_text, value=value)

        snap = self.snapshot
        yield gauge(
            "flower_superlink_up",
            "1 when the SuperLink's Control API answered the exporter's last query, else 0.",
            1 if snap.up else 0,
        )
        info = InfoMetricFamily("flower_build", "The Flower release the SuperLink runs (value 1).")
        info.add_metric([], {"flower_version": self.flower_version})
        yield info
        yield gauge(
            "flower_min_available_nodes",
            "SuperNodes the bundled apps' strategy waits for before a round starts.",
            self.min_available,
        )
        if snap.connected is not None:
            yield gauge(
                "flower_supernodes_connected",
                "SuperNodes online now (sending heartbeats).",
                snap.connected,
            )
        if snap.registered is not None:
            yield gauge(
                "flower_supernodes_registered",
                "SuperNodes registered with the SuperLink (online, offline or not yet connected).",
                snap.registered,
            )
        if snap.runs is not None:
            runs = GaugeMetricFamily(
                "flower_runs", "Runs the SuperLink's state holds, by status.", labels=["status"]
            )
            for status, count in snap.runs.items():
                runs.add_metric([status], count)
            yield runs
        current = GaugeMetricFamily(
            "flower_round_current",
            "The round a running run is in (0 before its first round); no series once it finishes.",
            labels=["run_id"],
        )
        completed = CounterMetricFamily(
            "flower_rounds_completed_total", "Rounds a run has completed.", labels=["run_id"]
        )
        loss = GaugeMetricFamily(
            "flower_last_round_loss",
            "Loss of a run's last completed round, as the bundled apps evaluate it.",
            labels=["run_id"],
        )
        accuracy = GaugeMetricFamily(
            "flower_last_round_accuracy_ratio",
            "Accuracy (0 to 1) of a run's last completed round, as the bundled apps evaluate it.",
            labels=["run_id"],
        )
        failures = CounterMetricFamily(
            "flower_node_failures_total",
            "Replies to a run's instructions that carried an error or never came.",
            labels=["run_id"],
        )
        for run in snap.per_run:
            labels = [run["run_id"]]
            if run["running"]:
                current.add_metric(labels, run["round_current"])
            completed.add_metric(labels, run["rounds_completed"])
            failures.add_metric(labels, run["failures"])
            if run["loss"] is not None:
                loss.add_metric(labels, run["loss"])
            if run["accuracy"] is not None:
                accuracy.add_metric(labels, run["accuracy"])
        yield from (current, completed, loss, accuracy, failures)
        bounds = [str(float(b)) for b in DURATION_BUCKETS] + ["+Inf"]
        yield HistogramMetricFamily(
            "flower_round_duration_seconds",
            "Duration of completed rounds.",
            buckets=list(zip(bounds, snap.buckets, strict=True)),
            sum_value=snap.duration_sum,
        )
        dropouts = CounterMetricFamily(
            "flower_supernode_dropouts_total",
            "Times a SuperNode went from online to offline (missed heartbeats).",
        )
        dropouts.add_metric([], snap.dropouts)
        yield dropouts


def short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300]


def flower_version() -> str:
    try:
        return importlib.metadata.version("flwr")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------------------ main
def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: flower_exporter.py CONFIG.json", file=sys.stderr)
        return 2
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    config = json.loads(Path(argv[0]).read_text())
    json_logs = "json" in (config.get("log_format"), os.environ.get("FL_LOG_FORMAT"))
    log = Logger(json_logs)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    exporter = Exporter(config, log)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter)
    # The exporter's own CPU, memory and start time (process_*): its cost, and its restarts.
    ProcessCollector(registry=registry)
    exporter.publish(up=False)
    listen = config.get("listen_address", "0.0.0.0")  # noqa: S104 (in the SuperLink's netns)
    port = int(config.get("port", 9101))
    start_http_server(port, addr=listen, registry=registry)
    interval = float(config.get("interval") or 15)
    log(
        "INFO",
        f"serving /metrics on {listen}:{port}; polling the Control API at "
        f"{config['control_address']} ({'HTTP' if config['http_api'] else 'gRPC'}, "
        f"{'TLS' if config.get('root_certificates') else 'plain text'}) every {interval:g}s; "
        f"flwr {exporter.flower_version}",
    )

    def loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                exporter.poll()
            except Exception as err:  # a bug must not freeze the metrics: next poll
                log("ERROR", f"poll failed: {type(err).__name__}: {short(err)}")
                exporter.publish(up=False)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

    threading.Thread(target=loop, name="poller", daemon=True).start()
    while not stop.wait(1.0):
        pass
    log("INFO", "stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
