"""scripts/appliance_demo.py without Docker: the progress lines, the picture, the clean-up."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "appliance_demo", ROOT / "scripts" / "appliance_demo.py"
)
appliance_demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(appliance_demo)


def vm(state=1, lcm=0, **published):
    return {
        "id": 7,
        "name": "superlink_0",
        "state": state,
        "lcm_state": lcm,
        "user_template": published,
    }


def test_vm_progress_reports_each_change_once():
    progress = appliance_demo.VmProgress(demo=None)
    assert progress.changes(vm()) == ["booting"]
    assert progress.changes(vm()) == []
    assert progress.changes(vm(3, 3)) == ["running"]
    assert progress.changes(vm(3, 3, READY="YES", FL_READY="YES")) == ["READY=YES", "FL_READY=YES"]
    assert progress.changes(vm(3, 3, READY="YES", FL_READY="YES")) == []
    assert progress.changes(vm(3, 3, READY="YES", FL_READY="NO", FL_ERROR="bad")) == [
        "FL_READY=NO",
        "FL_ERROR=bad",
    ]


def test_plot_draws_every_round_with_the_initial_model(tmp_path, monkeypatch):
    demo = appliance_demo.Demo("unit-plot")
    monkeypatch.setattr(demo, "dir", tmp_path)
    result = {
        "run_id": "42",
        "status": "finished:completed",
        "initial": {"round": 0, "loss": 2.30, "accuracy": 0.10},
        "rounds": [{"round": r, "loss": 1 / r, "accuracy": 0.9 + r / 100} for r in (1, 2, 3)],
    }
    path = demo.plot(result)
    assert path == tmp_path / "training.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 600 and height > 250


def test_down_removes_what_the_demo_wrote(tmp_path, monkeypatch):
    demo = appliance_demo.Demo("unit-down")
    monkeypatch.setattr(demo, "dir", tmp_path / "appliance-unit-down")
    (demo.dir / "context").mkdir(parents=True)
    (demo.dir / "run.json").write_text("{}")
    demo.down()  # no emulator runs: nothing to destroy, the directory goes
    assert not demo.dir.exists()


def test_rerun_hints_name_a_flower_configuration_that_reaches_the_superlink(tmp_path, monkeypatch):
    demo = appliance_demo.Demo("unit-hints")
    monkeypatch.setattr(demo, "dir", appliance_demo.ROOT / ".cache" / "appliance-unit-hints")
    demo.dir.mkdir(parents=True, exist_ok=True)
    try:
        demo.federation_file = demo.dir / "federation.toml"
        demo.ca_file = demo.dir / "flower-ca.crt"
        demo.federation_file.write_text(
            '[tool.flwr.federations.appliance]\naddress = "10.1.2.3:9093"\n'
            f'root-certificates = "{demo.ca_file}"\n'
        )
        hints = demo.rerun_hints()
        assert hints["the demo again"] == "make demo-run DEMO_ID=unit-hints"
        assert hints["remove the demo"] == "make demo-down"
        config = (demo.dir / "flwr" / "config.toml").read_text()
        assert '[superlink]\ndefault = "appliance"' in config
        assert 'address = "10.1.2.3:9093"' in config and str(demo.ca_file) in config
        assert hints["your own Flower App"].startswith(
            "FLWR_HOME=.cache/appliance-unit-hints/flwr "
        )
        assert "/flwr run <app directory> appliance --stream" in hints["your own Flower App"]
    finally:
        demo.down()
