# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
"""Keep the SuperLink's registered SuperNode keys in line with who may join the federation.

Runs next to the SuperLink (in its network namespace, as uid 49999) when SuperNode
authentication is on. Every ``interval`` seconds it reads who may join:

* the public key files in ``keys_dir``, placed by the controller (``superlink_node_auth_keys``,
  ``site.yml`` for SuperNodes outside the service): trusted, an edited file replaces its key;
* with OneGate, the ``FL_NODE_PUBKEY`` the VMs of this service's SuperNode role publish. Any VM
  of the service can write a sibling's USER_TEMPLATE, so that value is untrusted: it must be a
  NIST-curve OpenSSH ECDSA public key, and the first key seen for a VM is kept until the VM
  leaves the role (a later, different value is reported and ignored).

Keys that appear are registered (``flwr supernode register``), keys whose every source is gone
(a VM removed by scaling, a file deleted) are unregistered. A failed OneGate read changes
nothing. At start and every ``check_every`` cycles, the SuperLink's own list is compared with
the state, so keys it lost (a SuperLink without database restarted) are registered again.

The state (key -> node id and sources, VM pins) is a JSON file next to the SuperLink's database.
The ``flwr`` CLI exits 0 on failure: its ``--format json`` answer decides. Standard library
only: it runs with the Python of the SuperLink image.

    node_registrar.py CONFIG.json [--once]
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

KEY_TYPES = ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
PUBLISHED_KEY = "FL_NODE_PUBKEY"
LIVE_STATUSES = ("registered", "online", "offline")
CLI_TIMEOUT = 60
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def log(message: str) -> None:
    print(f"node-registrar: {message}", flush=True)


# --------------------------------------------------------------------------------- keys
def parse_public_key(text: object) -> str | None:
    """``"<type> <base64>"`` of an OpenSSH ECDSA (NIST curve) public key, comment dropped;
    None for anything else. The blob must be base64 and name the same key type."""
    if not isinstance(text, str):
        return None
    parts = text.strip().split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES or len(parts[1]) > 1024:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length] != parts[0].encode("ascii"):
        return None
    return f"{parts[0]} {parts[1]}"


def file_keys(keys_dir: Path) -> dict[str, str]:
    """``{"file:<name>": key}`` of the ``*.pub`` files; an unreadable or bad file is reported."""
    found = {}
    for path in sorted(keys_dir.glob("*.pub")) if keys_dir.is_dir() else []:
        try:
            key = parse_public_key(path.read_text(encoding="ascii", errors="replace"))
        except OSError as exc:
            log(f"cannot read {path}: {exc}")
            continue
        if key is None:
            log(f"{path} holds no OpenSSH ECDSA public key; ignored")
            continue
        found[f"file:{path.stem}"] = key
    return found


# ------------------------------------------------------------------------------ OneGate
def onegate_vms(onegate: dict) -> dict[str, object] | None:
    """``{"vm:<id>": published value}`` of the VMs of the SuperNode role, None if unreadable."""
    token = Path(onegate["token_file"]).read_text(encoding="ascii").strip()
    request = urllib.request.Request(  # noqa: S310 (the endpoint one-context gave)
        onegate["endpoint"].rstrip("/") + "/service?extended=true",
        headers={
            "X-ONEGATE-TOKEN": token,
            "X-ONEGATE-VMID": str(onegate["vmid"]),
            "Accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:  # noqa: S310 (config URL)
            service = json.load(answer)["SERVICE"]
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError) as exc:
        log(f"OneGate not readable ({exc}); keeping the SuperNodes known so far")
        return None
    vms = {}
    for role in service.get("roles") or []:
        if role.get("name") != onegate["role"]:
            continue
        for node in role.get("nodes") or []:
            vm = ((node.get("vm_info") or {}).get("VM")) or {}
            user_template = vm.get("USER_TEMPLATE") or {}
            vms[f"vm:{node.get('deploy_id')}"] = user_template.get(PUBLISHED_KEY)
    return vms


def pinned_vm_keys(published: dict[str, object], pins: dict[str, str]) -> dict[str, str]:
    """Keys of the role's VMs, the first valid key of each VM kept (``pins`` is updated):
    a sibling that rewrites a VM's FL_NODE_PUBKEY later cannot swap its key."""
    for source in [s for s in pins if s not in published]:
        del pins[source]  # the VM left the role: a VM that comes back starts anew
    keys = {}
    for source, value in published.items():
        key = parse_public_key(value)
        if source in pins:
            if value is not None and key != pins[source]:
                log(f"{source} now publishes another {PUBLISHED_KEY}; keeping its first key")
            keys[source] = pins[source]
        elif key is not None:
            pins[source] = keys[source] = key
        elif value not in (None, ""):
            log(f"{source} publishes an invalid {PUBLISHED_KEY}; ignored")
    return keys


# --------------------------------------------------------------------------------- plan
def wanted(sources: dict[str, str]) -> dict[str, list[str]]:
    """key -> the sources that want it."""
    result: dict[str, list[str]] = {}
    for source, key in sorted(sources.items()):
        result.setdefault(key, []).append(source)
    return result


def plan(nodes: dict[str, dict], desired: dict[str, list[str]], live: set[str] | None):
    """(register, unregister): keys to register, and (key, node id) pairs to unregister.

    ``nodes`` is the state (key -> {"node_id", "sources"}); ``live`` the node ids the SuperLink
    lists, or None when it was not asked. A node id it does not list was lost: register again.
    """
    register = [
        key
        for key in desired
        if key not in nodes or (live is not None and nodes[key].get("node_id") not in live)
    ]
    unregister = [(key, nodes[key].get("node_id")) for key in nodes if key not in desired]
    return register, unregister


# ---------------------------------------------------------------------------------- CLI
class FlwrCli:
    """The flwr CLI against the Control API: pyproject federations (flwr <= 1.25) or a
    SuperLink connection in $FLWR_HOME/config.toml (flwr >= 1.26)."""

    NAME = "registrar"

    def __init__(self, config: dict, work: Path) -> None:
        self.work = work
        self.connections = config["cli"] == "connections"
        address, ca = json.dumps(config["control_address"]), json.dumps(config["root_certificates"])
        self.env = {
            **os.environ,
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_HOME": str(work / "home"),
        }
        (work / "home").mkdir(parents=True, exist_ok=True)
        if self.connections:
            (work / "home" / "config.toml").write_text(
                f'[superlink]\ndefault = "{self.NAME}"\n\n[superlink.{self.NAME}]\n'
                f"address = {address}\nroot-certificates = {ca}\n"
            )
            self.target = [self.NAME]
        else:
            app = work / "app"
            app.mkdir(exist_ok=True)
            (app / "pyproject.toml").write_text(
                '[project]\nname = "node-registrar"\nversion = "1.0.0"\n\n'
                '[tool.flwr.app]\npublisher = "opennebula"\n\n'
                '[tool.flwr.app.components]\nserverapp = "x:app"\nclientapp = "x:app"\n\n'
                f"[tool.flwr.federations.{self.NAME}]\n"
                f"address = {address}\nroot-certificates = {ca}\n"
            )
            self.target = [str(app), self.NAME]

    def call(self, *args: str) -> dict:
        cmd = ["flwr", "supernode", *args, *self.target, "--format", "json"]
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=CLI_TIMEOUT,
                env=self.env,
                cwd=self.work,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"success": False, "error-message": f"timed out after {CLI_TIMEOUT}s"}
        out = ANSI_RE.sub("", proc.stdout)
        start = out.find("{")
        try:
            answer, _end = json.JSONDecoder().raw_decode(out[start:]) if start >= 0 else (None, 0)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            tail = (out + proc.stderr).strip()[-500:]
            message = f"no JSON answer (rc {proc.returncode}): {tail}"
            return {"success": False, "error-message": message}
        return answer

    def register(self, key: str) -> dict:
        path = self.work / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.pub"
        path.write_text(key + "\n")
        try:
            return self.call("register", str(path))
        finally:
            path.unlink(missing_ok=True)

    def unregister(self, node_id: str) -> dict:
        return self.call("unregister", str(node_id))

    def live_node_ids(self) -> set[str] | None:
        answer = self.call("list")
        if not answer.get("success"):
            log(f"cannot list the SuperNodes: {error_text(answer)}")
            return None
        return {
            str(node.get("node-id"))
            for node in answer.get("nodes") or []
            if node.get("status") in LIVE_STATUSES
        }


def error_text(answer: dict) -> str:
    return " ".join(str(answer.get("error-message") or answer).split())[:300]


# -------------------------------------------------------------------------------- state
def load_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        state = {}
    return {"nodes": dict(state.get("nodes") or {}), "pins": dict(state.get("pins") or {})}


def save_state(path: Path, state: dict) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    os.replace(handle.name, path)


# --------------------------------------------------------------------------------- loop
def sync(config: dict, cli: FlwrCli, state: dict, check: bool) -> None:
    """One cycle: read the sources, register and unregister, save the state."""
    sources = file_keys(Path(config["keys_dir"]))
    if config.get("onegate"):
        published = onegate_vms(config["onegate"])
        if published is None:  # keep what OneGate said before
            for key, node in state["nodes"].items():
                sources.update({s: key for s in node["sources"] if s.startswith("vm:")})
        else:
            sources.update(pinned_vm_keys(published, state["pins"]))
    desired = wanted(sources)
    live = cli.live_node_ids() if check else None
    register, unregister = plan(state["nodes"], desired, live)
    for key, node_id in unregister:
        answer = cli.unregister(node_id) if node_id else {"success": True}
        if answer.get("success") or "not found" in error_text(answer).lower():
            log(f"unregistered node {node_id} ({', '.join(state['nodes'][key]['sources'])})")
            del state["nodes"][key]
        else:
            log(f"could not unregister node {node_id}: {error_text(answer)}")
    for key in register:
        answer = cli.register(key)
        if answer.get("success"):
            node_id = str(answer.get("node-id"))
        elif "already in use" in error_text(answer):
            node_id = state["nodes"].get(key, {}).get("node_id")
        else:
            log(f"could not register the key of {', '.join(desired[key])}: {error_text(answer)}")
            continue
        state["nodes"][key] = {"node_id": node_id, "sources": desired[key]}
        log(f"registered node {node_id} ({', '.join(desired[key])})")
    for key, node in state["nodes"].items():
        node["sources"] = desired.get(key, node["sources"])
    save_state(Path(config["state_file"]), state)


def main(argv: list[str]) -> int:
    if not argv or argv[1:] not in ([], ["--once"]):
        print("usage: node_registrar.py CONFIG.json [--once]", file=sys.stderr)
        return 2
    config = json.loads(Path(argv[0]).read_text())
    work = Path(tempfile.mkdtemp(prefix="node-registrar-"))
    cli = FlwrCli(config, work)
    state = load_state(Path(config["state_file"]))
    source = "key files" + (" and OneGate" if config.get("onegate") else "")
    log(f"watching {source} every {config['interval']}s; {len(state['nodes'])} nodes known")
    cycle = 0
    while True:
        sync(config, cli, state, check=cycle % int(config.get("check_every", 30)) == 0)
        if argv[1:] == ["--once"]:
            return 0
        cycle += 1
        time.sleep(float(config["interval"]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
