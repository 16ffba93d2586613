"""A real Prometheus (Debian's ``prometheus``, which ``make bootstrap`` installs) for the tests.

Started on a free loopback port with the given configuration and a temporary database, queried
through its HTTP API, stopped on exit. Used by tests/unit/test_dashboards.py (sample exporters)
and the end-to-end scenario (the metrics exporter of a federation that trains).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

BINARY = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prometheus:
    """``with Prometheus(config, workdir) as prom: prom.query(...)``."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.workdir = workdir
        self.config = config
        self.base = f"http://127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(self.config))
        self._log = (self.workdir / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [
                BINARY,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={self.base.removeprefix('http://')}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.wait_until(lambda: self._ready(), 30, "Prometheus did not get ready")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text()

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=5) as answer:  # noqa: S310
                return answer.status == 200
        except OSError:  # not listening yet, or 503 while it starts
            return False

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.base}/api/v1/{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 (loopback)
                return json.load(answer)
        except urllib.error.HTTPError as err:  # a bad query: 400 with the error in the body
            return json.load(err)

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        """An instant query, now or at the Unix time ``at``."""
        return self.api("query", query=expr, **({"time": str(at)} if at is not None else {}))

    def values(self, expr: str) -> list[float]:
        """The sample values of an instant query (empty when it has no data)."""
        answer = self.query(expr)
        assert answer["status"] == "success", (expr, answer.get("error"))
        return [float(sample["value"][1]) for sample in answer["data"]["result"]]

    def wait_until(self, check: Callable[[], object], timeout: float, what: str) -> object:
        """Poll ``check`` until it returns something true; fail with ``what`` at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            result = check()
            if result:
                return result
            assert time.monotonic() < deadline, f"{what} within {timeout} s"
            time.sleep(0.5)
