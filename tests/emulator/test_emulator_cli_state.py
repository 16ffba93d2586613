"""Running the emulator by hand (``python -m opennebula_emulator``) and its state file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from emu_support import FLOWER_TEMPLATE, ROOT, Flow, fast_timings

from opennebula_emulator import Emulator

pyone = pytest.importorskip("pyone")


def start_cli(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opennebula_emulator",
            "--oned-port",
            "0",
            "--oneflow-port",
            "0",
            "--onegate-port",
            "0",
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    urls: dict[str, str] = {}
    assert proc.stdout is not None
    while len(urls) < 3:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "no output"
        name, url = line.split()
        urls[name] = url
    return proc, urls


def stop_cli(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_cli_serves_and_keeps_its_state(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    proc, urls = start_cli("--fast", "--seed", "3", "--pool", "3", "--state", str(state))
    try:
        one = pyone.OneServer(urls["oned"], session="oneadmin:password")
        assert [vm.NAME for vm in one.vmpool.infoextended(-2, -1, -1, 3).VM] == [
            "pool-2",
            "pool-1",
            "pool-0",
        ]
        with urllib.request.urlopen(urls["onegate"] + "/_emulator/counters", timeout=10) as resp:  # noqa: S310 - local URL
            assert json.load(resp)["oned"] == {"one.vmpool.infoextended": 1}
        tid = int(
            Flow(urls["oneflow"]).json("POST", "/service_template", FLOWER_TEMPLATE)["DOCUMENT"][
                "ID"
            ]
        )
    finally:
        stop_cli(proc)
    saved = json.loads(state.read_text())
    assert [vm["name"] for vm in saved["vms"]] == ["pool-0", "pool-1", "pool-2"]

    proc, urls = start_cli("--fast", "--state", str(state))
    try:
        one = pyone.OneServer(urls["oned"], session="oneadmin:password")
        assert len(one.vmpool.infoextended(-2, -1, -1, 3).VM) == 3
        assert (
            Flow(urls["oneflow"]).json("GET", f"/service_template/{tid}")["DOCUMENT"]["NAME"]
            == "flower-fl"
        )
        new = one.template.instantiate(0, "after-restart", False, "", False)
        assert new == 3  # ids continue after a reload
    finally:
        stop_cli(proc)


def test_state_round_trip_keeps_tokens_and_services(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with Emulator(timings=fast_timings(), seed=9) as emu:
        emu.add_service_template(FLOWER_TEMPLATE)
        sid = emu.instantiate_service(
            0,
            {
                "user_inputs_values": {"FL_ROUNDS": "1", "FL_STRATEGY": "FedAvg"},
                "roles": [{"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "z"}}],
            },
            wait_running=True,
        )
        token = emu.vm_token(1)
        body = emu.service(sid)
        emu.save_state(path)
    with Emulator(timings=fast_timings(), state_file=path) as emu2:
        assert emu2.vm_token(1) == token
        assert emu2.service(sid) == body
        assert emu2.vm(2).user_template["FL_NODE_LABEL"] == "z"


def test_cli_faults() -> None:
    """--fault: the first two template creations are done but answered 503; a bad spec is
    refused with what is allowed."""
    proc, urls = start_cli("--fast", "--fault", "oneflow:POST /service_template=503*2")
    try:
        flow = Flow(urls["oneflow"])
        statuses = [flow.call("POST", "/service_template", FLOWER_TEMPLATE)[0] for _ in range(3)]
        assert statuses == [503, 503, 201]
        assert len(flow.json("GET", "/service_template")["DOCUMENT_POOL"]["DOCUMENT"]) == 3
    finally:
        stop_cli(proc)
    bad = subprocess.run(
        [sys.executable, "-m", "opennebula_emulator", "--fault", "oneflow:POST /x=500"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "one of 502, 503, 504, drop" in bad.stderr
