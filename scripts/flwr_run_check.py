#!/usr/bin/env python3
"""Run a Flower App on a federation with the ``flwr`` CLI and check the result.

Standard library only; run it with the Python of a virtual environment that has ``flwr``
installed (the ``flwr`` executable next to ``sys.executable`` is used, else the one on PATH).

What it does:

1. ``flwr run APP FED --format json`` submits the run (``success`` and ``run-id`` are read from
   the JSON: the ``flwr`` exit status is 0 even on failure in flwr 1.25).
2. While ``flwr log RUN_ID APP FED --stream`` follows the ServerApp log, ``flwr ls APP FED
   --run-id RUN_ID --format json`` is polled until the status starts with ``finished:``. New
   progress lines are printed as they appear.
3. The complete log is fetched with ``flwr log RUN_ID APP FED --show`` and parsed.
4. Checks: status is ``finished:completed``; at least ``--min-rounds`` rounds; final accuracy
   ``> --min-accuracy``; final accuracy ``>`` the first round's accuracy (with a single round:
   ``>`` the initial model's accuracy, from the ``INITIAL`` line).

Two generations of the ``flwr`` CLI are supported; which one is installed is detected from the
usage line of ``flwr ls --help`` (``[APP] [FEDERATION]`` or ``[SUPERLINK]``), falling back to
``flwr --version`` (1.26 is the first of the new kind):

* flwr <= 1.25: the SuperLink is the federation ``FED`` of ``APP/pyproject.toml``
  (``[tool.flwr.federations.FED]``); ``--address``/``--root-certificates`` become
  ``--federation-config`` overrides, so the federation must already declare those keys.
* flwr >= 1.26: the SuperLink is a *connection* ``[superlink.FED]`` in
  ``$FLWR_HOME/config.toml``, and ``flwr ls``/``flwr log`` take only ``[SUPERLINK]``.
  If the app declares ``[tool.flwr.federations.FED]`` or ``--address`` is given, that
  connection is written to a temporary ``FLWR_HOME`` (the federation's keys, then ``--address``
  and ``--root-certificates`` on top; a relative certificate path is resolved against ``APP``),
  so the user's own ``~/.flwr`` is neither read nor written. Otherwise ``FED`` must name a
  connection in the user's Flower configuration (``$FLWR_HOME/config.toml``, else
  ``~/.flwr/config.toml``), which must exist: the checker does not let flwr create it.
  ``flwr run`` of an app whose ``pyproject.toml`` still has ``[tool.flwr.federations]`` moves
  that table into the Flower configuration and comments it out in the app (a one-way
  migration), so the app is submitted from a temporary copy without that table; the app
  directory itself is never modified. All CLI calls run in the temporary directory, because
  these versions also look for a ``pyproject.toml`` in the working directory.

Progress lines written by the ServerApp (see demo/sklearn), ANSI colour codes and the log
prefix (``INFO :``) may surround them::

    INITIAL loss=2.3026 accuracy=0.1000 elapsed=0.01
    ROUND 1/3 loss=0.3240 accuracy=0.9083 elapsed=10.52

``elapsed`` (seconds since the ServerApp started its strategy) is optional.

Timing in the result:

* ``seconds_total``: ``elapsed`` of the run in ``flwr ls --format json`` (SuperLink-side,
  from ``running-at`` to ``finished-at``, sub-second precision; includes ServerApp start-up).
* ``seconds_per_round``: from the ServerApp's own ``elapsed`` stamps,
  ``(elapsed of last round - elapsed of INITIAL) / rounds``. Without stamps, the times at which
  the round lines arrived through the log stream are used, and as a last resort
  ``seconds_total / rounds``. ``timing_source`` says which one was used.
* ``rounds[].t``: the ``elapsed`` stamp of that round (else its arrival time, seconds after
  submission).

Exit status: 0 all checks passed; 1 a check failed (run failed, too few rounds, accuracy);
2 the run could not be submitted or followed (CLI error, timeout, bad arguments). A run that
overruns ``--timeout`` is stopped (``flwr stop``) before the failure is reported, so that
nothing is left running on the SuperLink.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf"
ROUND_RE = re.compile(
    rf"\bROUND (?P<round>\d+)/(?P<total>\d+) loss=(?P<loss>{NUM}) accuracy=(?P<acc>{NUM})"
    rf"(?: elapsed=(?P<elapsed>{NUM}))?"
)
INITIAL_RE = re.compile(
    rf"\bINITIAL loss=(?P<loss>{NUM}) accuracy=(?P<acc>{NUM})(?: elapsed=(?P<elapsed>{NUM}))?"
)

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_ERROR = 2

CLI_TIMEOUT = 60.0  # seconds for one short flwr call (run submission, ls, log --show)
# First flwr release that reads SuperLink connections from $FLWR_HOME/config.toml (only used
# when the usage line of `flwr ls --help` names neither FEDERATION nor SUPERLINK).
CONNECTIONS_SINCE = (1, 26)
# Not copied into the temporary app copy (flwr >= 1.26): never part of a FAB.
APP_COPY_IGNORE = (".flwr", ".git", "__pycache__", ".venv*", "*.fab", ".*_cache")


class CliError(RuntimeError):
    """A flwr CLI call failed, timed out, or answered something unexpected."""


@dataclass
class RoundResult:
    """One per-round progress line of the ServerApp."""

    round: int
    total: int
    loss: float
    accuracy: float
    elapsed: float | None = None


@dataclass
class ParsedLog:
    """Everything the parser found in a ServerApp log."""

    rounds: list[RoundResult] = field(default_factory=list)
    initial: RoundResult | None = None


def strip_ansi(text: str) -> str:
    """Remove ANSI escape sequences (flwr logs are always coloured)."""
    return ANSI_RE.sub("", text)


def parse_line(line: str) -> RoundResult | None:
    """Parse one log line; return a RoundResult (round 0 for INITIAL) or None."""
    clean = strip_ansi(line)
    m = ROUND_RE.search(clean)
    if m:
        return RoundResult(
            round=int(m["round"]),
            total=int(m["total"]),
            loss=float(m["loss"]),
            accuracy=float(m["acc"]),
            elapsed=float(m["elapsed"]) if m["elapsed"] else None,
        )
    m = INITIAL_RE.search(clean)
    if m:
        return RoundResult(
            round=0,
            total=0,
            loss=float(m["loss"]),
            accuracy=float(m["acc"]),
            elapsed=float(m["elapsed"]) if m["elapsed"] else None,
        )
    return None


def parse_log(text: str) -> ParsedLog:
    """Parse a whole log; a round seen twice keeps its last line. Rounds come out sorted."""
    by_round: dict[int, RoundResult] = {}
    initial: RoundResult | None = None
    for line in text.splitlines():
        res = parse_line(line)
        if res is None:
            continue
        if res.round == 0:
            initial = res
        else:
            by_round[res.round] = res
    return ParsedLog(rounds=[by_round[k] for k in sorted(by_round)], initial=initial)


def check_rounds(
    parsed: ParsedLog, min_rounds: int, min_accuracy: float, improvement: bool = True
) -> tuple[bool, list[str]]:
    """Apply the pass criteria; return (passed, reasons for failure)."""
    rounds = parsed.rounds
    reasons: list[str] = []
    if len(rounds) < min_rounds:
        reasons.append(f"only {len(rounds)} round(s) found in the log, expected >= {min_rounds}")
    if not rounds:
        reasons.append("no round line found in the ServerApp log")
        return False, reasons
    final = rounds[-1]
    if not final.accuracy > min_accuracy:
        reasons.append(
            f"final accuracy {final.accuracy:.4f} (round {final.round}) "
            f"is not > --min-accuracy {min_accuracy:.4f}"
        )
    if not improvement:
        return not reasons, reasons
    if len(rounds) >= 2:
        base, base_name = rounds[0].accuracy, f"round {rounds[0].round}"
    elif parsed.initial is not None:
        base, base_name = parsed.initial.accuracy, "the initial model"
    else:
        base, base_name = None, ""
    if base is None:
        reasons.append("cannot check improvement: one round and no INITIAL line")
    elif not final.accuracy > base:
        reasons.append(
            f"accuracy did not improve: final {final.accuracy:.4f} (round {final.round}) "
            f"is not > {base:.4f} ({base_name})"
        )
    return not reasons, reasons


def seconds_per_round(
    parsed: ParsedLog, arrivals: dict[int, float], seconds_total: float | None
) -> tuple[float | None, str]:
    """Seconds per round and where the number comes from (see module docstring)."""
    rounds = parsed.rounds
    if not rounds:
        return None, "none"
    n = len(rounds)
    last = rounds[-1]
    if last.elapsed is not None:
        start = parsed.initial.elapsed if parsed.initial and parsed.initial.elapsed else 0.0
        return (last.elapsed - start) / n, "serverapp-elapsed"
    if len(arrivals) >= 2:
        seen = sorted(arrivals.items())
        (r0, t0), (r1, t1) = seen[0], seen[-1]
        if r1 > r0:
            return (t1 - t0) / (r1 - r0), "stream-arrival"
    if seconds_total is not None:
        return seconds_total / n, "flwr-ls-elapsed"
    return None, "none"


# --------------------------------------------------------------------------------------------
# flwr CLI
# --------------------------------------------------------------------------------------------


def find_flwr() -> str:
    """The flwr executable next to this interpreter, else the one on PATH."""
    candidate = Path(sys.executable).parent / "flwr"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("flwr")
    if found is None:
        raise CliError(f"no flwr executable next to {sys.executable} nor on PATH")
    return found


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for flwr calls: no telemetry or update check, unbuffered output (for
    --stream via a pipe), plus ``extra`` (a temporary FLWR_HOME)."""
    env = dict(os.environ)
    env.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    env.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")  # flwr >= 1.28 asks api.flower.ai
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def toml_string(value: str) -> str:
    """Quote a value as a TOML basic string, as --federation-config needs (addr="h:p")."""
    if '"' in value or "\\" in value or any(c.isspace() and c != " " for c in value):
        raise ValueError(f"unsupported character in federation config value: {value!r}")
    return f'"{value}"'


def federation_overrides(address: str | None, root_certificates: str | None) -> list[str]:
    """``--federation-config`` arguments. Only keys present in the federation can be set."""
    args: list[str] = []
    if address:
        args += ["--federation-config", f"address={toml_string(address)}"]
    if root_certificates:
        path = str(Path(root_certificates).resolve())
        args += ["--federation-config", f"root-certificates={toml_string(path)}"]
    return args


# ---- which flwr CLI generation --------------------------------------------------------------

VERSION_RE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
USAGE_RE = re.compile(r"Usage:\s*flwr\s+\S+\s+(?P<args>.*)")


def parse_flwr_version(text: str) -> tuple[int, ...] | None:
    """``Flower version: 1.41.0`` (``flwr --version``) -> (1, 41, 0); None if absent."""
    m = VERSION_RE.search(strip_ansi(text))
    if m is None:
        return None
    return tuple(int(part) for part in m.groups() if part is not None)


def usage_arguments(help_text: str) -> list[str] | None:
    """Argument names of the ``Usage:`` line of ``flwr <cmd> --help``.

    ``Usage: flwr ls [OPTIONS] [APP] [FEDERATION]`` -> ``["APP", "FEDERATION"]``; None if
    there is no usage line.
    """
    for line in strip_ansi(help_text).splitlines():
        m = USAGE_RE.search(line)
        if m:
            names = (word.strip("[]") for word in m["args"].split())
            return [n for n in names if n and n != "OPTIONS" and not n.startswith("...")]
    return None


def uses_superlink_connections(ls_usage: list[str] | None, version: tuple[int, ...] | None) -> bool:
    """True for a flwr CLI that addresses SuperLink connections from $FLWR_HOME/config.toml
    (``flwr ls [SUPERLINK]``), False for the pyproject federations of flwr <= 1.25
    (``flwr ls [APP] [FEDERATION]``). The usage line decides; the version breaks a tie."""
    if ls_usage is not None:
        if "SUPERLINK" in ls_usage:
            return True
        if "FEDERATION" in ls_usage:
            return False
    return version is not None and version >= CONNECTIONS_SINCE


# ---- SuperLink connection for flwr >= 1.26 --------------------------------------------------

BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_key(key: str) -> str:
    """A TOML key: bare if possible, else a quoted string."""
    return key if BARE_KEY_RE.match(key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """A TOML value for a str, bool, int, float or list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ValueError(f"unsupported value in a SuperLink connection: {value!r}")


def superlink_connection(
    federation: dict[str, Any] | None,
    app_dir: Path,
    address: str | None,
    root_certificates: str | None,
) -> dict[str, Any] | None:
    """The ``[superlink.<name>]`` table for flwr >= 1.26, or None (use the user's config).

    Starts from the app's ``[tool.flwr.federations.<name>]`` (as flwr's own migration does:
    a relative ``root-certificates`` is resolved against the app directory, a federation with
    ``options`` but no ``address`` is the local simulation ``:local:``) and sets ``address`` /
    ``root-certificates`` from the command line on top.
    """
    if federation is None and not address:
        return None
    conn = dict(federation or {})
    if "options" in conn and "address" not in conn:
        conn["address"] = ":local:"
    certs = conn.get("root-certificates")
    if isinstance(certs, str) and not Path(certs).expanduser().is_absolute():
        conn["root-certificates"] = str((app_dir / certs).expanduser().resolve())
    if address:
        conn["address"] = address
    if root_certificates:
        conn["root-certificates"] = str(Path(root_certificates).expanduser().resolve())
    return conn


def flower_config_toml(name: str, conn: dict[str, Any]) -> str:
    """A ``$FLWR_HOME/config.toml`` with the one connection ``name`` as default.

    Nested tables (``options``) are written as dotted keys, as flwr itself writes them.
    """

    def flat(prefix: str, table: dict[str, Any]) -> list[str]:
        lines: list[str] = []
        for key, value in table.items():
            dotted = f"{prefix}{toml_key(str(key))}"
            if isinstance(value, dict):
                lines += flat(dotted + ".", value)
            else:
                lines.append(f"{dotted} = {toml_value(value)}")
        return lines

    body = "\n".join(flat("", conn))
    return f"[superlink]\ndefault = {json.dumps(name)}\n\n[superlink.{toml_key(name)}]\n{body}\n"


TABLE_HEADER_RE = re.compile(r"^\s*\[\[?\s*(?P<name>[^\]]+?)\s*\]\]?\s*(?:#.*)?$")


def strip_federations(pyproject_text: str) -> str:
    """``pyproject.toml`` text without the ``[tool.flwr.federations...]`` tables.

    Works on table headers (the only way ``pyproject.toml`` files of Flower apps declare
    federations); a federations table written inline under ``[tool.flwr]`` is not handled.
    """
    out: list[str] = []
    skipping = False
    for line in pyproject_text.splitlines(keepends=True):
        m = TABLE_HEADER_RE.match(line)
        if m:
            name = re.sub(r"\s*\.\s*", ".", m["name"]).replace('"', "")
            skipping = name == "tool.flwr.federations" or name.startswith("tool.flwr.federations.")
        if not skipping:
            out.append(line)
    return "".join(out)


# ---- calling flwr ---------------------------------------------------------------------------


@dataclass
class FlwrCli:
    """How to call the installed flwr CLI for one app and federation/connection.

    ``run_target``: the APP and FEDERATION/SUPERLINK arguments of ``flwr run``;
    ``admin_target``: those of ``flwr ls``/``flwr log``; ``overrides``: ``--federation-config``
    arguments (flwr <= 1.25); ``env``/``cwd``: temporary FLWR_HOME and working directory.
    """

    exe: str
    version: str
    connections: bool
    run_target: list[str]
    admin_target: list[str]
    overrides: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def run_cmd(self, run_config: str | None) -> list[str]:
        cmd = [self.exe, "run", *self.run_target, "--format", "json", *self.overrides]
        return cmd + (["--run-config", run_config] if run_config else [])

    def ls_cmd(self, run_id: str | None = None) -> list[str]:
        """``flwr ls`` of one run, or of every run the SuperLink knows without ``run_id``."""
        selection = ["--run-id", run_id] if run_id else []
        target = self.admin_target
        return [self.exe, "ls", *target, *selection, "--format", "json", *self.overrides]

    def log_cmd(self, run_id: str, follow: bool) -> list[str]:
        mode = "--stream" if follow else "--show"
        return [self.exe, "log", run_id, *self.admin_target, mode, *self.overrides]

    def stop_cmd(self, run_id: str) -> list[str]:
        return [self.exe, "stop", run_id, *self.admin_target, "--format", "json", *self.overrides]

    def call(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run one flwr command with a timeout."""
        try:
            return subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=cli_env(self.env),
                cwd=self.cwd,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise CliError(f"timed out after {timeout:.0f}s: {' '.join(cmd)}") from err

    def json(self, cmd: list[str], timeout: float = CLI_TIMEOUT) -> dict[str, Any]:
        """Run a flwr command with ``--format json`` and return the JSON object it prints."""
        proc = self.call(cmd, timeout)
        out = strip_ansi(proc.stdout)
        start = out.find("{")
        if start < 0:
            raise CliError(
                f"no JSON from {' '.join(cmd)} (rc {proc.returncode}): "
                f"{(out + proc.stderr).strip()[-2000:]}"
            )
        try:
            data, _ = json.JSONDecoder().raw_decode(out[start:])
        except json.JSONDecodeError as err:
            raise CliError(f"invalid JSON from {' '.join(cmd)}: {err}: {out[-2000:]}") from err
        if not isinstance(data, dict):
            raise CliError(f"unexpected JSON from {' '.join(cmd)}: {data!r}")
        return data

    def follow(self, run_id: str) -> LogFollower:
        """``flwr log RUN_ID ... --stream`` in the background."""
        return LogFollower(self.log_cmd(run_id, follow=True), cli_env(self.env), self.cwd)


def user_flwr_home() -> Path:
    """The user's Flower home: ``$FLWR_HOME``, else ``~/.flwr`` (as flwr >= 1.26 finds it)."""
    return Path(os.environ.get("FLWR_HOME") or Path.home() / ".flwr")


def detect_cli(
    exe: str,
    app_dir: Path,
    federation: str,
    address: str | None,
    root_certificates: str | None,
    workdir: Path,
) -> FlwrCli:
    """Find out which flwr CLI ``exe`` is and prepare its arguments (see module docstring)."""
    probe = FlwrCli(exe, "", False, [], [], cwd=str(workdir))
    version_text = probe.call([exe, "--version"], CLI_TIMEOUT).stdout
    help_proc = probe.call([exe, "ls", "--help"], CLI_TIMEOUT)
    version = parse_flwr_version(version_text)
    version_str = ".".join(map(str, version)) if version else strip_ansi(version_text).strip()
    app = str(app_dir.resolve())
    if not uses_superlink_connections(usage_arguments(help_proc.stdout), version):
        overrides = federation_overrides(address, root_certificates)
        return FlwrCli(exe, version_str, False, [app, federation], [app, federation], overrides)

    pyproject = app_dir / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise CliError(f"cannot read {pyproject}: {err}") from err
    federations = project.get("tool", {}).get("flwr", {}).get("federations")
    run_app = app
    if isinstance(federations, dict):
        # keep flwr's one-way migration away from the app: submit a copy without the table
        copy = workdir / "app"
        shutil.copytree(app_dir, copy, ignore=shutil.ignore_patterns(*APP_COPY_IGNORE))
        text = (copy / "pyproject.toml").read_text(encoding="utf-8")
        (copy / "pyproject.toml").write_text(strip_federations(text), encoding="utf-8")
        run_app = str(copy)
    fed_table = federations.get(federation) if isinstance(federations, dict) else None
    conn = superlink_connection(
        fed_table if isinstance(fed_table, dict) else None, app_dir, address, root_certificates
    )
    env: dict[str, str] = {}
    if conn is None:
        # FED must be a connection of the user's own Flower configuration; do not let flwr
        # create a default one there
        user_config = user_flwr_home() / "config.toml"
        if not user_config.is_file():
            raise CliError(
                f"'{federation}' is not a federation in {pyproject} and --address is not"
                f" given, and there is no Flower configuration {user_config} to look it up in"
            )
    else:
        home = workdir / "flwr-home"
        home.mkdir()
        (home / "config.toml").write_text(flower_config_toml(federation, conn), encoding="utf-8")
        env["FLWR_HOME"] = str(home)
    return FlwrCli(
        exe, version_str, True, [run_app, federation], [federation], env=env, cwd=str(workdir)
    )


def cli_error_message(answer: dict[str, Any]) -> str:
    """The ``error-message`` of a failed ``--format json`` answer, without progress chatter."""
    text = strip_ansi(str(answer.get("error-message", answer)))
    noise = {"Loading project configuration...", "Success", ""}
    return " ".join(line.strip() for line in text.splitlines() if line.strip() not in noise)


class LogFollower:
    """``flwr log RUN_ID --stream`` in a child process; lines are read by a thread."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: str | None) -> None:
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=cwd,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line))

    def drain(self) -> list[tuple[float, str]]:
        """Lines received so far (arrival time, text)."""
        out: list[tuple[float, str]] = []
        while True:
            try:
                out.append(self.lines.get_nowait())
            except queue.Empty:
                return out

    def stop(self, grace: float) -> None:
        """Let the stream end by itself within ``grace`` seconds, else terminate it."""
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------------------------
# main flow
# --------------------------------------------------------------------------------------------


def print_round(res: RoundResult, t: float | None) -> None:
    t_txt = f"{t:8.1f}" if t is not None else f"{'-':>8}"
    print(f"{res.round:>5}  {res.loss:8.4f}  {res.accuracy:8.4f}  {t_txt}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Run a Flower App on a federation and check rounds and accuracy.",
        epilog="Exit status: 0 passed, 1 a check failed, 2 error/timeout.",
    )
    p.add_argument("app_dir", type=Path, help="Flower App directory (with pyproject.toml)")
    p.add_argument("federation", help="federation name in the app's pyproject.toml")
    p.add_argument("--address", help="override the federation's Control API address HOST:PORT")
    p.add_argument(
        "--root-certificates",
        help="override the federation's root-certificates (the key must exist there)",
    )
    p.add_argument("--run-config", help="run config overrides, e.g. 'num-server-rounds=5 C=0.5'")
    p.add_argument("--min-rounds", type=int, default=3)
    p.add_argument("--min-accuracy", type=float, default=0.85)
    p.add_argument(
        "--no-improvement",
        action="store_true",
        help="do not require the final accuracy above the first round's (a resumed checkpoint)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="overall limit in seconds")
    p.add_argument("--poll-interval", type=float, default=3.0, help="flwr ls poll interval")
    p.add_argument("--no-stream", action="store_true", help="do not follow the log while running")
    p.add_argument("--json-out", type=Path, help="write the result as JSON to this file")
    p.add_argument(
        "--list-runs",
        action="store_true",
        help="only print the runs the SuperLink knows (flwr ls) as a JSON list, submit nothing",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # flwr >= 1.26: temporary FLWR_HOME, app copy and working directory of the CLI calls
    with tempfile.TemporaryDirectory(prefix="flwr-run-check-") as workdir:
        return check_run(args, Path(workdir))


def list_runs(cli: FlwrCli) -> int:
    """Print every run the SuperLink knows as a JSON list (``--list-runs``)."""
    try:
        listing = cli.json(cli.ls_cmd())
    except CliError as err:
        print(f"FAIL: {err}", file=sys.stderr)
        return EXIT_ERROR
    if not listing.get("success"):
        print(f"FAIL: flwr ls: {cli_error_message(listing)}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(listing.get("runs", []), indent=2))
    return EXIT_OK


def stop_run(cli: FlwrCli, run_id: str, ls_cmd: list[str], wait: float = 60.0) -> str:
    """``flwr stop`` a run that overran, so that nothing is left running; then wait until the
    SuperLink reports it finished. Returns what happened, for the failure message."""
    manual = shlex.join(["flwr", "stop", run_id, *cli.admin_target, *cli.overrides])
    try:
        stopped = cli.json(cli.stop_cmd(run_id))
    except CliError as err:
        return f"flwr stop failed ({err}); stop it with: {manual}"
    if not stopped.get("success"):
        return f"flwr stop failed ({cli_error_message(stopped)}); stop it with: {manual}"
    status, until = "", time.monotonic() + wait
    while time.monotonic() < until:
        try:
            listing = cli.json(ls_cmd)
        except CliError:
            listing = {}
        runs = listing.get("runs") or [{}]
        status = str(runs[0].get("status", ""))
        if status.startswith("finished:"):
            return f"stopped with flwr stop (now {status})"
        time.sleep(1.0)
    return f"flwr stop sent, yet the run is still '{status}'; stop it with: {manual}"


def check_run(args: argparse.Namespace, workdir: Path) -> int:
    """Submit, follow and check one run (steps 1-4 of the module docstring)."""
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    app = str(args.app_dir)
    result: dict[str, Any] = {"run_id": None, "status": None, "rounds": []}

    def finish(code: int, message: str) -> int:
        result["passed"] = code == EXIT_OK
        result["message"] = message
        if args.json_out:
            args.json_out.write_text(json.dumps(result, indent=2) + "\n")
        stream = sys.stdout if code == EXIT_OK else sys.stderr
        print(("PASS: " if code == EXIT_OK else "FAIL: ") + message, file=stream, flush=True)
        return code

    try:
        cli = detect_cli(
            find_flwr(),
            args.app_dir,
            args.federation,
            args.address,
            args.root_certificates,
            workdir,
        )
    except (CliError, ValueError, OSError) as err:
        return finish(EXIT_ERROR, str(err))
    result["flwr_version"] = cli.version
    result["cli_style"] = "superlink-connection" if cli.connections else "pyproject-federation"
    if args.list_runs:
        return list_runs(cli)

    # 1. submit
    cmd = cli.run_cmd(args.run_config)
    try:
        submitted = cli.json(cmd, timeout=min(CLI_TIMEOUT, max(1.0, deadline - time.monotonic())))
    except CliError as err:
        return finish(EXIT_ERROR, f"submission failed: {err}")
    if not submitted.get("success") or not submitted.get("run-id"):
        msg = cli_error_message(submitted)
        if "is not present in the main dictionary" in msg:
            msg += (
                " (--address/--root-certificates can only override keys that the federation"
                f" '{args.federation}' already declares in {app}/pyproject.toml)"
            )
        return finish(EXIT_ERROR, f"flwr run failed: {msg}")
    run_id = str(submitted["run-id"])
    t_submit = time.monotonic()
    result["run_id"] = run_id
    target = "SuperLink connection" if cli.connections else "federation"
    print(
        f"run {run_id} submitted to {target} '{args.federation}' (flwr {cli.version})", flush=True
    )
    print(f"{'round':>5}  {'loss':>8}  {'accuracy':>8}  {'t':>8}", flush=True)

    # 2. follow the log and poll the status
    follower = None
    if not args.no_stream:
        follower = cli.follow(run_id)
    arrivals: dict[int, float] = {}
    printed: set[int] = set()
    ls_cmd = cli.ls_cmd(run_id)
    run_info: dict[str, Any] = {}
    status = ""
    next_poll = 0.0
    try:
        while True:
            if follower is not None:
                for t_line, line in follower.drain():
                    res = parse_line(line)
                    if res is not None and res.round > 0 and res.round not in printed:
                        arrivals[res.round] = t_line - t_submit
                        printed.add(res.round)
                        t_show = res.elapsed if res.elapsed is not None else arrivals[res.round]
                        print_round(res, t_show)
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + args.poll_interval
                try:
                    listing = cli.json(ls_cmd, timeout=min(CLI_TIMEOUT, max(1.0, deadline - now)))
                except CliError as err:
                    print(f"warning: {err}", file=sys.stderr, flush=True)
                    listing = {}
                if listing.get("success") and listing.get("runs"):
                    run_info = listing["runs"][0]
                    status = str(run_info.get("status", ""))
                    result["status"] = status
                    if status.startswith("finished:"):
                        break
                elif listing:
                    print(
                        f"warning: flwr ls: {cli_error_message(listing)}",
                        file=sys.stderr,
                        flush=True,
                    )
            if time.monotonic() >= deadline:
                result["status"] = stop_run(cli, run_id, ls_cmd)
                return finish(
                    EXIT_ERROR,
                    f"timeout after {args.timeout:.0f}s, run {run_id} status '{status}'; "
                    f"{result['status']}",
                )
            time.sleep(0.2)
    finally:
        if follower is not None:
            follower.stop(grace=10.0 if status.startswith("finished:") else 0.0)
            for t_line, line in follower.drain():
                res = parse_line(line)
                if res is not None and res.round > 0 and res.round not in arrivals:
                    arrivals[res.round] = t_line - t_submit

    # 3. authoritative full log
    log_text = ""
    try:
        proc = cli.call(cli.log_cmd(run_id, follow=False), CLI_TIMEOUT)
        log_text = proc.stdout
    except CliError as err:
        print(f"warning: {err}", file=sys.stderr, flush=True)
    parsed = parse_log(log_text)
    for res in parsed.rounds:
        if res.round not in printed:
            print_round(res, res.elapsed if res.elapsed is not None else arrivals.get(res.round))

    elapsed_total = run_info.get("elapsed")
    seconds_total = float(elapsed_total) if isinstance(elapsed_total, (int, float)) else None
    spr, source = seconds_per_round(parsed, arrivals, seconds_total)
    result.update(
        {
            "rounds": [
                {
                    "round": r.round,
                    "loss": r.loss,
                    "accuracy": r.accuracy,
                    "t": r.elapsed if r.elapsed is not None else arrivals.get(r.round),
                }
                for r in parsed.rounds
            ],
            "initial": asdict(parsed.initial) if parsed.initial else None,
            "seconds_total": seconds_total,
            "seconds_per_round": spr,
            "timing_source": source,
            "wall_seconds": time.monotonic() - t0,
            "run": run_info,
        }
    )
    spr_txt = f"{spr:.2f}" if spr is not None else "n/a"
    tot_txt = f"{seconds_total:.2f}" if seconds_total is not None else "n/a"
    print(
        f"run {run_id}: status {status}, {len(parsed.rounds)} round(s), "
        f"{tot_txt} s run time, {spr_txt} s/round ({source})",
        flush=True,
    )

    # 4. checks
    if status != "finished:completed":
        tail = [line for line in strip_ansi(log_text).splitlines() if line.strip()][-15:]
        if tail:
            print("last lines of the ServerApp log:", *tail, sep="\n  ", file=sys.stderr)
        details = str(run_info.get("status-details") or "")  # flwr >= 1.26
        details = f" ({details})" if details and details != "N/A" else ""
        return finish(EXIT_CHECK_FAILED, f"run {run_id} ended with status '{status}'{details}")
    passed, reasons = check_rounds(
        parsed, args.min_rounds, args.min_accuracy, improvement=not args.no_improvement
    )
    if not passed:
        return finish(EXIT_CHECK_FAILED, "; ".join(reasons))
    first, final = parsed.rounds[0], parsed.rounds[-1]
    return finish(
        EXIT_OK,
        f"{len(parsed.rounds)} round(s), final accuracy {final.accuracy:.4f} "
        f"> {args.min_accuracy} (first round {first.accuracy:.4f})",
    )


if __name__ == "__main__":
    sys.exit(main())
