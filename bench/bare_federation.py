"""A bare local Flower federation: one ``flower-superlink`` and two ``flower-supernode`` processes.

Shared by the benchmarks (bench/federation.py, bench/exporter_cost.py) and the unit tests that
run Flower for real (tests/unit/test_flower_exporter.py): plain text (``--insecure``), free
loopback ports picked at run time, ``--database`` in a temporary directory, one ``FLWR_HOME``
per process, each process leading its own process group. Optionally the SuperLink's metrics
exporter (roles/superlink/files/flower_exporter.py) runs beside them, and every process may run
under the JSON log wrapper (roles/flower_container/files/flower_jsonlines.py).

Flower >= 1.37 serves every SuperLink API on one port (``--host``/``--port``) and the SuperNode
takes ``--host``/``--port`` for its ClientAppIo API; older releases take one
``--*-api-address`` per API. The demo (demo/sklearn) is submitted with
scripts/flwr_run_check.py. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / "demo" / "sklearn"
RUN_CHECK = ROOT / "scripts" / "flwr_run_check.py"
EXPORTER = ROOT / "roles" / "superlink" / "files" / "flower_exporter.py"
JSONLINES = ROOT / "roles" / "flower_container" / "files" / "flower_jsonlines.py"
READY_TIMEOUT = 60.0  # seconds for the processes to open their ports
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
PORT_NAMES = ("serverappio", "fleet", "control", "clientappio-0", "clientappio-1", "metrics")
VERSION_CODE = "import importlib.metadata as m; print(m.version('flwr'))"


class FederationError(RuntimeError):
    """The federation could not be started (a process died, a port did not open)."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (held together, then released)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def wait_for_ports(
    ports: dict[str, int], procs: dict[str, subprocess.Popen[bytes]], timeout: float
) -> None:
    """Wait until every port accepts connections; fail early if a process died."""
    deadline = time.monotonic() + timeout
    pending = dict(ports)
    while pending:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise FederationError(f"{name} exited with status {proc.returncode} while starting")
        pending = {name: port for name, port in pending.items() if not port_open(port)}
        if not pending:
            return
        if time.monotonic() > deadline:
            raise FederationError(f"ports not open after {timeout:.0f}s: {pending}")
        time.sleep(0.3)


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group has no member left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def stop_group(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """Stop a child started with ``start_new_session=True`` and what it spawned.

    The child leads its own process group (group id == its PID), which also holds the
    processes it started (``flower-superexec`` and the apps it runs). SIGTERM goes to that
    group; whatever is still there after ``grace`` seconds gets SIGKILL.
    """
    pgid = proc.pid
    if not signal_group(pgid, signal.SIGTERM):
        proc.poll()
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if not signal_group(pgid, 0):
            return
        time.sleep(0.2)
    signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def flwr_version(python: Path) -> str | None:
    """The flwr release installed for ``python`` (None when it cannot be told)."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        proc = subprocess.run(
            [str(python), "-c", VERSION_CODE], capture_output=True, text=True, timeout=60
        )
        if proc.returncode == 0:
            return proc.stdout.strip()
    return None


def http_api(version: str | None) -> bool:
    """Flower >= 1.37 serves every SuperLink API on one port (``--host``/``--port``)."""
    return tuple(int(x) for x in (version or "0.0").split(".")[:2]) >= (1, 37)


def flwr_env(bindir: Path, home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Flower processes: the flwr venv's bin first on PATH, own FLWR_HOME."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["FLWR_HOME"] = str(home)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("VIRTUAL_ENV", None)  # the .venv of the caller is not the flwr venv
    env.pop("FL_LOG_FORMAT", None)  # the exporter's log format is its config's
    return env


def demo_command(
    python: Path,
    address: str,
    rounds: int,
    timeout: float,
    json_out: Path | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """scripts/flwr_run_check.py submitting demo/sklearn for ``rounds`` rounds to ``address``."""
    cmd = [str(python), str(RUN_CHECK), str(APP_DIR), "local", "--address", address, *extra]
    cmd += ["--run-config", f"num-server-rounds={rounds}", "--min-rounds", str(rounds)]
    cmd += ["--timeout", f"{timeout:g}"]
    return cmd + (["--json-out", str(json_out)] if json_out else [])


@dataclass
class Federation:
    """The processes of one bare federation; ``start_all`` starts them, ``stop_all`` stops them.

    ``python`` is the flwr venv's python (its bin holds ``flower-superlink`` and
    ``flower-supernode``); ``tmp`` holds the database, the homes and the exporter's config;
    each process ``NAME`` writes its output to ``log_dir/<log_prefix>NAME.log`` (appended).
    ``exporter``: the exporter's config keys over the defaults (None: no exporter).
    ``jsonlines``: every process runs under flower_jsonlines.py (``--component`` superlink,
    supernode, exporter).
    """

    python: Path
    tmp: Path
    version: str | None = None
    log_dir: Path | None = None
    log_prefix: str = ""
    exporter: dict[str, Any] | None = None
    jsonlines: bool = False
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.version is None:
            self.version = flwr_version(self.python)
        if not self.ports:
            self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
        if self.http_api:
            self.ports["fleet"] = self.ports["control"] = self.ports["serverappio"]
        self.log_dir = self.log_dir or self.tmp

    @property
    def http_api(self) -> bool:
        return http_api(self.version)

    @property
    def bindir(self) -> Path:
        return self.python.parent

    @property
    def control_address(self) -> str:
        return f"127.0.0.1:{self.ports['control']}"

    def log(self, name: str) -> Path:
        assert self.log_dir is not None
        return self.log_dir / f"{self.log_prefix}{name}.log"

    def env(self, name: str) -> dict[str, str]:
        """The environment of process (or client) ``name``, with its own FLWR_HOME."""
        home = self.tmp / name
        home.mkdir(parents=True, exist_ok=True)
        return flwr_env(self.bindir, home)

    # ------------------------------------------------------------------ command lines
    def superlink_command(self) -> list[str]:
        p = self.ports
        if self.http_api:
            apis = ["--host", "127.0.0.1", "--port", str(p["serverappio"])]
        else:
            apis = ["--serverappio-api-address", f"127.0.0.1:{p['serverappio']}"]
            apis += ["--fleet-api-address", f"127.0.0.1:{p['fleet']}"]
            apis += ["--control-api-address", f"127.0.0.1:{p['control']}"]
        cmd = [str(self.bindir / "flower-superlink"), "--insecure"]
        return [*cmd, "--database", str(self.tmp / "state.db"), *apis]

    def supernode_command(self, i: int) -> list[str]:
        port = self.ports[f"clientappio-{i}"]
        api = (
            ["--host", "127.0.0.1", "--port", str(port)]
            if self.http_api
            else ["--clientappio-api-address", f"127.0.0.1:{port}"]
        )
        cmd = [str(self.bindir / "flower-supernode"), "--insecure"]
        cmd += ["--superlink", f"127.0.0.1:{self.ports['fleet']}", *api]
        return [*cmd, "--node-config", f"partition-id={i} num-partitions=2"]

    def exporter_command(self) -> list[str]:
        """The exporter with its config (written to ``tmp/exporter.json``)."""
        config = {
            "control_address": self.control_address,
            "http_api": self.http_api,
            "root_certificates": None,
            "listen_address": "127.0.0.1",
            "port": self.ports["metrics"],
            "interval": 15,
            "min_available_nodes": 2,
            "log_format": "text",
        } | (self.exporter or {})
        path = self.tmp / "exporter.json"
        path.write_text(json.dumps(config))
        return [str(self.python), str(EXPORTER), str(path)]

    def demo_command(self, rounds: int, timeout: float, **kwargs: Any) -> list[str]:
        return demo_command(self.python, self.control_address, rounds, timeout, **kwargs)

    # ------------------------------------------------------------------ processes
    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        """Start ``cmd`` as process ``name`` (under the JSON log wrapper if ``jsonlines``)."""
        if self.jsonlines:
            wrapper = [str(self.python), str(JSONLINES), "--component", name.split("-")[0], "--"]
            cmd = [*wrapper, *cmd]
        env = self.env(name)
        with self.log(name).open("ab") as log:
            self.procs[name] = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.tmp / name,
                start_new_session=True,
            )
        return self.procs[name]

    def start_superlink(self, timeout: float = READY_TIMEOUT) -> None:
        proc = self.start("superlink", self.superlink_command())
        ports = {"fleet": self.ports["fleet"], "control": self.ports["control"]}
        wait_for_ports(ports, {"superlink": proc}, timeout)

    def start_all(self, timeout: float = READY_TIMEOUT) -> None:
        """SuperLink (its ports open), two SuperNodes, the exporter if any; every port open."""
        self.start_superlink(timeout)
        ready = {}
        for i in range(2):
            self.start(f"supernode-{i}", self.supernode_command(i))
            ready[f"clientappio-{i}"] = self.ports[f"clientappio-{i}"]
        if self.exporter is not None:
            self.start("exporter", self.exporter_command())
            ready["metrics"] = self.ports["metrics"]
        wait_for_ports(ready, self.procs, timeout)

    def stop(self, name: str, grace: float = STOP_GRACE) -> None:
        stop_group(self.procs.pop(name), grace)

    def stop_all(self, grace: float = STOP_GRACE) -> None:
        """Stop every process still held, the last started first."""
        for name in reversed(list(self.procs)):
            self.stop(name, grace)
