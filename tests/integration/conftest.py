"""Fixtures for the integration tests that run the collection's modules and inventory plugin
through ``ansible-playbook`` / ``ansible-inventory`` against the OpenNebula emulator.

The emulator runs in the pytest process (ephemeral ports, fast timings); every Ansible run is a
real subprocess started from the repository root with the repository's ``ansible.cfg``, the
endpoints and credentials in ``ONEFLOW_URL``/``ONE_URL``/``ONE_USERNAME``/``ONE_PASSWORD``, the
``ansible.posix.json`` stdout callback (so the tests read every task result) and the venv's Python
as ``ansible_python_interpreter``.

Nothing here is autouse: the other integration tests of this directory are not affected.
``ONE_IT_TIMES=1`` (with ``pytest -s``) prints how long each task of each playbook took.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from opennebula_emulator import Emulator, Hooks, Timings  # noqa: E402

PLAYBOOKS = Path(__file__).resolve().with_name("playbooks")
BIN = Path(sys.executable).parent
ADMIN = ("oneadmin", "password")
# Variables of the environment that would change where the modules connect to.
_SCRUBBED = ("ONE_", "ONEFLOW_", "ONEGATE_", "VMID", "TOKENTXT", "ANSIBLE_")


# ----------------------------------------------------------------------------- templates
def flower_template(name: str = "flower-fl", **supernode: Any) -> dict[str, Any]:
    """The Flower service template in the OpenNebula 7.0 schema (a copy per call)."""
    node = {
        "name": "supernode",
        "type": "vm",
        "template_id": 0,
        "cardinality": 2,
        "min_vms": 1,
        "max_vms": 5,
        "parents": ["superlink"],
        "user_inputs": {"FL_NODE_LABEL": "O|text|Label for supernodes| |edge"},
    }
    node.update(supernode)
    return {
        "name": name,
        "description": "Flower superlink + supernodes (integration test)",
        "deployment": "straight",
        "user_inputs": {
            "FL_ROUNDS": "O|number|Number of FL rounds| |3",
            "FL_STRATEGY": "O|list|Aggregation strategy|FedAvg,FedProx|FedAvg",
        },
        "roles": [
            {
                "name": "superlink",
                "type": "vm",
                "template_id": 0,
                "cardinality": 1,
                "min_vms": 1,
                "max_vms": 1,
            },
            node,
        ],
    }


def flower_template_610(name: str = "flower-fl", **supernode: Any) -> dict[str, Any]:
    """The same template written in the OpenNebula 6.10 schema."""
    node = {
        "name": "supernode",
        "vm_template": 0,
        "cardinality": 2,
        "min_vms": 1,
        "max_vms": 5,
        "parents": ["superlink"],
        "custom_attrs": {"FL_NODE_LABEL": "O|text|Label for supernodes| |edge"},
    }
    node.update(supernode)
    return {
        "name": name,
        "description": "Flower superlink + supernodes (integration test)",
        "deployment": "straight",
        "custom_attrs": {
            "FL_ROUNDS": "O|number|Number of FL rounds| |3",
            "FL_STRATEGY": "O|list|Aggregation strategy|FedAvg,FedProx|FedAvg",
        },
        "roles": [
            {"name": "superlink", "vm_template": 0, "cardinality": 1, "min_vms": 1, "max_vms": 1},
            node,
        ],
    }


# ------------------------------------------------------------------------------- results
class Run:
    """One finished ``ansible-playbook`` run, read through the ``ansible.posix.json`` callback."""

    def __init__(self, args: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        self.args = args
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        try:
            self.data: dict[str, Any] = json.loads(proc.stdout)
        except ValueError:
            self.data = {}

    @property
    def output(self) -> str:
        return f"$ {' '.join(self.args)}\nrc={self.rc}\n{self.stdout}\n{self.stderr}"

    def results(self, name: str) -> list[dict[str, Any]]:
        """Results (on localhost) of every task with this name, in order."""
        found = [
            task["hosts"]["localhost"]
            for play in self.data.get("plays", [])
            for task in play.get("tasks", [])
            if task["task"]["name"] == name and "localhost" in task.get("hosts", {})
        ]
        return found

    def __getitem__(self, name: str) -> dict[str, Any]:
        found = self.results(name)
        assert len(found) == 1, f"{len(found)} results for task {name!r}\n{self.output}"
        return found[0]

    @property
    def stats(self) -> dict[str, int]:
        return self.data.get("stats", {}).get("localhost", {})

    @property
    def facts(self) -> dict[str, Any]:
        """Every fact set by the run (the counter snapshots of the playbooks)."""
        out: dict[str, Any] = {}
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                out.update(task.get("hosts", {}).get("localhost", {}).get("ansible_facts", {}))
        return out

    def ended(self, name: str) -> float:
        """When the task with this name ended (epoch seconds)."""
        ends = [
            task["task"]["duration"]["end"]
            for play in self.data.get("plays", [])
            for task in play.get("tasks", [])
            if task["task"]["name"] == name
        ]
        assert len(ends) == 1, f"{len(ends)} tasks named {name!r}"
        stamp = datetime.datetime.fromisoformat(ends[0].replace("Z", "+00:00"))
        return stamp.timestamp()


def delta(before: dict[str, Any], after: dict[str, Any], api: str) -> dict[str, int]:
    """Requests per route/method of ``api`` between two counter snapshots."""
    keys = set(before.get(api, {})) | set(after.get(api, {}))
    out = {k: after.get(api, {}).get(k, 0) - before.get(api, {}).get(k, 0) for k in keys}
    return {k: v for k, v in sorted(out.items()) if v}


def writes(counts: dict[str, int]) -> dict[str, int]:
    """The non-GET requests of a ``delta``."""
    return {k: v for k, v in counts.items() if not k.startswith("GET ")}


# ------------------------------------------------------------------------------- runners
class Ansible:
    """Runs ``ansible-playbook`` / ``ansible-inventory`` against one emulator, from the venv whose
    ``bin`` directory is ``bin_dir`` (this one by default)."""

    def __init__(self, emu: Emulator, tmp_path: Path, bin_dir: Path = BIN) -> None:
        self.emu = emu
        self.tmp = tmp_path
        self.bin = bin_dir
        self.local_tmp = tmp_path / "ansible-local"
        self.local_tmp.mkdir(exist_ok=True)
        self.runs = 0

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
        env.update(
            PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_LOCAL_TEMP=str(self.local_tmp),
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
            ANSIBLE_LOCALHOST_WARNING="false",
            ONEFLOW_URL=self.emu.oneflow_url,
            ONE_URL=self.emu.oned_url,
            ONE_USERNAME=ADMIN[0],
            ONE_PASSWORD=ADMIN[1],
        )
        env.update(extra)
        return env

    def base_vars(self) -> dict[str, Any]:
        """What every playbook gets: the interpreter, and the URLs for the control endpoints."""
        return {
            "ansible_python_interpreter": str(self.bin / "python"),
            "oneflow_url": self.emu.oneflow_url,
            "onegate_url": self.emu.onegate_url,
            "admin_user": ADMIN[0],
            "admin_password": ADMIN[1],
        }

    def playbook(
        self,
        name: str,
        extra_vars: dict[str, Any] | None = None,
        *options: str,
        env: dict[str, str] | None = None,
        timeout: float = 240,
        inventory: str = "localhost,",
    ) -> Run:
        self.runs += 1
        vars_file = self.tmp / f"vars-{self.runs}.json"
        vars_file.write_text(json.dumps({**self.base_vars(), **(extra_vars or {})}))
        args = [
            str(self.bin / "ansible-playbook"),
            str(PLAYBOOKS / name),
            "-i",
            inventory,
            "-e",
            f"@{vars_file}",
            *options,
        ]
        proc = subprocess.run(
            args,
            cwd=ROOT,
            env=self.env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        run = Run(args, proc)
        if os.environ.get("ONE_IT_TIMES"):
            for play in run.data.get("plays", []):
                for task in play.get("tasks", []):
                    dur = task["task"]["duration"]
                    a = datetime.datetime.fromisoformat(dur["start"].replace("Z", "+00:00"))
                    b = datetime.datetime.fromisoformat(dur["end"].replace("Z", "+00:00"))
                    print(f"{(b - a).total_seconds():6.2f} {task['task']['name']}")
        assert run.data, f"no JSON from the callback\n{run.output}"
        return run

    def inventory(
        self, source: Path, *options: str, env: dict[str, str] | None = None
    ) -> tuple[subprocess.CompletedProcess[str], Any]:
        args = [str(self.bin / "ansible-inventory"), "-i", str(source), *options]
        proc = subprocess.run(
            args,
            cwd=ROOT,
            env=self.env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        try:
            data = plain(json.loads(proc.stdout))
        except ValueError:
            data = None
        return proc, data


def plain(value: Any) -> Any:
    """ansible-core 2.19 marks inventory values as untrusted in its JSON; unwrap them."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------- emulators
@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """Start emulators (``version``, ``hooks``, ``auto_boot``, ``timings``...); all stop at the
    end of the test."""
    started: list[Emulator] = []

    def make(**kwargs: Any) -> Emulator:
        kwargs.setdefault("timings", Timings.fast())
        kwargs.setdefault("seed", 11)
        emulator = Emulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Emulator:
    return make_emulator()


@pytest.fixture
def ansible(emu: Emulator, tmp_path: Path) -> Ansible:
    return Ansible(emu, tmp_path)


@pytest.fixture
def ansible_for(tmp_path: Path) -> Callable[..., Ansible]:
    """An :class:`Ansible` runner for an emulator made with ``make_emulator`` (and the ``bin``
    directory of another venv's ansible-core, when given)."""
    return lambda emulator, bin_dir=BIN: Ansible(emulator, tmp_path, bin_dir)


@pytest.fixture
def flower() -> dict[str, Callable[..., dict[str, Any]]]:
    """Factories of the Flower service template: ``flower["7.0"](name, **supernode)``."""
    return {"7.0": flower_template, "6.10": flower_template_610}


# ------------------------------------------------------------------------------ helpers
def service_vm_ids(emu: Emulator, service_id: int) -> dict[str, list[int]]:
    body = emu.service(service_id) or {}
    return {
        role["name"]: [int(node["deploy_id"]) for node in role.get("nodes") or []]
        for role in body.get("roles", [])
    }


def find_service(emu: Emulator, name: str) -> int | None:
    """Id of the service named ``name`` (None when there is none)."""
    with emu.lock:
        for doc in emu.store.documents.values():
            if doc.type == 100 and doc.name == name:
                return doc.id
    return None


def vm_ip(emu: Emulator, vm_id: int) -> str:
    with emu.lock:
        return str(emu.vm(vm_id).nics()[0]["IP"])


def onegate_put(emu: Emulator, vm_id: int, attrs: dict[str, str], target: int | None = None) -> int:
    """What a guest does to publish keys: ``PUT /vm`` with its token (one-apps client form), or
    ``PUT /vms/<target>`` to write a sibling's USER_TEMPLATE."""
    data = "\n".join(f"{k}={v}" for k, v in attrs.items())
    request = urllib.request.Request(  # noqa: S310 - the emulator's http URL
        emu.onegate_url + ("/vm" if target is None else f"/vms/{target}"),
        data=urllib.parse.urlencode({"data": data, "type": 1}).encode(),
        method="PUT",
        headers={
            "X-ONEGATE-TOKEN": emu.vm_token(vm_id) or "",
            "X-ONEGATE-VMID": str(vm_id),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status


def oneflow_call(
    emu: Emulator, method: str, path: str, body: Any = None, auth: tuple[str, str] = ADMIN
) -> tuple[int, str]:
    """One OneFlow request, as the CLI sends it (JSON, HTTP Basic)."""
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - the emulator's http URL
        emu.oneflow_url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Background:
    """A daemon thread running ``target(stop_event)``; errors are re-raised by :meth:`join`."""

    def __init__(self, target: Callable[[threading.Event], Any]) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.result: Any = None

        def run() -> None:
            try:
                self.result = target(self.stop)
            except BaseException as exc:  # reported by join()
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 10) -> Any:
        self.stop.set()
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def helpers() -> Any:
    """Plain helpers, reachable from the test modules without importing conftest."""

    class H:
        service_vm_ids = staticmethod(service_vm_ids)
        find_service = staticmethod(find_service)
        vm_ip = staticmethod(vm_ip)
        onegate_put = staticmethod(onegate_put)
        oneflow_call = staticmethod(oneflow_call)
        delta = staticmethod(delta)
        writes = staticmethod(writes)
        plain = staticmethod(plain)
        Background = Background
        Hooks = Hooks
        Timings = Timings
        sleep = staticmethod(time.sleep)

    return H
