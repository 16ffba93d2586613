#!/usr/bin/env python3
"""The user's path, on this machine: the appliance images (container counterparts of the
QCOW2s, ``make appliance-images``), a local OpenNebula (the emulator, its VMs as systemd
containers), ``playbooks/deploy.yml``, then ``flwr run`` of the demo over TLS.

    appliance_demo.py up [--id demo] [--rounds 3]   start, deploy, train; leaves it running
    appliance_demo.py start | deploy | train | status
    appliance_demo.py down [--id demo]              destroy.yml, stop the emulator, remove
                                                    .cache/appliance-<id>/

While deploy.yml runs, what the VMs do is printed as it happens (created, running, READY,
FL_READY, FL_NODE_READY, FL_ERROR as the boot hooks publish them); while the demo trains, each
round's loss and accuracy when the round ends. A training ends with a picture of the curves
(``.cache/appliance-<id>/training.png``) and the commands that run an app again.

``--id`` names everything (emulator state in ``.cache/appliance-<id>/``, Docker network and
containers ``flower-<id>-...``), so runs on a shared engine do not collide. The emulator runs in
the background; ``.cache/appliance-<id>/env.json`` holds its URLs for ``ansible-playbook``.
The end-to-end test (tests/appliance/test_lifecycle.py) drives the same functions.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
VERSION = os.environ.get("FLOWER_VERSION", "1.42.0")
FLWR_PYTHON = ROOT / f".venv-flwr-{VERSION}" / "bin" / "python"
APP = ROOT / "demo" / "sklearn"
ADMIN = ("oneadmin", "password")
# deploy.yml's default image names (flower_*_image_name), mapped to the container counterparts.
APPLIANCES = {
    f"Flower SuperLink v{VERSION}": f"local/flower-appliance-superlink:{VERSION}",
    f"Flower SuperNode v{VERSION}": f"local/flower-appliance-supernode:{VERSION}",
}
# Paths on the (emulated) front-end: the emulator registers images without reading them.
FRONTEND_IMAGES = {
    "flower_superlink_image_path": f"/var/lib/one/flower-superlink-{VERSION}.qcow2",
    "flower_supernode_image_path": f"/var/lib/one/flower-supernode-{VERSION}.qcow2",
}


# What the VMs' boot hooks publish through OneGate, shown as it changes.
PUBLISHED = ("READY", "FL_READY", "FL_NODE_READY", "FL_ERROR")
ACTIVE, LCM_RUNNING = 3, 3  # oned's VM state ACTIVE, LCM state RUNNING


class DemoError(RuntimeError):
    pass


def flwr_run_check():
    """scripts/flwr_run_check.py as a module (its Flower configuration writer)."""
    spec = importlib.util.spec_from_file_location(
        "flwr_run_check", ROOT / "scripts" / "flwr_run_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def log(msg: str) -> None:
    print(f"\033[1m== {msg}\033[0m", flush=True)


def run_live(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run with stdout and stderr merged, each line printed as it comes."""
    lines: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          **kwargs) as proc:  # fmt: skip
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                print(line, end="", flush=True)
                lines.append(line)
        finally:
            timer.cancel()
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(lines), "")


class VmProgress(threading.Thread):
    """Prints each VM's changes (created, RUNNING, what its boot hook publishes) while
    deploy.yml waits, from the emulator's state, once a second."""

    def __init__(self, demo: Demo) -> None:
        super().__init__(daemon=True)
        self.demo = demo
        self.done = threading.Event()
        self.seen: dict[int, dict[str, str]] = {}
        self.started = time.monotonic()

    def run(self) -> None:
        while not self.done.wait(1):
            try:
                vms = self.demo.emulator("/_emulator/state")["vms"]
            except (OSError, ValueError, KeyError):
                continue
            for vm in vms:
                for change in self.changes(vm):
                    at = time.monotonic() - self.started
                    log(f"{at:4.0f} s  VM {vm['id']} {vm['name']}: {change}")

    def changes(self, vm: dict) -> list[str]:
        running = vm["state"] == ACTIVE and vm["lcm_state"] == LCM_RUNNING
        now = {"state": "running" if running else "booting",
               **{key: str(vm["user_template"].get(key, "")) for key in PUBLISHED}}  # fmt: skip
        before = self.seen.get(vm["id"], {})
        self.seen[vm["id"]] = now
        return [
            (now[key] if key == "state" else f"{key}={now[key]}")
            for key in now
            if now[key] and now[key] != before.get(key)
        ]

    def __enter__(self) -> VmProgress:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()


class Demo:
    def __init__(self, run_id: str, admin_password: str = ADMIN[1]) -> None:
        self.id = run_id
        self.admin_password = admin_password
        self.dir = ROOT / ".cache" / f"appliance-{run_id}"
        self.network = f"flower-{run_id}"
        self.env_file = self.dir / "env.json"
        self.ca_file = self.dir / "flower-ca.crt"
        self.federation_file = self.dir / "federation.toml"

    # ------------------------------------------------------------------------- emulator
    def start(self) -> dict[str, str]:
        """Start the emulator with its container backend (once) and return its URLs."""
        if self.env_file.exists() and self.running():
            return json.loads(self.env_file.read_text())
        for image in APPLIANCES.values():
            if subprocess.run(
                ["docker", "image", "inspect", image], capture_output=True
            ).returncode:
                raise DemoError(f"{image} is missing: run `make appliance-images` first")
        self.dir.mkdir(parents=True, exist_ok=True)
        emu_log = self.dir / "emulator.log"
        args = [
            str(VENV_BIN / "python"), "-m", "opennebula_emulator",
            "--oned-port", "0", "--oneflow-port", "0", "--onegate-port", "0",
            "--vm-step", "0.5", "--cooldown-scale", "0.01",
            "--admin-password", self.admin_password,
            "--containers", "--network", self.network, "--name-prefix", self.network,
            "--context-dir", str(self.dir / "context"),
        ]  # fmt: skip
        for name, image in APPLIANCES.items():
            args += ["--appliance", f"{name}={image}"]
        with emu_log.open("w") as out:
            proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        (self.dir / "emulator.pid").write_text(str(proc.pid))
        urls: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while len(urls) < 3:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise DemoError(f"the emulator did not start, see {emu_log}")
            urls = dict(re.findall(r"^(oned|oneflow|onegate)\s+(\S+)", emu_log.read_text(), re.M))
            time.sleep(0.2)
        env = {
            "ONE_URL": urls["oned"],
            "ONEFLOW_URL": urls["oneflow"],
            "ONE_USERNAME": ADMIN[0],
            "ONE_PASSWORD": self.admin_password,
            "ONEFLOW_USERNAME": ADMIN[0],
            "ONEFLOW_PASSWORD": self.admin_password,
        }
        self.env_file.write_text(json.dumps(env, indent=1))
        log(f"emulator up: {urls['oned']} {urls['oneflow']} {urls['onegate']} (log {emu_log})")
        return env

    def running(self) -> bool:
        pid_file = self.dir / "emulator.pid"
        if not pid_file.exists():
            return False
        try:
            os.kill(int(pid_file.read_text()), 0)
        except (ProcessLookupError, ValueError):
            return False
        return True

    def stop(self) -> None:
        """SIGTERM: the emulator removes its containers and network as it exits."""
        pid_file = self.dir / "emulator.pid"
        if self.running():
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
        pid_file.unlink(missing_ok=True)
        self.env_file.unlink(missing_ok=True)

    def emulator(self, path: str) -> dict:
        """A control endpoint of the emulator (``/_emulator/...``) as JSON."""
        import urllib.request

        url = json.loads(self.env_file.read_text())["ONEFLOW_URL"].rstrip("/") + path
        with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 (local URL)
            return json.loads(answer.read())

    def network_id(self) -> int:
        state = self.emulator("/_emulator/state")
        for net in state.get("networks", []):
            if net.get("name") == self.network:
                return int(net["id"])
        raise DemoError(f"the emulator has no network {self.network}")

    def container(self, vm_id: int) -> str:
        return self.emulator(f"/_emulator/vms/{vm_id}/container")["name"]

    def gateway(self) -> str:
        """This host's address on the VMs' network: where `flwr` reaches the SuperLink from."""
        return subprocess.run(
            ["docker", "network", "inspect", self.network, "-f",
             "{{range .IPAM.Config}}{{.Gateway}}{{end}}"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    # ------------------------------------------------------------------------ ansible
    def playbook(self, name: str, *args: str, extra: dict | None = None, timeout: float = 1800,
                 live: bool = False):  # fmt: skip
        env = {
            **os.environ,
            **json.loads(self.env_file.read_text()),
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        cmd = [str(VENV_BIN / "ansible-playbook"), f"playbooks/{name}", *args]
        if extra:
            extra_file = self.dir / f"{name}.vars.json"
            extra_file.write_text(json.dumps(extra))
            cmd += ["-e", f"@{extra_file}"]
        log("$ " + " ".join(cmd[1:]))
        if live:
            return run_live(cmd, timeout, cwd=ROOT, env=env)
        return subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout, check=False, text=True,
                              capture_output=True)  # fmt: skip

    def deploy_playbook(self, context: dict | None = None, *args: str, live: bool = False):
        """deploy.yml: images, templates, service; waits for FL_READY; writes CA and block.

        The SuperLink's Control API is opened to this host only (the firewall keeps everyone
        else out; flwr runs here)."""
        context = {"ONEAPP_FL_CONTROL_ALLOWED_CIDRS": self.gateway(), **(context or {})}
        return self.playbook(
            "deploy.yml",
            *args,
            extra={
                **FRONTEND_IMAGES,
                "flower_image_path_check": False,
                "flower_image_version": VERSION,
                "flower_network_id": self.network_id(),
                "flower_service_name": f"flower-{self.id}",
                "flower_superlink_memory": 1024,
                "flower_supernode_memory": 1024,
                "flower_ca_file": str(self.ca_file),
                "flower_federation_file": str(self.federation_file),
                "flower_federation_name": "appliance",
                "flower_poll_interval": 1,
                "flower_context": context,
            },
            live=live,
        )

    def deploy(self, context: dict | None = None, *args: str, live: bool = False) -> dict:
        """deploy.yml; ``live``: its output and the VMs' progress printed as they come, else
        the end of its output once it is done."""
        started = time.monotonic()
        if live:
            with VmProgress(self):
                proc = self.deploy_playbook(context, *args, live=True)
        else:
            proc = self.deploy_playbook(context, *args)
            print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n")
        if proc.returncode != 0:
            raise DemoError("deploy.yml failed")
        block = tomllib.loads(self.federation_file.read_text())
        federation = block["tool"]["flwr"]["federations"]["appliance"]
        return {"address": federation["address"], "seconds": time.monotonic() - started,
                "output": proc.stdout + proc.stderr}  # fmt: skip

    def control_address(self) -> str:
        block = tomllib.loads(self.federation_file.read_text())
        return block["tool"]["flwr"]["federations"]["appliance"]["address"]

    # --------------------------------------------------------------------------- flwr
    def flwr(self, *args: str, tls: bool = True, timeout: float = 900, address: str | None = None,
             ca_file: Path | None = None, live: bool = False):  # fmt: skip
        """scripts/flwr_run_check.py on the demo app against the deployed SuperLink (or the
        SuperLink whose Control API ``address`` and CA file are given)."""
        ca = str(ca_file or self.ca_file)
        federation = ["appliance", "--root-certificates", ca] if tls else ["local"]
        cmd = [str(FLWR_PYTHON), str(ROOT / "scripts" / "flwr_run_check.py"), str(APP),
               *federation, "--address", address or self.control_address(), *args]  # fmt: skip
        if live:
            return run_live(cmd, timeout, cwd=ROOT)
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              check=False)  # fmt: skip

    def train(self, rounds: int = 3, *config: str, min_accuracy: float = 0.85,
              timeout: float = 600, address: str | None = None,
              ca_file: Path | None = None, live: bool = False) -> dict:  # fmt: skip
        """The demo app, checked by flwr_run_check.py; ``live``: each round printed as it
        ends, else the end of the output once the run is done."""
        out = self.dir / "run.json"
        run_config = " ".join([f"num-server-rounds={rounds}", *config])
        proc = self.flwr("--run-config", run_config, "--min-rounds", str(rounds),
                         "--min-accuracy", str(min_accuracy), "--json-out", str(out),
                         "--timeout", str(timeout), address=address, ca_file=ca_file,
                         live=live)  # fmt: skip
        if not live:
            print(proc.stdout[-6000:], proc.stderr[-3000:], sep="\n")
        if proc.returncode != 0:
            raise DemoError("the demo run did not pass its checks")
        return json.loads(out.read_text())

    # ------------------------------------------------------------------------ results
    def plot(self, result: dict) -> Path:
        """Loss and accuracy of each round (round 0: the initial model) as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        points = ([result["initial"]] if result.get("initial") else []) + result["rounds"]
        rounds = [p["round"] for p in points]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
        for ax, key, colour in zip(
            axes, ("loss", "accuracy"), ("tab:red", "tab:blue"), strict=True
        ):
            ax.plot(rounds, [p[key] for p in points], marker="o", color=colour)
            ax.set_xlabel("round (0: initial model)")
            ax.set_title(key)
            ax.set_xticks(rounds)
            ax.grid(alpha=0.3)
        axes[1].set_ylim(0, 1)
        fig.suptitle(
            f"demo/sklearn on Flower {VERSION}, run {result['run_id']}: {result['status']}"
        )
        path = self.dir / "training.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        return path

    def flwr_home(self) -> Path:
        """A Flower configuration ($FLWR_HOME) with one SuperLink connection, ``appliance``: the
        deployed SuperLink's Control API and CA (flwr >= 1.26 reads connections there)."""
        check = flwr_run_check()
        home = self.dir / "flwr"
        home.mkdir(exist_ok=True)
        conn = {"address": self.control_address(), "root-certificates": str(self.ca_file)}
        (home / "config.toml").write_text(check.flower_config_toml("appliance", conn))
        return home

    def rerun_hints(self) -> dict[str, str]:
        """Commands (from the checkout) that run an app again on the deployed federation."""
        flwr = FLWR_PYTHON.parent.relative_to(ROOT) / "flwr"
        hints = {
            "the demo again": f"make demo-run{'' if self.id == 'demo' else ' DEMO_ID=' + self.id}"
        }
        if tuple(int(x) for x in VERSION.split(".")[:2]) >= (1, 26):
            home = self.flwr_home().relative_to(ROOT)
            hints["your own Flower App"] = (
                f"FLWR_HOME={home} {flwr} run <app directory> appliance --stream"
            )
        else:
            federation = self.federation_file.relative_to(ROOT)
            hints["your own Flower App"] = (
                f"add {federation} to its pyproject.toml, then"
                f" {flwr} run <app directory> appliance --stream"
            )
        hints["remove the demo"] = "make demo-down"
        return hints

    def down(self) -> None:
        """destroy.yml, the emulator stopped, and what the demo wrote (.cache/appliance-<id>)."""
        if self.running():
            proc = self.playbook(
                "destroy.yml",
                extra={"flower_service_name": f"flower-{self.id}", "flower_poll_interval": 1},
                timeout=600,
            )
            print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n")
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        log(f"demo {self.id} removed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "start", "deploy", "train", "status", "down"])
    parser.add_argument("--id", default="demo")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    demo = Demo(args.id)
    try:
        if args.action in ("up", "start"):
            demo.start()
        if args.action in ("up", "deploy"):
            result = demo.deploy(live=True)
            log(f"deployed in {result['seconds']:.0f} s; SuperLink Control API {result['address']}")
        if args.action in ("up", "train"):
            started = time.monotonic()
            result = demo.train(args.rounds, live=True)
            first = result["rounds"][0]
            log(
                f"run {result['run_id']} {result['status']}: {len(result['rounds'])} rounds, "
                f"accuracy {first['accuracy']:.4f} -> {result['rounds'][-1]['accuracy']:.4f} "
                f"({time.monotonic() - started:.0f} s)"
            )
            log(f"the curves: {demo.plot(result).relative_to(ROOT)}")
            for what, command in demo.rerun_hints().items():
                log(f"{what + ':':<22}{command}")
        if args.action == "status":
            print("running" if demo.running() else "stopped")
        if args.action == "down":
            demo.down()
    except DemoError as exc:
        print(f"appliance_demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
