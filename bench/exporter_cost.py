#!/usr/bin/env python3
"""Benchmark: what the SuperLink metrics exporter (roles/superlink/files/flower_exporter.py) costs.

In one invocation it runs the same bare local federation several times, each on a fresh
database: one ``flower-superlink`` and two ``flower-supernode`` processes (plain text, free
loopback ports, ``--database`` in a temporary directory), the sklearn demo (``demo/sklearn``,
``--rounds`` rounds, submitted with ``scripts/flwr_run_check.py``), then ``--idle`` seconds of
an idle federation. The modes:

* ``none``: no exporter;
* ``every-15s``: the exporter polling the Control API every 15 s (the role's default);
* ``every-2s``: every 2 s (the worst case anyone should configure).

Measured from /proc, from just before the run is submitted to the end of the idle time:
CPU seconds (user + system, reaped children included) of the SuperLink's process tree
(``flower-superlink``, ``flower-superexec``, the ServerApp processes), of the exporter and, for
context, of the SuperNodes' trees; peak resident memory (the sum over the SuperLink's tree
sampled every 0.5 s, and the exporter's VmHWM). Ratios compare each exporter mode with ``none``.

It is a benchmark, not a test: nothing is judged. Exit status 0 when every mode's run completed,
1 otherwise, 2 on bad arguments. Results go to ``bench/results/exporter-cost-<UTC>.json`` and the
processes' output to ``bench/results/exporter-cost-<UTC>-logs/``. Standard library only (the
helpers of bench/bare_federation.py and bench/federation.py); the exporter runs with
``--flwr-python``, whose venv needs ``prometheus-client`` (scripts/bootstrap.sh installs it in
the .venv-flwr-* venvs).

    python bench/exporter_cost.py [--rounds 3] [--idle 30] [--modes none,every-15s,every-2s]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bare_federation import READY_TIMEOUT, Federation, FederationError, flwr_version
from federation import (
    DEFAULT_FLWR_PYTHON,
    checked_flwr_python,
    host_info,
    progress,
    results_paths,
    run_demo,
    tail,
)

MODES = {"none": None, "every-15s": 15.0, "every-2s": 2.0}
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SETTLE = 3.0  # seconds between the federation (and exporter) being up and the measurement


# ------------------------------------------------------------------------------ /proc
def parent_map() -> dict[int, int]:
    """pid -> parent pid of every process now."""
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def tree(root: int, parents: dict[int, int] | None = None) -> list[int]:
    """``root`` and its live descendants."""
    parents = parents if parents is not None else parent_map()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in parents or pid == root:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime + cutime + cstime (reaped children) of the processes, in seconds."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / CLK_TCK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            continue
    return total


def hwm_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class RssSampler(threading.Thread):
    """Peak of the summed RSS of a process tree, sampled every 0.5 s."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak, self.stop = root, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.peak = max(self.peak, rss_bytes(tree(self.root)))


# -------------------------------------------------------------------------- one mode
def bench_mode(
    flwr_python: Path, version: str | None, mode: str, rounds: int, idle: float, log_dir: Path
) -> dict[str, Any]:
    """A fresh federation, optionally the exporter, the demo run and the idle time, measured."""
    interval = MODES[mode]
    result: dict[str, Any] = {"mode": mode, "interval": interval}
    with tempfile.TemporaryDirectory(prefix="bench-exporter-") as tmp:
        fed = Federation(
            flwr_python,
            Path(tmp),
            version=version,
            log_dir=log_dir,
            log_prefix=f"{mode}-",
            exporter=None if interval is None else {"interval": interval},
        )
        procs = fed.procs
        metrics = fed.ports["metrics"]
        (Path(tmp) / "cli").mkdir()
        sampler: RssSampler | None = None
        try:
            fed.start_all(READY_TIMEOUT)
            time.sleep(SETTLE)
            superlink = procs["superlink"].pid
            sampler = RssSampler(superlink)
            sampler.start()
            groups = {name: tree(proc.pid) for name, proc in procs.items()}
            start = {name: cpu_seconds(pids) for name, pids in groups.items()}
            t0 = time.monotonic()
            progress(f"{mode}: federation up; demo run of {rounds} round(s), then {idle:g}s idle")
            result["run"] = run_demo(
                flwr_python, fed.control_address, rounds, log_dir, mode, Path(tmp) / "cli"
            )
            time.sleep(idle)
            if interval is not None:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{metrics}/metrics", timeout=5
                ) as answer:
                    text = answer.read().decode()
                result["exporter_up"] = "flower_superlink_up 1.0" in text
            parents = parent_map()
            end = {name: cpu_seconds(tree(proc.pid, parents)) for name, proc in procs.items()}
            result["seconds"] = round(time.monotonic() - t0, 2)
            cpu = {name: round(end[name] - start[name], 3) for name in procs}
            result["cpu_seconds"] = {
                "superlink_tree": cpu["superlink"],
                "exporter": cpu.get("exporter"),
                "supernodes": round(cpu["supernode-0"] + cpu["supernode-1"], 3),
            }
            sampler.stop.set()
            sampler.join()
            result["peak_rss_mib"] = {
                "superlink_tree": round(sampler.peak / 2**20, 1),
                "exporter": (
                    round((hwm_bytes(procs["exporter"].pid) or 0) / 2**20, 1)
                    if "exporter" in procs
                    else None
                ),
            }
        except (FederationError, OSError) as err:
            result["error"] = str(err)
            progress(f"{mode}: ERROR {err}")
            for name in procs:
                print(tail(fed.log(name), 5), file=sys.stderr)
        finally:
            if sampler is not None:
                sampler.stop.set()
            fed.stop_all()
    return result


# ------------------------------------------------------------------------------ report
def ratios(modes: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each exporter mode against ``none``: SuperLink tree CPU, SuperLink + exporter CPU,
    SuperLink peak RSS + exporter peak RSS."""

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    base = modes.get("none") or {}
    base_cpu = (base.get("cpu_seconds") or {}).get("superlink_tree")
    base_rss = (base.get("peak_rss_mib") or {}).get("superlink_tree")
    out = {}
    for mode, res in modes.items():
        if mode == "none" or "cpu_seconds" not in res:
            continue
        cpu, rss = res["cpu_seconds"], res["peak_rss_mib"]
        out[mode] = {
            "superlink_cpu": div(cpu["superlink_tree"], base_cpu),
            "superlink_plus_exporter_cpu": div(
                cpu["superlink_tree"] + (cpu["exporter"] or 0), base_cpu
            ),
            "superlink_plus_exporter_rss": div(
                rss["superlink_tree"] + (rss["exporter"] or 0), base_rss
            ),
        }
    return out


def print_table(report: dict[str, Any]) -> None:
    def n(value: Any, fmt: str) -> str:
        if isinstance(value, (int, float)):
            return format(value, fmt)
        return "n/a".rjust(int(fmt.split(".")[0] or 0))

    print()
    print(
        f"SuperLink exporter cost  {report['date']}  flwr {report['flwr_version']}  "
        f"nproc {report['host']['nproc']}  rounds {report['rounds']}  idle {report['idle']:g}s"
    )
    print(
        f"{'mode':<11} {'window s':>8} {'status':>20} {'CPU s SuperLink':>16} "
        f"{'CPU s exporter':>15} {'CPU s SuperNodes':>17} {'RSS MiB SL':>11} {'RSS MiB exp':>12}"
    )
    for mode, res in report["modes"].items():
        cpu, rss = res.get("cpu_seconds") or {}, res.get("peak_rss_mib") or {}
        print(
            f"{mode:<11} {n(res.get('seconds'), '8.1f')} "
            f"{(res.get('run') or {}).get('status')!s:>20} "
            f"{n(cpu.get('superlink_tree'), '16.2f')} {n(cpu.get('exporter'), '15.2f')} "
            f"{n(cpu.get('supernodes'), '17.2f')} {n(rss.get('superlink_tree'), '11.1f')} "
            f"{n(rss.get('exporter'), '12.1f')}"
        )
    for mode, r in report["ratios"].items():
        print(
            f"{mode} vs none: SuperLink CPU x{n(r['superlink_cpu'], '.2f')}, "
            f"SuperLink + exporter CPU x{n(r['superlink_plus_exporter_cpu'], '.2f')}, "
            f"SuperLink + exporter peak RSS x{n(r['superlink_plus_exporter_rss'], '.2f')}"
        )
    print(f"results: {report['results_file']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flwr-python", type=Path, default=DEFAULT_FLWR_PYTHON)
    p.add_argument("--rounds", type=int, default=3, help="federated rounds (default: 3)")
    p.add_argument("--idle", type=float, default=30.0, help="idle seconds after the run")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated: %(default)s")
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(args.modes) <= set(MODES) or not args.modes:
        p.error(f"--modes: choose from {', '.join(MODES)}")
    if args.rounds < 1 or args.idle < 0:
        p.error("--rounds must be >= 1 and --idle >= 0")
    args.flwr_python = checked_flwr_python(p, args.flwr_python)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    now, results_file, log_dir = results_paths("exporter-cost")
    report: dict[str, Any] = {
        "benchmark": "exporter-cost",
        "date": now.isoformat(timespec="seconds"),
        "host": host_info(),
        "flwr_python": str(args.flwr_python),
        "flwr_version": flwr_version(args.flwr_python),
        "rounds": args.rounds,
        "idle": args.idle,
        "results_file": str(results_file),
        "log_dir": str(log_dir),
        "modes": {},
    }
    try:
        for mode in args.modes:
            report["modes"][mode] = bench_mode(
                args.flwr_python, report["flwr_version"], mode, args.rounds, args.idle, log_dir
            )
    finally:
        report["ratios"] = ratios(report["modes"])
        report["host"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        results_file.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    ok = all(
        (res.get("run") or {}).get("status") == "finished:completed" and "error" not in res
        for res in report["modes"].values()
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
