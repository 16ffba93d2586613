"""The gpu role without a GPU: detection, the CPU fallback and its warning, nothing NVIDIA on
the VM; the container definition of a VM with GPUs (detection facts set by converge.yml); the
bake's NVIDIA tasks in check mode and a key of the wrong fingerprint."""

import json
import os
import subprocess

import pytest

RESULTS = "/var/lib/flower-gpu-test/results.json"
PROJECT = os.environ["MOLECULE_PROJECT_DIRECTORY"]
BAKE = os.path.join(PROJECT, "molecule", "gpu", "bake_check.yml")
DOCTOR = os.path.join(PROJECT, "playbooks", "doctor.yml")


@pytest.fixture(scope="module")
def results(host):
    return json.loads(host.file(RESULTS).content_string)


def test_detection_finds_no_gpu(results):
    facts = results["this_vm"]["flower_gpu"]
    assert facts["pci_devices"] == [] and facts["gpus"] == []
    assert (facts["usable"], facts["missing"]) == (False, "pci")
    assert "VM template" in facts["reason"]


def test_cpu_fallback(results):
    container = results["this_vm"]["gpu_container"]
    assert container["gpus"] == ""
    assert container["env"] == {"FL_GPU_AVAILABLE": "NO"}
    assert container["attributes"] == {"FL_GPU_AVAILABLE": "NO"}
    assert container["dcgm"] is False and container["firewall_services"] == []


def test_warning_in_the_journal(host):
    log = host.check_output("journalctl --no-pager -t flower-gpu -p warning")
    assert "FL_GPU_ENABLED=YES but GPU not available: no NVIDIA PCI device" in log
    assert "Training on the CPU; the DCGM exporter is not started." in log


def test_nothing_nvidia_installed_or_configured(host):
    assert host.run("dpkg -l | grep -i nvidia").stdout == ""
    assert not host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources").exists
    assert not host.file("/etc/apt/keyrings/nvidia-container-toolkit.asc").exists
    assert "runtimes" not in json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert "nvidia" not in host.check_output("docker info --format '{{json .Runtimes}}'")
    assert not host.file("/etc/systemd/system/flower-dcgm-exporter.service").exists


def test_all_gpus(results):
    container = results["all"]["gpu_container"]
    assert container["gpus"] == "all"
    assert container["env"] == {
        "FL_GPU_AVAILABLE": "YES",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "FL_GPU_MEMORY_FRACTION": "",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    }
    assert container["attributes"] == {
        "FL_GPU_AVAILABLE": "YES",
        "FL_GPU_COUNT": "2",
        "FL_GPU_MODEL": "NVIDIA H100 80GB HBM3",
    }
    assert container["dcgm"] is True
    assert container["firewall_services"] == [
        {"name": "dcgm", "port": 9400, "cidrs": ["192.0.2.5"], "variable": "gpu_dcgm_allowed_cidrs"}
    ]


def test_one_gpu_is_numbered_from_zero_inside(results):
    container = results["second"]["gpu_container"]
    assert container["gpus"] == '"device=1"'
    assert container["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert container["env"]["FL_GPU_MEMORY_FRACTION"] == "0.8"
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in container["env"]
    assert container["attributes"]["FL_GPU_COUNT"] == "1"


def test_an_absent_index_falls_back(results, host):
    container = results["absent"]["gpu_container"]
    assert container["gpus"] == "" and container["env"] == {"FL_GPU_AVAILABLE": "NO"}
    log = host.check_output("journalctl --no-pager -t flower-gpu -p warning")
    assert "GPU index(es) 3 of gpu_cuda_visible_devices=0,3 not present (this VM has 0,1)" in log


def test_rendered_unit_gives_docker_the_devices(host):
    # systemd's own parsing of the product's unit template: the quotes reach docker.
    exec_start = host.check_output("systemctl show -p ExecStart --value flower-gpu-render")
    # systemctl prints the argv elements as they are, joined by spaces: the quotes are docker's.
    assert (
        ' --gpus "device=0,1" --pids-limit' in exec_start
        or ' --gpus "device=0,1" --env-file' in exec_start
    ), exec_start
    env = host.file("/var/lib/flower-gpu-test/supernode.env").content_string
    assert "CUDA_VISIBLE_DEVICES=0,1\n" in env and "FL_GPU_AVAILABLE=YES\n" in env


def _playbook(path, *args):
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=os.path.join(PROJECT, ".collections"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_FORCE_COLOR="0",
    )
    run = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            path,
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return run.returncode, json.loads(run.stdout)


def _task_results(report, name):
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].split(" : ", 1)[-1] == name:
                return next(iter(task["hosts"].values()))
    raise AssertionError(f"no task {name!r} ran")


def test_bake_in_check_mode_plans_the_repositories(host):
    # What the repository tasks need, as a first bake would have installed it (not NVIDIA's).
    host.run_test("apt-get install -y -q python3-debian gpg")
    rc, report = _playbook(
        BAKE, "--check", "--diff", "-e", "gpu_toolkit_key_url=file:///etc/os-release"
    )
    assert rc == 0, report
    repo = _task_results(report, "NVIDIA Container Toolkit repository")
    assert repo["changed"] is True
    assert repo["dest"] == "/etc/apt/sources.list.d/nvidia-container-toolkit.sources"
    assert "URIs: https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)\n" in repo["repo"]
    assert "Signed-By: /etc/apt/keyrings/nvidia-container-toolkit.asc\n" in repo["repo"]
    assert "Suites: /\n" in repo["repo"]
    dcgm = _task_results(report, "DCGM exporter image")
    assert dcgm["changed"] is True and "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.1-" in str(
        dcgm["actions"]
    )
    nonfree = _task_results(report, "Debian's contrib, non-free and non-free-firmware components")
    assert "Components: contrib non-free non-free-firmware\n" in nonfree["repo"]
    # Check mode changed nothing.
    assert not host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources").exists
    assert not host.file("/etc/apt/sources.list.d/debian-nonfree.sources").exists


def test_bake_refuses_a_key_of_another_fingerprint(host):
    # A real key (Debian's archive key) downloaded for real: not NVIDIA's, so removed again.
    rc, report = _playbook(
        BAKE,
        "-e",
        "gpu_toolkit_key_url=file:///usr/share/keyrings/debian-archive-keyring.gpg",
        "-e",
        "gpu_driver_install=false",
    )
    assert rc != 0
    failure = _task_results(report, "Stop here")
    assert "gpu_toolkit_key_fingerprint=C95B321B61E88C1809C4F759DDCAE044F796ECB0" in failure["msg"]
    assert not host.file("/etc/apt/keyrings/nvidia-container-toolkit.asc").exists
    assert not host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources").exists


def test_doctor_names_the_broken_layer():
    # A missing GPU is a warning (the CPU fallback) unless doctor_gpu_required.
    rc, report = _playbook(DOCTOR, "-e", "doctor_gpu_required=true")
    assert rc != 0
    failed = _task_results(report, "Report, and fail on a failed check")["msg"]
    assert any(line.startswith("GPU layers | ") and "layer pci" in line for line in failed), failed
    layers = _task_results(report, "Report")["msg"]
    assert "layer 2, VM - NVIDIA PCI devices: none" in layers
    assert "layer 3, VM - nvidia-smi: not installed" in layers
    verdict = _task_results(report, "Say which layer is broken")["msg"]
    assert verdict.startswith("GPU layer pci is missing: no NVIDIA PCI device")
