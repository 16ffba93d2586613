#!/usr/bin/env python3
"""Benchmark: ``opennebula.flower.oneflow`` vs. ``community.general.opennebula`` on a large pool.

In one run it starts the OpenNebula emulator (``opennebula_emulator``, in a child process of this
script run with ``--emulator-child``, on free loopback ports) with a pool of ``--pool`` VMs (default
5,000) that contains one OneFlow service of ``--service-size`` VMs (default 500: 1 ``superlink`` +
499 ``supernode``), then runs ``ansible-inventory -i <config> --list`` ``--runs`` times (default 5)
for each of

(a) ``opennebula.flower.oneflow`` with ``services: [<service id>]``;
(b) ``community.general.opennebula`` with three ``groups`` conditionals on the VMs'
    ``SERVICE_ID``/``ROLE_NAME`` (it has no server-side filter: it reads the whole pool and the
    service is isolated on the client), named like the groups of (a): ``superlink``,
    ``supernode``, ``service_<id>``;
(c) a baseline: a static one-host YAML inventory (the start-up cost of ``ansible-inventory``).

The runs are interleaved (c, a, b, c, a, b, ...) after one untimed warm-up of each. Before each run
the emulator's request counters are reset and after it they are read, so each run has its wall time,
the requests per API and method, the request/response body bytes and the time the emulator spent
serving (both measured by wrapping the emulator's HTTP handlers), the emulator's CPU time, and the
``ansible-inventory`` child's CPU time and peak RSS. The VM ids that (a) and (b) put in each group
are checked against the service as the emulator holds it.

It is a benchmark, not a test: timings are reported, never judged. The exit status is 0 when every
``ansible-inventory`` exited 0 and both plugins found exactly the service's VMs in each group, 1
otherwise, 2 on bad arguments. Results go to ``bench/results/inventory-<UTC>.json``.

Standard library only (and the emulator package of this repository); see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opennebula_emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
VENV_BIN = ROOT / ".venv" / "bin"
ANSIBLE_CFG = ROOT / "ansible.cfg"
CG_MANIFEST = ROOT / ".collections/ansible_collections/community/general/MANIFEST.json"
ONE_USERNAME = "oneadmin"
ONE_PASSWORD = "password"  # noqa: S105 - the emulator's (recorded) oneadmin password
ROLES = ("superlink", "supernode")
CASES = {
    "oneflow": "(a) opennebula.flower.oneflow",
    "community": "(b) community.general.opennebula",
    "baseline": "(c) baseline: static 1-host YAML",
}
ORDER = ("baseline", "oneflow", "community")  # within a round
VM_ID_VAR = {"oneflow": "one_vm_id", "community": "id"}  # host var holding the VM id
MIB = 1024 * 1024


class BenchError(RuntimeError):
    """A step of the benchmark could not be carried out."""


def progress(message: str) -> None:
    """One progress line on stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# the emulator, and what its HTTP servers send and receive
# --------------------------------------------------------------------------------------------


@dataclass
class ApiTraffic:
    requests: int = 0
    bytes_in: int = 0  # request bodies
    bytes_out: int = 0  # response bodies
    seconds: float = 0.0  # from reading the request to the last byte of the response written


class Meter:
    """Bytes and serving time per API, next to the emulator's own request counters.

    The emulator counts requests per method/route but not bytes, so its request handler classes
    are replaced by subclasses that note the body sizes and the time spent in each request. The
    emulator's control endpoints (``/_emulator/...``) are not counted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._traffic: dict[str, ApiTraffic] = {}

    def add(self, api: str, bytes_in: int, bytes_out: int, seconds: float) -> None:
        with self._lock:
            t = self._traffic.setdefault(api, ApiTraffic())
            t.requests += 1
            t.bytes_in += bytes_in
            t.bytes_out += bytes_out
            t.seconds += seconds

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                api: {
                    "requests": t.requests,
                    "bytes_in": t.bytes_in,
                    "bytes_out": t.bytes_out,
                    "seconds": round(t.seconds, 4),
                }
                for api, t in sorted(self._traffic.items())
            }

    def reset(self) -> None:
        with self._lock:
            self._traffic.clear()

    def install(self, emu: Emulator) -> bool:
        """Wrap the handlers of the emulator's servers; False when its internals differ."""
        servers = getattr(emu, "_servers", None)
        if not isinstance(servers, dict):
            return False
        for api, server in servers.items():
            base = getattr(server, "RequestHandlerClass", None)
            if base is None or not all(hasattr(base, m) for m in ("_handle", "_write")):
                return False
            server.RequestHandlerClass = _metered_handler(base, api, self)
        return True


def _metered_handler(base: Any, api: str, meter: Meter) -> Any:
    class Metered(base):  # type: ignore[misc, valid-type]
        _bench_out = 0

        def _handle(self) -> None:
            start = time.perf_counter()
            self._bench_out = 0
            super()._handle()
            if not self.path.startswith("/_emulator/"):
                length = int(self.headers.get("Content-Length") or 0)
                meter.add(api, length, self._bench_out, time.perf_counter() - start)

        def _write(self, resp: Any) -> None:
            self._bench_out = len(resp.payload())
            super()._write(resp)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    return Metered


def rss_mib() -> float | None:
    """Current resident set size of this process."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / MIB, 1)
    return None


def maxrss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@contextlib.contextmanager
def emulator(pool: int, service_size: int, meter: Meter) -> Iterator[tuple[Emulator, dict]]:
    """The emulator, started on free loopback ports, with the large pool; and facts about it."""
    sys.path.insert(0, str(ROOT))
    from opennebula_emulator import Emulator

    info: dict[str, Any] = {"rss_mib_before": rss_mib()}
    emu = Emulator("127.0.0.1", 0, 0, 0, seed=1)
    start = time.perf_counter()
    made = emu.add_large_pool(pool, service_size)
    info["build_seconds"] = round(time.perf_counter() - start, 3)
    info["rss_mib_after_build"] = rss_mib()
    service_id = int(made["service_id"])
    body = emu.service(service_id) or {}
    roles = {
        str(role["name"]): sorted(int(node["deploy_id"]) for node in role.get("nodes") or [])
        for role in body.get("roles") or []
    }
    info |= {
        "pool": pool,
        "service_size": service_size,
        "service_id": service_id,
        "service_name": body.get("name"),
        "service_template_id": made["service_template_id"],
        "plain_vms": len(made["plain_vm_ids"]),
        "vms_total": len(emu.store.vms),
        "roles": {name: len(ids) for name, ids in roles.items()},
        "role_vm_ids": roles,
        "opennebula_version": emu.rt.config.version,
        "meter_installed": meter.install(emu),
    }
    emu.start()
    info |= {"oned_url": emu.oned_url, "oneflow_url": emu.oneflow_url, "pid": os.getpid()}
    try:
        yield emu, info
    finally:
        emu.stop()


def cpu_seconds_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def emulator_child(pool: int, service_size: int) -> int:
    """``--emulator-child``: serve the pool; answer ``reset``/``read`` lines on stdin with JSON.

    The emulator runs in its own process so that the benchmark process stays small (a child's
    peak RSS as ``wait4`` reports it is at least its parent's RSS at the fork) and so that its
    own memory and CPU time can be told apart from the clients'.
    """
    meter = Meter()
    with emulator(pool, service_size, meter) as (emu, info):
        print(json.dumps(info), flush=True)
        cpu = cpu_seconds_self()
        for line in sys.stdin:
            command = line.strip()
            if command == "reset":
                emu.reset_counters()
                meter.reset()
                cpu = cpu_seconds_self()
                answer: dict[str, Any] = {}
            elif command == "read":
                answer = {
                    "counters": emu.counters(),
                    "traffic": meter.snapshot(),
                    "cpu_seconds": round(cpu_seconds_self() - cpu, 3),
                    "rss_mib": rss_mib(),
                    "maxrss_mib": maxrss_mib(),
                }
            else:
                break
            print(json.dumps(answer), flush=True)
    return 0


class EmulatorProcess:
    """The parent's handle on ``--emulator-child``."""

    def __init__(self, pool: int, service_size: int, log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--emulator-child",
                    "--pool",
                    str(pool),
                    "--service-size",
                    str(service_size),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=ROOT,
                start_new_session=True,
            )
        try:
            self.info: dict[str, Any] = self._answer()
        except BaseException:
            self.stop()
            raise

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
            raise BenchError(f"the emulator exited with status {self.proc.returncode}:\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # end of input: the child stops the emulator and exits
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# --------------------------------------------------------------------------------------------
# inventory configurations and runs
# --------------------------------------------------------------------------------------------


def write_configs(directory: Path, service_id: int) -> dict[str, Path]:
    sid = service_id
    where = f"SERVICE_ID is defined and SERVICE_ID == '{sid}'"
    files = {
        "oneflow": (
            directory / "service.oneflow.yml",
            f"plugin: opennebula.flower.oneflow\nservices: [{sid}]\n",
        ),
        "community": (
            directory / "service.opennebula.yml",
            "plugin: community.general.opennebula\n"
            "groups:\n"
            f'  service_{sid}: "{where}"\n'
            + "".join(f"  {role}: \"{where} and ROLE_NAME == '{role}'\"\n" for role in ROLES),
        ),
        "baseline": (
            directory / "static.yml",
            "all:\n  hosts:\n    bench-static:\n      ansible_host: 127.0.0.1\n",
        ),
    }
    for path, text in files.values():
        path.write_text(text)
    return {case: path for case, (path, _) in files.items()}


def child_env(info: dict[str, Any]) -> dict[str, str]:
    """The caller's environment without its Ansible/OpenNebula settings, plus the emulator's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANSIBLE_", "ONE_", "ONEFLOW_", "ONEGATE_"))
    }
    env |= {
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(VENV_BIN.parent),
        "ANSIBLE_CONFIG": str(ANSIBLE_CFG),
        # an inventory source that fails to parse is otherwise only a warning (exit status 0)
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True",
        "ONE_URL": info["oned_url"],
        "ONE_USERNAME": ONE_USERNAME,
        "ONE_PASSWORD": ONE_PASSWORD,
        "ONEFLOW_URL": info["oneflow_url"],
    }
    return env


@dataclass
class Run:
    case: str
    index: int  # 0-based; -1 is the warm-up
    rc: int
    seconds: float
    cpu_seconds: float
    maxrss_mib: float
    stdout_bytes: int
    warnings: int
    counters: dict[str, dict[str, int]]
    traffic: dict[str, dict[str, Any]]
    emulator_cpu_seconds: float
    emulator_rss_mib: float | None
    emulator_maxrss_mib: float
    inventory: dict[str, Any] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(self.counters.get("total", {}).values())

    @property
    def bytes_out(self) -> int:
        return sum(t["bytes_out"] for t in self.traffic.values())

    @property
    def server_seconds(self) -> float:
        return sum(t["seconds"] for t in self.traffic.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "index": self.index,
            "rc": self.rc,
            "seconds": round(self.seconds, 4),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "maxrss_mib": self.maxrss_mib,
            "stdout_bytes": self.stdout_bytes,
            "warning_lines": self.warnings,
            "requests": self.requests,
            "counters": self.counters,
            "traffic": self.traffic,
            "emulator_cpu_seconds": self.emulator_cpu_seconds,
            "emulator_rss_mib": self.emulator_rss_mib,
            "emulator_maxrss_mib": self.emulator_maxrss_mib,
            "inventory": self.inventory,
        }


def run_inventory(
    config: Path, out: Path, env: dict[str, str], timeout: float
) -> tuple[int, float, float, float]:
    """``ansible-inventory -i config --list`` > out (stderr next to it).

    Returns (exit status, wall seconds, CPU seconds, peak RSS MiB) of the child; 124 after a
    timeout, as timeout(1) reports it.
    """
    cmd = [str(VENV_BIN / "ansible-inventory"), "-i", str(config), "--list"]
    timed_out = threading.Event()
    with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: do not leave the child behind
            kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc  # reaped by wait4: keep Popen from waiting for it again
    if timed_out.is_set():
        rc = 124
    return rc, seconds, usage.ru_utime + usage.ru_stime, round(usage.ru_maxrss / 1024, 1)


def unwrap(value: Any) -> Any:
    """ansible-core 2.19's ``--list`` writes strings as ``{"__ansible_unsafe": "..."}``."""
    if isinstance(value, dict) and set(value) == {"__ansible_unsafe"}:
        return value["__ansible_unsafe"]
    return value


def read_inventory(path: Path, case: str, service_id: int) -> dict[str, Any]:
    """Hosts, group sizes and, per group of the service, the VM ids of its hosts."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return {"error": f"unreadable --list output: {err}"}
    hostvars = (data.get("_meta") or {}).get("hostvars") or {}
    groups = {
        name: list(body.get("hosts") or [])
        for name, body in data.items()
        if name != "_meta" and isinstance(body, dict)
    }
    out: dict[str, Any] = {
        "hosts": len(hostvars),
        "group_sizes": {name: len(hosts) for name, hosts in sorted(groups.items()) if hosts},
    }
    var = VM_ID_VAR.get(case)
    if var is None:
        return out
    vm_ids: dict[str, list[int]] = {}
    for group in (*ROLES, f"service_{service_id}"):
        ids = []
        for host in groups.get(group, []):
            value = unwrap((hostvars.get(host) or {}).get(var))
            ids.append(int(value) if str(value).isdigit() else -1)
        vm_ids[group] = sorted(ids)
    out["vm_ids"] = vm_ids
    out["sample_host"] = next(iter(sorted(groups.get(ROLES[0], []))), None)
    return out


def check_ids(inv: dict[str, Any], expected: dict[str, list[int]]) -> list[str]:
    """Differences between the VM ids of each group and what the emulator holds."""
    problems = []
    found = inv.get("vm_ids")
    if found is None:
        return [inv.get("error", "no VM ids")]
    for group, ids in expected.items():
        got = found.get(group, [])
        if got != ids:
            missing, extra = sorted(set(ids) - set(got)), sorted(set(got) - set(ids))
            problems.append(
                f"group {group}: {len(got)} hosts, {len(ids)} expected "
                f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"extra {extra[:5]}{'...' if len(extra) > 5 else ''})"
            )
    return problems


def one_run(
    emu: EmulatorProcess,
    case: str,
    index: int,
    configs: dict[str, Path],
    workdir: Path,
    env: dict[str, str],
    info: dict[str, Any],
    timeout: float,
) -> Run:
    label = "warmup" if index < 0 else f"run{index + 1}"
    out = workdir / f"{case}-{label}.json"
    emu.ask("reset")
    rc, seconds, cpu, maxrss = run_inventory(configs[case], out, env, timeout)
    seen = emu.ask("read")
    err = out.with_suffix(".err").read_text(errors="replace")
    run = Run(
        case=case,
        index=index,
        rc=rc,
        seconds=seconds,
        cpu_seconds=cpu,
        maxrss_mib=maxrss,
        stdout_bytes=out.stat().st_size,
        warnings=sum(1 for line in err.splitlines() if "[WARNING]" in line),
        counters=seen["counters"],
        traffic=seen["traffic"],
        emulator_cpu_seconds=seen["cpu_seconds"],
        emulator_rss_mib=seen["rss_mib"],
        emulator_maxrss_mib=seen["maxrss_mib"],
    )
    run.inventory = read_inventory(out, case, info["service_id"])
    if case in VM_ID_VAR:
        problems = check_ids(run.inventory, expected_groups(info))
        run.inventory["ids_match_emulator"] = not problems
        if problems:
            run.inventory["problems"] = problems
    if rc != 0:
        lines = err.splitlines()
        why = [line for line in lines if "with 'auto' plugin" in line or "[ERROR]" in line]
        tail = "\n".join(why or lines[-15:])
        progress(f"WARNING: {CASES[case]} {label} exited {rc}:\n{tail}")
    progress(
        f"{CASES[case]:<34} {label:<7} {seconds:7.2f} s  rc {rc}  "
        f"{run.requests} request(s)  {run.bytes_out / MIB:6.2f} MiB  "
        f"{run.inventory.get('hosts', '?')} hosts"
    )
    return run


def expected_groups(info: dict[str, Any]) -> dict[str, list[int]]:
    roles: dict[str, list[int]] = info["role_vm_ids"]
    groups = {role: roles.get(role, []) for role in ROLES}
    groups[f"service_{info['service_id']}"] = sorted(i for ids in roles.values() for i in ids)
    return groups


# --------------------------------------------------------------------------------------------
# summary and report
# --------------------------------------------------------------------------------------------


def summarize(runs: list[Run]) -> dict[str, Any]:
    """Statistics of the timed runs of one case."""
    if not runs:
        return {}
    walls = [r.seconds for r in runs]
    methods: dict[str, list[int]] = {}
    for run in runs:
        for api, counts in run.counters.items():
            if api == "total":
                continue
            for method, n in counts.items():
                methods.setdefault(f"{api} {method}", []).append(n)
    last = runs[-1].inventory
    return {
        "runs": len(runs),
        "all_rc_zero": all(r.rc == 0 for r in runs),
        "wall_seconds": [round(w, 4) for w in walls],
        "median_seconds": round(statistics.median(walls), 4),
        "min_seconds": round(min(walls), 4),
        "max_seconds": round(max(walls), 4),
        "median_cpu_seconds": round(statistics.median(r.cpu_seconds for r in runs), 3),
        "median_maxrss_mib": round(statistics.median(r.maxrss_mib for r in runs), 1),
        "requests_per_run": sorted({r.requests for r in runs}),
        "median_requests": statistics.median(r.requests for r in runs),
        "requests_by_method": {
            k: sorted(set(v)) if len(v) == len(runs) else sorted({*v, 0})
            for k, v in sorted(methods.items())
        },
        "median_response_bytes": statistics.median(r.bytes_out for r in runs),
        "median_request_bytes": statistics.median(
            sum(t["bytes_in"] for t in r.traffic.values()) for r in runs
        ),
        "median_emulator_seconds": round(statistics.median(r.server_seconds for r in runs), 4),
        "median_emulator_cpu_seconds": round(
            statistics.median(r.emulator_cpu_seconds for r in runs), 3
        ),
        "median_stdout_bytes": statistics.median(r.stdout_bytes for r in runs),
        "warning_lines": sorted({r.warnings for r in runs}),
        "hosts": sorted({r.inventory["hosts"] for r in runs if "hosts" in r.inventory}),
        "group_sizes": last.get("group_sizes"),
        "ids_match_emulator": all(r.inventory.get("ids_match_emulator", True) for r in runs),
        "sample_host": last.get("sample_host"),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(b / a, 3) if a and b is not None and a > 0 else None


def comparisons(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    a, b, c = (summary.get(k) or {} for k in ("oneflow", "community", "baseline"))
    out: dict[str, Any] = {
        "median_wall_b_over_a": ratio(a.get("median_seconds"), b.get("median_seconds")),
        "requests_b_over_a": ratio(a.get("median_requests"), b.get("median_requests")),
        "response_bytes_b_over_a": ratio(
            a.get("median_response_bytes"), b.get("median_response_bytes")
        ),
    }
    base = c.get("median_seconds")
    for key, part in (("a", a), ("b", b)):
        med = part.get("median_seconds")
        out[f"median_{key}_minus_baseline"] = (
            round(med - base, 4) if med is not None and base is not None else None
        )
    out["net_wall_b_over_a"] = ratio(out["median_a_minus_baseline"], out["median_b_minus_baseline"])
    out["median_cpu_b_over_a"] = ratio(a.get("median_cpu_seconds"), b.get("median_cpu_seconds"))
    return out


def num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "n/a"


def methods_text(part: dict[str, Any]) -> str:
    items = part.get("requests_by_method") or {}
    return ", ".join(f"{k} {'/'.join(str(n) for n in v)}" for k, v in items.items()) or "none"


def print_table(report: dict[str, Any]) -> None:
    host, emu, summary, comp = (
        report["host"],
        report["emulator"],
        report["summary"],
        report["comparison"],
    )
    load = " ".join(f"{x:.2f}" for x in host["loadavg_start"])
    load_end = " ".join(f"{x:.2f}" for x in host.get("loadavg_end", []))
    roles = " + ".join(f"{n} {c}" for n, c in emu["roles"].items())
    versions = report["versions"]
    print()
    print(
        f"Inventory benchmark  {report['date']}  ansible-core {versions['ansible_core']}  "
        f"community.general {versions['community_general']}  pyone {versions['pyone']}"
    )
    print(f"nproc {host['nproc']}  |  load average at start {load}, at end {load_end}")
    print(
        f"emulator (OpenNebula {emu['opennebula_version']}): {emu['vms_total']} VMs = "
        f"{emu['plain_vms']} plain + service {emu['service_id']} '{emu['service_name']}' "
        f"({roles})"
    )
    print(
        f"pool built in {emu['build_seconds']:.2f} s; emulator RSS "
        f"{num(emu['rss_mib_before'], '.0f')} MiB empty, "
        f"{num(emu['rss_mib_after_build'], '.0f')} MiB with the pool, peak "
        f"{num(emu.get('maxrss_mib_end'), '.0f')} MiB"
    )
    print(
        f"{report['runs']} timed runs per case (+{report['warmup']} warm-up), interleaved c, a, b"
    )
    rows = [(case, summary.get(case) or {}) for case in ("oneflow", "community", "baseline")]
    print()
    print(
        f"{'ansible-inventory --list':<34} {'median s':>8} {'min s':>7} {'- (c) s':>8} "
        f"{'cpu s':>7} {'RSS MiB':>7} {'hosts':>6}"
    )
    for case, part in rows:
        if not part:
            print(f"{CASES[case]:<34} {'no runs':>8}")
            continue
        net = comp.get(f"median_{'a' if case == 'oneflow' else 'b'}_minus_baseline")
        net_txt = "" if case == "baseline" else num(net, ".2f")
        hosts = "/".join(str(h) for h in part["hosts"]) or "n/a"
        print(
            f"{CASES[case]:<34} {part['median_seconds']:>8.2f} {part['min_seconds']:>7.2f} "
            f"{net_txt:>8} {part['median_cpu_seconds']:>7.2f} {part['median_maxrss_mib']:>7.0f} "
            f"{hosts:>6}"
        )
    print()
    print(
        f"{'per run (medians)':<34} {'requests':>8} {'req KiB':>8} {'resp MiB':>8} "
        f"{'emu s':>6} {'emu cpu':>7} {'out MiB':>7}"
    )
    for case, part in rows[:2]:
        if not part:
            continue
        print(
            f"{CASES[case]:<34} {num(part['median_requests'], 'g'):>8} "
            f"{part['median_request_bytes'] / 1024:>8.1f} "
            f"{part['median_response_bytes'] / MIB:>8.2f} "
            f"{part['median_emulator_seconds']:>6.3f} {part['median_emulator_cpu_seconds']:>7.2f} "
            f"{part['median_stdout_bytes'] / MIB:>7.2f}"
        )
    print(
        f"ratio (b)/(a): median wall {num(comp['median_wall_b_over_a'], '.2f')}, "
        f"net of (c) {num(comp['net_wall_b_over_a'], '.2f')}, "
        f"child CPU {num(comp['median_cpu_b_over_a'], '.2f')}, "
        f"requests {num(comp['requests_b_over_a'], '.2f')}, "
        f"response bytes {num(comp['response_bytes_b_over_a'], '.1f')}"
    )
    print()
    print("requests per run")
    for case in ("oneflow", "community"):
        print(f"  {CASES[case]:<34} {methods_text(summary.get(case) or {})}")
    print()
    print(f"hosts of service {emu['service_id']}, VM ids checked against the emulator")
    for case in ("oneflow", "community"):
        part = summary.get(case) or {}
        sizes = part.get("group_sizes") or {}
        wanted = [*ROLES, f"service_{emu['service_id']}"]
        groups = ", ".join(f"{g} {sizes.get(g, 0)}" for g in wanted)
        others = {g: n for g, n in sizes.items() if g not in wanted}
        other_txt = f"; other groups: {others}" if others else ""
        match = "same VM ids" if part.get("ids_match_emulator") else "DIFFERENT VM ids"
        print(f"  {CASES[case]:<34} {groups}{other_txt}")
        print(f"  {'':<34} ({match}; e.g. host '{part.get('sample_host')}')")
    same = report.get("same_vm_ids_a_b")
    print(f"  (a) and (b) found the same VM ids per group: {'yes' if same else 'NO'}")
    print()
    print(f"results: {report['results_file']}")
    if report.get("files_dir"):
        print(f"files:   {report['files_dir']}")


def versions() -> dict[str, str | None]:
    def dist(name: str) -> str | None:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(name)
        return None

    cg = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        cg = json.loads(CG_MANIFEST.read_text())["collection_info"]["version"]
    return {"ansible_core": dist("ansible-core"), "pyone": dist("pyone"), "community_general": cg}


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time ansible-inventory with opennebula.flower.oneflow and with "
        "community.general.opennebula against the emulator's large pool.",
    )
    p.add_argument("--runs", type=int, default=5, help="timed runs per case (default: 5)")
    p.add_argument("--pool", type=int, default=5000, help="VMs in the pool (default: 5000)")
    p.add_argument(
        "--service-size",
        type=int,
        default=500,
        help="VMs of the OneFlow service, within the pool (default: 500)",
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per case first (default: 1)")
    p.add_argument(
        "--timeout", type=float, default=900, help="seconds per ansible-inventory (default: 900)"
    )
    p.add_argument(
        "--keep-files",
        action="store_true",
        help="keep the inventory configs, each run's --list output and stderr and the "
        "emulator's log (in bench/results/inventory-<UTC>-files/)",
    )
    p.add_argument("--emulator-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.service_size < 2:
        p.error("--service-size must be >= 2 (one superlink and at least one supernode)")
    if args.pool < args.service_size:
        p.error("--pool must be >= --service-size")
    if not args.emulator_child and not os.access(VENV_BIN / "ansible-inventory", os.X_OK):
        p.error(f"{VENV_BIN / 'ansible-inventory'} not found: run `make bootstrap` first")
    return args


def measure(
    args: argparse.Namespace, workdir: Path, report: dict[str, Any], runs: list[Run]
) -> None:
    """Start the emulator, run every case; fills ``report["emulator"]`` and ``runs``."""
    progress(f"building the emulator's pool: {args.pool} VMs, service of {args.service_size}")
    emu = EmulatorProcess(args.pool, args.service_size, workdir / "emulator.log")
    try:
        info = emu.info
        report["emulator"] = {k: v for k, v in info.items() if k != "role_vm_ids"}
        report["expected_group_sizes"] = {g: len(i) for g, i in expected_groups(info).items()}
        progress(
            f"emulator (pid {info['pid']}) up, pool built in {info['build_seconds']:.2f} s: "
            f"service {info['service_id']} {info['roles']}, {info['vms_total']} VMs, "
            f"oned {info['oned_url']}, oneflow {info['oneflow_url']}, "
            f"RSS {info['rss_mib_after_build']} MiB"
            + ("" if info["meter_installed"] else " (bytes not measured)")
        )
        configs = write_configs(workdir, info["service_id"])
        env = child_env(info)
        for index in [-1] * args.warmup + list(range(args.runs)):
            for case in ORDER:
                runs.append(one_run(emu, case, index, configs, workdir, env, info, args.timeout))
        end = emu.ask("read")
        report["emulator"] |= {"rss_mib_end": end["rss_mib"], "maxrss_mib_end": end["maxrss_mib"]}
    finally:
        emu.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.emulator_child:
        return emulator_child(args.pool, args.service_size)
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    results_file = RESULTS_DIR / f"inventory-{stamp}.json"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if args.keep_files:
        workdir = RESULTS_DIR / f"inventory-{stamp}-files"
        workdir.mkdir()
    else:
        workdir = Path(tempfile.mkdtemp(prefix="bench-inventory-"))
    report: dict[str, Any] = {
        "benchmark": "inventory",
        "date": now.isoformat(timespec="seconds"),
        "host": {
            "nproc": len(os.sched_getaffinity(0)),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": versions(),
        "runs": args.runs,
        "warmup": args.warmup,
        "timeout": args.timeout,
        "results_file": str(results_file),
        "files_dir": str(workdir) if args.keep_files else None,
    }
    runs: list[Run] = []
    error = None
    try:
        measure(args, workdir, report, runs)
    except BenchError as err:
        error = str(err)
        report["error"] = error
        progress(f"ERROR {err}")
    finally:
        report["host"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        report["host"]["maxrss_mib_bench_process"] = maxrss_mib()
        timed = [r for r in runs if r.index >= 0]
        report["summary"] = {
            case: summarize([r for r in timed if r.case == case]) for case in ORDER
        }
        report["comparison"] = comparisons(report["summary"])
        # the same VM ids in (a) and (b), group by group (each also checked against the emulator)
        last = {r.case: r.inventory.get("vm_ids") for r in timed}
        ids_a, ids_b = last.get("oneflow"), last.get("community")
        report["same_vm_ids_a_b"] = ids_a is not None and ids_a == ids_b
        report["runs_detail"] = [r.as_dict() for r in runs]
        results_file.write_text(json.dumps(report, indent=2) + "\n")
        if not args.keep_files:
            shutil.rmtree(workdir, ignore_errors=True)
    if error is not None or "emulator" not in report:
        print(f"results: {results_file}")
        return 1
    print_table(report)

    ok = True
    for case in ORDER:
        part = report["summary"].get(case) or {}
        if not part.get("all_rc_zero"):
            print(f"WARNING: {CASES[case]}: an ansible-inventory run did not exit 0")
            ok = False
        if case in VM_ID_VAR and not part.get("ids_match_emulator"):
            problems = {p for r in timed if r.case == case for p in r.inventory.get("problems", [])}
            print(f"WARNING: {CASES[case]}: VM ids differ from the service: {sorted(problems)}")
            ok = False
    if not report["same_vm_ids_a_b"]:
        print("WARNING: (a) and (b) did not find the same VM ids for the service")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
