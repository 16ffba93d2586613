"""Bad input is refused before anything changes, with a message naming variable and value.

Each case runs a role phase for real on this machine with its directory pointed at an empty
temporary one; the run must fail with the expected message and leave that directory empty.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "isolation-choice": (
        "superlink",
        "configure",
        {"superlink_isolation": "thread"},
        ["superlink_isolation", "thread", "subprocess, process"],
    ),
    "fleet-port-range": (
        "superlink",
        "configure",
        {"superlink_fleet_port": 70000},
        ["superlink_fleet_port=70000", "1-65535"],
    ),
    "same-ports": (
        "superlink",
        "configure",
        {"superlink_control_port": 9092},
        ["superlink_control_port=9092", "distinct"],
    ),
    "metrics-port-clash": (
        "superlink",
        "configure",
        {"superlink_metrics_enabled": True, "superlink_metrics_port": 9093},
        ["superlink_metrics_port=9093", "not the Fleet port 9092 nor the Control port 9093"],
    ),
    "metrics-without-prometheus-client": (
        "superlink",
        "configure",
        {"superlink_metrics_enabled": True, "superlink_build_packages": ["scikit-learn"]},
        ["superlink_build_packages=['scikit-learn']", "prometheus-client"],
    ),
    "metrics-interval": (
        "superlink",
        "configure",
        {"superlink_metrics_enabled": True, "superlink_metrics_interval": 0},
        ["superlink_metrics_interval=0", "seconds >= 1"],
    ),
    "metrics-sources": (
        "superlink",
        "configure",
        {"superlink_metrics_enabled": True, "superlink_metrics_allowed_cidrs": ["prometheus"]},
        ["superlink_metrics_allowed_cidrs", "prometheus"],
    ),
    "log-format": (
        "supernode",
        "configure",
        {"supernode_log_format": "xml"},
        ["supernode_log_format", "xml", "text, json"],
    ),
    "flower-version": (
        "superlink",
        "install",
        {"superlink_flower_version": "latest"},
        ["superlink_flower_version='latest'", "1.42.0"],
    ),
    "log-level": (
        "superlink",
        "configure",
        {"superlink_log_level": "LOUD"},
        ["superlink_log_level", "LOUD", "DEBUG, INFO"],
    ),
    "load-without-archive": (
        "superlink",
        "install",
        {"superlink_image_source": "load"},
        ["'load' needs an archive path"],
    ),
    "image-source-choice": (
        "supernode",
        "install",
        {"supernode_image_source": "registry"},
        ["supernode_image_source", "registry", "pull, build, load"],
    ),
    "framework": (
        "supernode",
        "install",
        {"supernode_framework": "jax"},
        ["supernode_framework='jax'", "sklearn, pytorch, tensorflow"],
    ),
    "superlink-address-missing": (
        "supernode",
        "configure",
        {},
        ["supernode_superlink_address=''", "host:port"],
    ),
    "superlink-address-no-port": (
        "supernode",
        "configure",
        {"supernode_superlink_address": "10.0.0.5"},
        ["supernode_superlink_address='10.0.0.5'", "host:port"],
    ),
    "node-config-key": (
        "supernode",
        "configure",
        {"supernode_superlink_address": "10.0.0.5:9092", "supernode_node_config": {"a b": 1}},
        ["key 'a b' is not allowed"],
    ),
    "node-config-value": (
        "supernode",
        "configure",
        {"supernode_superlink_address": "10.0.0.5:9092", "supernode_node_config": {"k": [1]}},
        ["value of 'k' is a list"],
    ),
    "max-retries-type": (
        "supernode",
        "configure",
        {"supernode_superlink_address": "10.0.0.5:9092", "supernode_max_retries": "many"},
        ["supernode_max_retries", "many", "int"],
    ),
    "training-key": (
        "superlink",
        "configure",
        {"superlink_training": {"num_rounds": 3, "rounds": 5}},
        ["superlink_training has unknown keys: rounds", "num_rounds, strategy"],
    ),
    "discovery-backoff-choice": (
        "supernode",
        "configure",
        {"supernode_discovery_backoff": "linear"},
        ["supernode_discovery_backoff", "linear", "fixed, exponential"],
    ),
    "appliance-role-choice": (
        "appliance",
        "install",
        {"appliance_role": "edge"},
        ["appliance_role", "edge", "superlink, supernode"],
    ),
    "docker-source": (
        "docker",
        "install",
        {"docker_source": "snap"},
        ["docker_source", "snap", "ce, distribution"],
    ),
    "registry-without-address": (
        "docker",
        "configure",
        {"docker_registries": [{"ca_cert": "", "username": "u", "password": "hunter2-secret"}]},
        ["Invalid docker_registries: entry 0 (address ) has no address", "host[:port]"],
    ),
    "registry-address-url": (
        "docker",
        "install",
        {"docker_registries": [{"address": "https://registry.example.com/v2"}]},
        ["https://registry.example.com/v2 is not a registry address", "no scheme or path"],
    ),
    "registry-password-without-username": (
        "docker",
        "configure",
        {"docker_registries": [{"address": "registry.example.com:5000", "password": "s3cr3t-pw"}]},
        ["entry 0 (address registry.example.com:5000) has a password without a username"],
    ),
    "registry-ca-not-pem": (
        "docker",
        "configure",
        {"docker_registries": [{"address": "[fd00::1]:5000", "ca_cert": "not a certificate"}]},
        ["entry 0 (address [fd00::1]:5000): ca_cert is not a PEM certificate"],
    ),
    "registry-twice": (
        "docker",
        "configure",
        {"docker_registries": [{"address": "r.example:5000"}, {"address": "r.example:5000"}]},
        ["address r.example:5000 is listed more than once"],
    ),
    "registry-not-a-list": (
        "docker",
        "configure",
        {"docker_registries": {"address": "r.example:5000"}},
        ["docker_registries", "list"],
    ),
    "image-registry-scheme": (
        "superlink",
        "install",
        {"superlink_image_registry": "https://registry.example.com/"},
        [
            "flower_container_image_registry='https://registry.example.com/'",
            "superlink_image_registry",
            "host[:port][/path]",
        ],
    ),
    # At configure the TLS material comes first: the image settings are checked before it.
    "image-registry-at-configure": (
        "superlink",
        "configure",
        {"superlink_image_registry": "registry.example.com:"},
        ["flower_container_image_registry='registry.example.com:'", "superlink_image_registry"],
    ),
    "supernode-image-at-configure": (
        "supernode",
        "configure",
        {"supernode_superlink_address": "10.0.0.5:9092", "supernode_image_source": "load"},
        ["'load' needs an archive path"],
    ),
    "fleet-cidrs": (
        "superlink",
        "configure",
        {"superlink_fleet_allowed_cidrs": ["nic_networks", "10.0.0.0/33"]},
        ["superlink_fleet_allowed_cidrs: '10.0.0.0/33' is not a network", "nic_networks"],
    ),
    "control-cidrs": (
        "superlink",
        "configure",
        {"superlink_control_allowed_cidrs": ["operators"]},
        ["superlink_control_allowed_cidrs: 'operators' is not a network", "192.0.2.7"],
    ),
    "ssh-cidrs": (
        "superlink",
        "configure",
        {"firewall_ssh_allowed_cidrs": ["anywhere"]},
        ["firewall_ssh_allowed_cidrs: 'anywhere' is not a network", "fd00::/64"],
    ),
    "firewall-service-port": (
        "firewall",
        "configure",
        {"firewall_services": [{"name": "web", "port": 70000, "cidrs": []}]},
        ["firewall_services (web): port 70000 of web", "1-65535"],
    ),
    "gpu-devices-name": (
        "supernode",
        "configure",
        {
            "supernode_superlink_address": "10.0.0.5:9092",
            "gpu_enabled": True,
            "gpu_cuda_visible_devices": "gpu0",
        },
        ["gpu_cuda_visible_devices='gpu0'", "all, or GPU indexes separated by commas"],
    ),
    "gpu-devices-negative": (
        "gpu",
        "configure",
        {"gpu_enabled": True, "gpu_cuda_visible_devices": "-1"},
        ["gpu_cuda_visible_devices='-1'", "such as 0 or 0,1"],
    ),
    "gpu-memory-fraction-zero": (
        "supernode",
        "configure",
        {
            "supernode_superlink_address": "10.0.0.5:9092",
            "gpu_enabled": True,
            "gpu_memory_fraction": 0,
        },
        ["gpu_memory_fraction='0'", "above 0 and at most 1"],
    ),
    "gpu-memory-fraction-above-one": (
        "gpu",
        "configure",
        {"gpu_memory_fraction": "1.5"},
        ["gpu_memory_fraction='1.5'", "above 0 and at most 1"],
    ),
    "dcgm-without-gpu": (
        "supernode",
        "configure",
        {"supernode_superlink_address": "10.0.0.5:9092", "gpu_dcgm_enabled": True},
        ["gpu_dcgm_enabled=True", "true needs gpu_enabled"],
    ),
    "dcgm-cidrs": (
        "supernode",
        "configure",
        {
            "supernode_superlink_address": "10.0.0.5:9092",
            "gpu_enabled": True,
            "gpu_dcgm_enabled": True,
            "gpu_dcgm_allowed_cidrs": ["prometheus"],
        },
        ["gpu_dcgm_allowed_cidrs: 'prometheus' is not a network"],
    ),
    "node-auth-without-tls": (
        "superlink",
        "configure",
        {"superlink_tls_enabled": False, "superlink_node_auth_enabled": True},
        ["superlink_node_auth_enabled=True", "needs superlink_tls_enabled, which is False"],
    ),
    "node-auth-sync-interval": (
        "superlink",
        "configure",
        {"superlink_node_auth_sync_interval": 0},
        ["superlink_node_auth_sync_interval=0", "seconds > 0"],
    ),
    "node-auth-key": (
        "superlink",
        "configure",
        {"superlink_node_auth_keys": {"edge-1": "ssh-rsa AAAAB3NzaC1yc2E= x", "../x": None}},
        ["edge-1 (not an OpenSSH ECDSA public key)", "../x", "ecdsa-sha2-nistp256/384/521"],
    ),
    "memory-limit": (
        "superlink",
        "configure",
        {"superlink_memory_limit": "lots"},
        ["superlink_memory_limit='lots'", "512m or 2g"],
    ),
    "pids-limit": (
        "supernode",
        "configure",
        {"supernode_superlink_address": "10.0.0.5:9092", "supernode_pids_limit": 0},
        ["supernode_pids_limit=0", "a number of tasks > 0"],
    ),
    "supernode-node-auth-without-tls": (
        "supernode",
        "configure",
        {
            "supernode_superlink_address": "10.0.0.5:9092",
            "supernode_tls_enabled": False,
            "supernode_node_auth_enabled": True,
        },
        ["supernode_node_auth_enabled=True", "needs supernode_tls_enabled, which is False"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_before_any_change(case, tmp_path):
    role, phase, extra, expected = CASES[case]
    workdir = tmp_path / "flower"
    workdir.mkdir()
    variables = {
        "role": role,
        "phase": phase,
        f"{role}_dir": str(workdir),
        "ansible_python_interpreter": sys.executable,
        **extra,
    }
    proc = subprocess.run(
        [
            "ansible-playbook",
            "tests/integration/playbooks/phase.yml",
            "-i",
            "localhost,",
            "-e",
            json.dumps(variables),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_STDOUT_CALLBACK": "default"},
        check=False,
    )
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0, output
    for text in expected:
        assert text in output, f"{text!r} not in the error output:\n{output}"
    # Passwords in the cases (registry entries) never show up, not even in the refusal.
    assert "hunter2" not in output and "s3cr3t" not in output, output
    assert "changed=0" in output, output
    assert list(workdir.iterdir()) == []
