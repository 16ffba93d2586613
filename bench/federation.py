#!/usr/bin/env python3
"""Benchmark: the sklearn demo on bare Flower processes vs. the federation the collection deploys.

In one run it measures

(a) ``native``: one ``flower-superlink`` and two ``flower-supernode`` processes started on this
    host (plain text, free loopback ports picked at run time, one ``FLWR_HOME`` each), and the
    demo (``demo/sklearn``) trained on them with ``scripts/flwr_run_check.py``;
(b) ``containers``: the Molecule ``e2e`` scenario (three "VMs", each with its own Docker
    engine, deployed by ``playbooks/site.yml``) driven step by step under a unique
    ``FLOWER_TEST_ID``: ``create``, ``prepare``, a timed first ``converge`` (fresh VMs, image
    archive loaded), a timed second ``converge`` (idempotent: ``changed=0`` expected), the
    same demo run against the SuperLink VM, and ``destroy`` in any case (unless ``--keep``).

It is a benchmark, not a test: timings are reported, never judged. The exit status is 0 when
every requested measurement was taken and the runs completed (and the second converge changed
nothing), 1 otherwise, 2 on bad arguments. Results go to ``bench/results/federation-<UTC>.json``
and the children's output to ``bench/results/federation-<UTC>-logs/``.

Standard library only; see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bare_federation import (
    READY_TIMEOUT,
    Federation,
    FederationError,
    demo_command,
    flwr_env,
    stop_group,
)
from bare_federation import flwr_version as bare_flwr_version

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
VENV_BIN = ROOT / ".venv" / "bin"
FLOWER_VERSION = os.environ.get("FLOWER_VERSION", "1.42.0")
DEFAULT_FLWR_PYTHON = ROOT / f".venv-flwr-{FLOWER_VERSION}" / "bin" / "python"

CONTROL_PORT_IN_VM = 9093  # the SuperLink role's Control API port
MOLECULE_TIMEOUTS = {  # seconds per Molecule step
    "create": 600,
    "prepare": 900,
    "converge": 1800,
    "destroy": 600,
}
RECAP_DECOR_RE = re.compile(r"^\s*[│|]?\s*")  # Molecule's frame around the playbook output
RECAP_HOST_RE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")
RECAP_COUNTS_RE = re.compile(r"^(?:\w+=\d+\s*)+$")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
IP_FORMAT = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"


class BenchError(RuntimeError):
    """A step of the benchmark could not be carried out."""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def progress(message: str) -> None:
    """One progress line on stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file (for error messages)."""
    try:
        text = ANSI_RE.sub("", path.read_text(errors="replace"))
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class StepResult:
    """One child command run to completion with its output in a log file."""

    rc: int
    seconds: float
    log: Path

    def as_dict(self) -> dict[str, Any]:
        return {"rc": self.rc, "seconds": round(self.seconds, 3), "log": str(self.log)}


def run_logged(
    cmd: list[str], log: Path, env: dict[str, str], timeout: float, cwd: Path = ROOT
) -> StepResult:
    """Run ``cmd`` with stdout/stderr into ``log``; time it; kill it past ``timeout``.

    The return code is 124 after a timeout (as timeout(1) reports it).
    """
    with log.open("wb") as out:
        out.write(("$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            rc = 124
        except BaseException:  # Ctrl-C: do not leave the child behind
            stop_group(proc)
            raise
        seconds = time.monotonic() - start
    return StepResult(rc=rc, seconds=seconds, log=log)


def run_demo(
    flwr_python: Path, address: str, rounds: int, out_dir: Path, name: str, flwr_home: Path
) -> dict[str, Any]:
    """Train the demo with scripts/flwr_run_check.py; return its --json-out plus rc and log."""
    json_out = out_dir / f"{name}-run.json"
    timeout = 120 + 60 * rounds  # flwr_run_check's own limit; ours is a minute more
    cmd = demo_command(flwr_python, address, rounds, timeout, json_out=json_out)
    progress(f"{name}: flwr run against {address} ({rounds} rounds), log {out_dir.name}/")
    step = run_logged(
        cmd, out_dir / f"{name}-run.log", flwr_env(flwr_python.parent, flwr_home), timeout + 60
    )
    result: dict[str, Any] = {}
    if json_out.is_file():
        with contextlib.suppress(json.JSONDecodeError):
            result = json.loads(json_out.read_text())
    result["check_rc"] = step.rc
    result["wall_seconds_client"] = round(step.seconds, 3)
    result["log"] = str(step.log)
    spr = result.get("seconds_per_round")
    spr_txt = f"{spr:.2f} s/round" if isinstance(spr, (int, float)) else "no timing"
    progress(
        f"{name}: run {result.get('run_id')} {result.get('status')}, "
        f"{len(result.get('rounds') or [])} round(s), {spr_txt} (check exit {step.rc})"
    )
    if step.rc != 0:
        print(tail(step.log), file=sys.stderr, flush=True)
    return result


# --------------------------------------------------------------------------------------------
# (a) native processes
# --------------------------------------------------------------------------------------------


def bench_native(flwr_python: Path, rounds: int, log_dir: Path) -> dict[str, Any]:
    """SuperLink + two SuperNodes as processes on this host (bench/bare_federation.py), then
    the demo run."""
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-flwr-") as tmp:
        fed = Federation(flwr_python, Path(tmp), log_dir=log_dir, log_prefix="native-")
        result["ports"] = dict(fed.ports)
        (Path(tmp) / "cli").mkdir()
        try:
            fed.start_all(READY_TIMEOUT)
            for name, proc in fed.procs.items():
                progress(f"native: {name} started, pid {proc.pid}")
            progress(f"native: federation up (Control API {fed.control_address})")
            result["run"] = run_demo(
                flwr_python, fed.control_address, rounds, log_dir, "native", Path(tmp) / "cli"
            )
        except (FederationError, OSError) as err:
            result["error"] = str(err)
            progress(f"native: ERROR {err}")
        finally:
            result["pids"] = {name: proc.pid for name, proc in fed.procs.items()}
            for name in reversed(list(fed.procs)):
                pid = fed.procs[name].pid
                fed.stop(name)
                progress(f"native: {name} (pid {pid}) stopped")
    return result


# --------------------------------------------------------------------------------------------
# (b) containers: the Molecule e2e scenario
# --------------------------------------------------------------------------------------------


def parse_recap(text: str) -> dict[str, dict[str, int]]:
    """Per-host counts of the last PLAY RECAP in an ansible-playbook output.

    Molecule frames the playbook output (``  │ `` in front of each line) and wraps long lines,
    so a host's counts may continue on the next line; both are undone here.
    """
    lines = [RECAP_DECOR_RE.sub("", line).rstrip() for line in ANSI_RE.sub("", text).splitlines()]
    starts = [i for i, line in enumerate(lines) if line.startswith("PLAY RECAP")]
    if not starts:
        return {}
    recap: dict[str, dict[str, int]] = {}
    host = ""
    for line in lines[starts[-1] + 1 :]:
        if not line.strip("*"):  # the header's row of stars, or the blank line after the recap
            if recap:
                break
            continue
        m = RECAP_HOST_RE.match(line)
        if m:
            host = m["host"]
            recap[host] = {}
            line = m["counts"]
        elif not (host and RECAP_COUNTS_RE.match(line)):
            break
        recap[host] |= {key: int(value) for key, value in (p.split("=") for p in line.split())}
    return recap


def molecule_env(test_id: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    env["FLOWER_TEST_ID"] = test_id
    env["FLOWER_VERSION"] = FLOWER_VERSION
    env["MOLECULE_EPHEMERAL_DIRECTORY"] = str(ROOT / ".cache" / "molecule" / test_id / "e2e")
    # Plain text on both sides of the comparison (the native baseline runs --insecure).
    env["FLOWER_E2E_TLS"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"  # fewer wrapped lines in the logs (and in the PLAY RECAP)
    return env


def molecule(step: str, test_id: str, log_dir: Path, label: str | None = None) -> StepResult:
    """``molecule STEP -s e2e``, output into ``containers-LABEL.log``."""
    label = label or step
    log = log_dir / f"containers-{label}.log"
    progress(f"containers: molecule {step} -s e2e ({label}), log {log_dir.name}/{log.name}")
    res = run_logged(
        [str(VENV_BIN / "molecule"), step, "-s", "e2e"],
        log,
        molecule_env(test_id),
        MOLECULE_TIMEOUTS[step],
    )
    progress(f"containers: {label} exit {res.rc} after {res.seconds:.1f} s")
    return res


def converge(test_id: str, log_dir: Path, label: str) -> dict[str, Any]:
    res = molecule("converge", test_id, log_dir, label)
    recap = parse_recap(res.log.read_text(errors="replace"))
    changed = sum(host.get("changed", 0) for host in recap.values()) if recap else None
    failed = sum(host.get("failed", 0) + host.get("unreachable", 0) for host in recap.values())
    progress(f"containers: {label}: changed={changed} over {len(recap)} host(s)")
    if res.rc != 0:
        print(tail(res.log), file=sys.stderr, flush=True)
    return res.as_dict() | {"changed": changed, "failed": failed, "recap": recap}


def superlink_address(test_id: str) -> str:
    name = f"flower-e2e-superlink-{test_id}"
    proc = subprocess.run(
        ["docker", "inspect", "-f", IP_FORMAT, name],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    ip = proc.stdout.strip()
    if proc.returncode != 0 or not ip:
        raise BenchError(f"no address for {name}: {proc.stderr.strip()}")
    return ip


def bench_containers(
    flwr_python: Path, rounds: int, log_dir: Path, keep: bool, test_id: str
) -> dict[str, Any]:
    """create, prepare, converge twice (timed), demo run, destroy (unless --keep).

    ``molecule create`` runs the scenario's prepare playbook itself (its sequence is
    dependency, create, prepare), so the explicit ``prepare`` that follows is a no-op; it is
    kept in case a Molecule version stops doing so.
    """
    result: dict[str, Any] = {"test_id": test_id, "steps": {}}
    steps: dict[str, Any] = result["steps"]
    ephemeral = ROOT / ".cache" / "molecule" / test_id
    try:
        for step in ("create", "prepare"):
            res = molecule(step, test_id, log_dir)
            steps[step] = res.as_dict()
            if res.rc != 0:
                print(tail(res.log), file=sys.stderr, flush=True)
                raise BenchError(f"molecule {step} exited {res.rc}, see {res.log}")
        for key, label in (
            ("converge_first", "converge-first"),
            ("converge_second", "converge-second"),
        ):
            steps[key] = converge(test_id, log_dir, label)
            if steps[key]["rc"] != 0:
                raise BenchError(f"molecule converge ({label}) exited {steps[key]['rc']}")
        ip = superlink_address(test_id)
        result["superlink_address"] = f"{ip}:{CONTROL_PORT_IN_VM}"
        with tempfile.TemporaryDirectory(prefix="bench-flwr-cli-") as home:
            result["run"] = run_demo(
                flwr_python, result["superlink_address"], rounds, log_dir, "containers", Path(home)
            )
    except BenchError as err:
        result["error"] = str(err)
        progress(f"containers: ERROR {err}")
    finally:
        if keep:
            progress(
                f"containers: --keep: left running; remove with FLOWER_TEST_ID={test_id} "
                f"MOLECULE_EPHEMERAL_DIRECTORY={ephemeral / 'e2e'} molecule destroy -s e2e"
            )
        else:
            res = molecule("destroy", test_id, log_dir)
            steps["destroy"] = res.as_dict()
            if res.rc == 0:
                shutil.rmtree(ephemeral, ignore_errors=True)
            else:
                print(tail(res.log), file=sys.stderr, flush=True)
                result.setdefault("error", f"molecule destroy exited {res.rc}, see {res.log}")
    return result


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def command_output(cmd: list[str]) -> str | None:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode == 0:
            return proc.stdout.strip()
    return None


def host_info() -> dict[str, Any]:
    running = command_output(["docker", "ps", "-q"])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "docker_server": command_output(["docker", "version", "-f", "{{.Server.Version}}"]),
        "containers_running_at_start": len(running.split()) if running is not None else None,
    }


def num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "n/a"


def print_table(report: dict[str, Any]) -> None:
    host = report["host"]
    start = " ".join(f"{x:.2f}" for x in host["loadavg_start"])
    end = " ".join(f"{x:.2f}" for x in host.get("loadavg_end", []))
    print()
    print(f"Flower federation benchmark  {report['date']}  flwr {report['flwr_version']}")
    print(
        f"nproc {host['nproc']}  |  load average at start {start}, at end {end}  |  "
        f"containers running at start {host['containers_running_at_start']}"
    )
    print()
    print(f"{'demo/sklearn':<34} {'rounds':>6} {'s/round':>9} {'s total':>9}  status")
    rows = (("(a) native processes", "native"), ("(b) containers (Molecule e2e)", "containers"))
    for label, key in rows:
        part = report.get(key) or {}
        if part.get("skipped"):
            print(f"{label:<34} {'skipped':>6}")
            continue
        run = part.get("run") or {}
        status = run.get("status") or part.get("error") or "no run"
        print(
            f"{label:<34} {len(run.get('rounds') or []):>6} "
            f"{num(run.get('seconds_per_round'), '.2f'):>9} "
            f"{num(run.get('seconds_total'), '.2f'):>9}  {status}"
        )
    print(f"{'ratio (b)/(a), seconds per round':<34} {num(report.get('ratio'), '.2f'):>16}")
    cont = report.get("containers") or {}
    if not cont.get("skipped"):
        steps = cont.get("steps", {})
        print()
        print(f"{'converge (playbooks/site.yml)':<34} {'seconds':>9} {'changed':>9}")
        for label, key in (
            ("first (fresh VMs, image load)", "converge_first"),
            ("second (idempotence)", "converge_second"),
        ):
            step = steps.get(key, {})
            print(
                f"{label:<34} {num(step.get('seconds'), '.1f'):>9} "
                f"{num(step.get('changed'), 'd'):>9}"
            )
        names = {"create": "create (+prepare)", "prepare": "prepare (no-op)", "destroy": "destroy"}
        other = ", ".join(f"{names[k]} {steps[k]['seconds']:.1f} s" for k in names if k in steps)
        if other:
            print(f"(other steps: {other})")
    print()
    print(f"results: {report['results_file']}")
    print(f"logs:    {report['log_dir']}")


def ratio(report: dict[str, Any]) -> float | None:
    def spr(key: str) -> float | None:
        value = ((report.get(key) or {}).get("run") or {}).get("seconds_per_round")
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    a, b = spr("native"), spr("containers")
    return round(b / a, 3) if a and b else None


def complete(part: dict[str, Any], rounds: int) -> bool:
    """The part was skipped, or it ran without error and its demo run completed."""
    if part.get("skipped"):
        return True
    run = part.get("run") or {}
    return (
        "error" not in part
        and run.get("status") == "finished:completed"
        and len(run.get("rounds") or []) >= rounds
    )


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time the sklearn demo on native Flower processes and on the "
        "containerized federation deployed by the collection (Molecule e2e).",
    )
    p.add_argument(
        "--flwr-python",
        type=Path,
        default=DEFAULT_FLWR_PYTHON,
        help="Python of a venv with flwr (default: %(default)s)",
    )
    p.add_argument("--rounds", type=int, default=3, help="federated rounds (default: 3)")
    p.add_argument("--skip-native", action="store_true", help="skip (a), for debugging")
    p.add_argument("--skip-containers", action="store_true", help="skip (b), for debugging")
    p.add_argument(
        "--keep", action="store_true", help="do not destroy the Molecule VMs, for debugging"
    )
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    args.flwr_python = checked_flwr_python(p, args.flwr_python)
    return args


def checked_flwr_python(p: argparse.ArgumentParser, path: Path) -> Path:
    """``--flwr-python`` made absolute (not resolved: the venv's python is a symlink out of the
    venv); a usage error when it is not an executable."""
    path = Path(os.path.abspath(path))
    if not os.access(path, os.X_OK):
        p.error(f"--flwr-python {path} is not an executable")
    return path


def results_paths(name: str) -> tuple[dt.datetime, Path, Path]:
    """Now, ``bench/results/NAME-<UTC>.json`` and its ``-logs/`` folder (created)."""
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    log_dir = RESULTS_DIR / f"{name}-{stamp}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    return now, RESULTS_DIR / f"{name}-{stamp}.json", log_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    now, results_file, log_dir = results_paths("federation")
    flwr_version = bare_flwr_version(args.flwr_python)
    report: dict[str, Any] = {
        "benchmark": "federation",
        "date": now.isoformat(timespec="seconds"),
        "host": host_info(),
        "flwr_python": str(args.flwr_python),
        "flwr_version": flwr_version,
        "flower_version_images": FLOWER_VERSION,
        "rounds": args.rounds,
        "results_file": str(results_file),
        "log_dir": str(log_dir),
    }
    progress(
        f"flwr {flwr_version}, nproc {report['host']['nproc']}, "
        f"load {report['host']['loadavg_start']}, logs in {log_dir}"
    )

    def save() -> None:
        report["ratio"] = ratio(report)
        report["host"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        results_file.write_text(json.dumps(report, indent=2) + "\n")

    try:
        if args.skip_native:
            report["native"] = {"skipped": True}
        else:
            progress("(a) native flower-superlink / flower-supernode processes")
            report["native"] = bench_native(args.flwr_python, args.rounds, log_dir)
        save()
        if args.skip_containers:
            report["containers"] = {"skipped": True}
        else:
            test_id = f"bench{int(time.time())}"
            progress(f"(b) containerized federation, Molecule e2e, FLOWER_TEST_ID={test_id}")
            report["containers"] = bench_containers(
                args.flwr_python, args.rounds, log_dir, args.keep, test_id
            )
    finally:
        save()
    print_table(report)

    ok = complete(report["native"], args.rounds) and complete(report["containers"], args.rounds)
    second = (report["containers"].get("steps") or {}).get("converge_second") or {}
    if not report["containers"].get("skipped") and second.get("changed") != 0:
        changed = second.get("changed")
        why = "no PLAY RECAP found" if changed is None else f"changed={changed}, not 0"
        print(f"note: second converge: {why} (see {second.get('log', 'its log')})")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
