"""opennebula.flower.gpu_info: each layer's detection, on sysfs trees and commands made here.

The machines running these tests have no GPU: the PCI devices and the kernel module are
directories of a sysfs tree under tmp_path, nvidia-smi and the toolkit's hook small scripts on
PATH. The molecule scenario `gpu` runs the module on a real /sys.
"""

from __future__ import annotations

import os
import stat

import pytest
from ansible.module_utils import basic
from ansible_collections.opennebula.flower.plugins.modules import gpu_info

H100 = ("0000:01:00.0", "0x10de", "0x2330", "0x030200")
SMI_ROWS = (
    "0, NVIDIA H100 80GB HBM3, 81559, 00000000:01:00.0\n"
    "1, NVIDIA H100 80GB HBM3, 81559, 00000000:02:00.0\n"
)


def _device(sysfs, address, vendor, device, pci_class, driver=""):
    path = sysfs / "bus" / "pci" / "devices" / address
    path.mkdir(parents=True)
    for name, value in (("vendor", vendor), ("device", device), ("class", pci_class)):
        (path / name).write_text(value + "\n")
    if driver:
        target = sysfs / "bus" / "pci" / "drivers" / driver
        target.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path / "driver")


def _command(bindir, name, body):
    script = bindir / name
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def sysfs(tmp_path):
    root = tmp_path / "sys"
    (root / "bus" / "pci" / "devices").mkdir(parents=True)
    # Not GPUs: an Intel VGA controller, the H100's own audio-like function (class 0x0403).
    _device(root, "0000:00:02.0", "0x8086", "0x1234", "0x030000", "i915")
    _device(root, "0000:01:00.1", "0x10de", "0x22a3", "0x040300")
    return root


@pytest.fixture
def bindir(tmp_path, monkeypatch):
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", f"{path}:/usr/bin:/bin")
    return path


@pytest.fixture
def warned(monkeypatch):
    """What the module passes to AnsibleModule.warn (where Ansible then shows it depends on
    the process: its display or the result)."""
    messages = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: messages.append(text))
    return messages


def _detect(run_module, sysfs, required=True):
    result, failed = run_module(gpu_info.main, {"sysfs": str(sysfs), "required": required})
    assert not failed and result["changed"] is False
    return result["ansible_facts"]["flower_gpu"]


def _driver(sysfs, version="570.172.08"):
    module = sysfs / "module" / "nvidia"
    module.mkdir(parents=True)
    (module / "version").write_text(version + "\n")


def test_no_nvidia_device_is_the_pci_layer(run_module, sysfs, bindir, warned):
    facts = _detect(run_module, sysfs)
    assert facts["pci_devices"] == []
    assert (facts["usable"], facts["missing"]) == (False, "pci")
    assert any("missing layer: pci" in w and "Training on the CPU" in w for w in warned)


def test_not_required_does_not_warn(run_module, sysfs, bindir, warned):
    facts = _detect(run_module, sysfs, required=False)
    assert facts["missing"] == "pci"
    assert not any("GPU not available" in w for w in warned)


def test_device_without_driver(run_module, sysfs, bindir):
    _device(sysfs, *H100, driver="vfio-pci")
    facts = _detect(run_module, sysfs)
    assert facts["pci_devices"] == [
        {
            "address": "0000:01:00.0",
            "vendor": "0x10de",
            "device": "0x2330",
            "class": "0x0302",
            "driver": "vfio-pci",
        }
    ]
    assert facts["missing"] == "driver" and "lsmod" in facts["reason"]


def test_driver_without_nvidia_smi(run_module, sysfs, bindir):
    _device(sysfs, *H100, driver="nvidia")
    _driver(sysfs)
    facts = _detect(run_module, sysfs)
    assert facts["driver_loaded"] and facts["driver_version"] == "570.172.08"
    assert facts["missing"] == "nvidia-smi" and "not installed" in facts["reason"]


def test_nvidia_smi_that_finds_no_device(run_module, sysfs, bindir):
    _device(sysfs, *H100, driver="nvidia")
    _driver(sysfs)
    _command(bindir, "nvidia-smi", 'echo "No devices were found"; exit 6')
    facts = _detect(run_module, sysfs)
    assert facts["gpus"] == []
    assert facts["missing"] == "nvidia-smi" and "No devices were found" in facts["reason"]


def test_no_toolkit(run_module, sysfs, bindir):
    _device(sysfs, *H100, driver="nvidia")
    _driver(sysfs)
    _command(bindir, "nvidia-smi", f"printf '{SMI_ROWS}'")
    facts = _detect(run_module, sysfs)
    assert [g["index"] for g in facts["gpus"]] == [0, 1]
    assert facts["missing"] == "toolkit" and "gpu_install_enabled" in facts["reason"]


def test_every_layer_there(run_module, sysfs, bindir, warned):
    _device(sysfs, *H100, driver="nvidia")
    _driver(sysfs)
    _command(bindir, "nvidia-smi", f"printf '{SMI_ROWS}'")
    _command(bindir, "nvidia-container-runtime-hook", "exit 0")
    facts = _detect(run_module, sysfs)
    assert (facts["usable"], facts["missing"], facts["reason"]) == (True, "", "")
    assert facts["gpus"][0] == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "memory_mib": 81559,
        "pci_bus_id": "00000000:01:00.0",
    }
    assert facts["toolkit"].endswith("/nvidia-container-runtime-hook")
    assert not any("GPU not available" in w for w in warned)


def test_parse_smi_skips_what_is_not_a_row():
    rows = gpu_info.parse_smi("garbage\n0, Tesla T4, [N/A], 00000000:00:05.0\n")
    assert rows == [
        {"index": 0, "name": "Tesla T4", "memory_mib": None, "pci_bus_id": "00000000:00:05.0"}
    ]
