"""playbooks/deploy.yml -> scale.yml -> destroy.yml against the emulator, a background thread
playing the guests (what the appliances publish through OneGate), plus the service template files
(oneflow/) against OneFlow 7.0 and 6.10, and bad input refused before anything is created."""

from __future__ import annotations

import base64
import copy
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import pki

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
TEMPLATES = {
    "7.0": ROOT / "oneflow" / "flower-service.yaml",
    "6.10": ROOT / "oneflow" / "flower-service-6.10.yaml",
}
GPU_TEMPLATES = {
    "7.0": ROOT / "oneflow" / "flower-service-gpu.yaml",
    "6.10": ROOT / "oneflow" / "flower-service-gpu-6.10.yaml",
}
# deploy.yml's tasks are those of the opennebula.flower.deploy role: named "<role> : <task>".
ROLE = "opennebula.flower.deploy : "
QCOW2 = b"QFI\xfb" + b"\0" * 20 + (10 * 2**30).to_bytes(8, "big") + b"\0" * 64


def loopback_network(emu: Any) -> int:
    """A virtual network whose addresses are this host's loopback ones: the test can serve the
    SuperLink's TLS at its VM's address, and nothing else answers there."""
    return emu.add_network(
        "loopback", ar_start="127.77.0.10", network_address="127.77.0.0",
        gateway="127.77.0.1", dns="127.77.0.1",
    ).id  # fmt: skip


class ControlApi:
    """The TLS handshake of a SuperLink's Control API at its VM's address, with a certificate
    from a CA of its own (``pem``): what deploy.yml checks the published FL_CA_CERT against."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pem: Any = None
        self.listener: socket.socket | None = None

    def serve(self, address: str) -> str:
        self.pem = pki.operator_pki([address])
        (self.folder / "server.pem").write_text(self.pem.cert)
        (self.folder / "server.key").write_text(self.pem.key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.folder / "server.pem", self.folder / "server.key")
        listener = self.listener = socket.create_server((address, 9093))

        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:  # closed
                    return
                try:
                    context.wrap_socket(conn, server_side=True).close()
                except (OSError, ssl.SSLError):
                    conn.close()

        threading.Thread(target=accept, daemon=True).start()
        return base64.b64encode(self.pem.ca.encode()).decode()


@pytest.fixture
def control_api(tmp_path: Path) -> Any:
    api = ControlApi(tmp_path)
    yield api
    if api.listener is not None:
        api.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() that holds the address
        api.listener.close()


def guests(emu: Any, helpers: Any, tls: ControlApi | None = None) -> Any:
    """Every VM of a service that reaches RUNNING publishes what the appliances publish: the
    SuperLink READY, FL_READY, FL_ENDPOINT, FL_TLS, FL_VERSION (and with ``tls`` FL_CA_CERT,
    base64 PEM, served there); a SuperNode READY and FL_NODE_READY. Through OneGate, with the
    VM's token."""

    def play(stop: Any) -> dict[int, str]:
        done: dict[int, str] = {}
        while not stop.is_set():
            with emu.lock:
                running = [
                    (vm.id, vm.user_template.get("ROLE_NAME"))
                    for vm in emu.store.vms.values()
                    if vm.state == 3 and vm.lcm_state == 3 and vm.user_template.get("ROLE_NAME")
                ]
            for vm_id, role in running:
                if vm_id in done:
                    continue
                attrs = {"READY": "YES"}
                if role == "superlink":
                    attrs.update(
                        FL_ENDPOINT=f"{helpers.vm_ip(emu, vm_id)}:9092",
                        FL_TLS="YES" if tls else "NO",
                        FL_VERSION="1.42.0",
                        FL_READY="YES",
                    )
                    if tls:
                        attrs["FL_CA_CERT"] = tls.serve(helpers.vm_ip(emu, vm_id))
                else:
                    attrs["FL_NODE_READY"] = "YES"
                assert helpers.onegate_put(emu, vm_id, attrs) == 200
                done[vm_id] = role
            time.sleep(0.02)
        return done

    return helpers.Background(play)


def deploy_vars(tmp_path: Path, network: int = 0, **extra: Any) -> dict[str, Any]:
    for name in ("superlink.qcow2", "supernode.qcow2"):
        (tmp_path / name).write_bytes(QCOW2)
    return {
        "flower_superlink_image_path": str(tmp_path / "superlink.qcow2"),
        "flower_supernode_image_path": str(tmp_path / "supernode.qcow2"),
        "flower_network_id": network,
        "flower_service_name": "fl-test",
        "flower_ca_file": str(tmp_path / "out" / "ca.crt"),
        "flower_federation_file": str(tmp_path / "out" / "federation.toml"),
        "flower_poll_interval": 0.1,
        "flower_context": {"ONEAPP_FL_NUM_ROUNDS": 5, "ONEAPP_FL_NODE_CONFIG": "num-partitions=2"},
        **extra,
    }


def changed_tasks(run: Any) -> list[str]:
    return [
        task["task"]["name"]
        for play in run.data.get("plays", [])
        for task in play.get("tasks", [])
        if task["hosts"].get("localhost", {}).get("changed")
    ]


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
@pytest.mark.parametrize("version", ["7.0", "6.10"])
def test_template_files_accepted_by_oneflow(make_emulator: Any, version: str, variant: str) -> None:
    """Every generated file passes OneFlow's validation (an emulator of each version), with the
    role user inputs, the network input, straight deployment and the ready status gate."""
    body = yaml.safe_load((GPU_TEMPLATES if variant == "gpu" else TEMPLATES)[version].read_text())
    emu = make_emulator(version=version)
    template_id = emu.add_service_template(copy.deepcopy(body))
    assert template_id is not None
    inputs = "custom_attrs" if version == "6.10" else "user_inputs"
    assert body["deployment"] == "straight" and body["ready_status_gate"] is True
    assert set(body["networks"]) == {"Private"}
    superlink, supernode = body["roles"]
    assert (superlink["cardinality"], superlink["min_vms"], superlink["max_vms"]) == (1, 1, 1)
    assert (supernode["cardinality"], supernode["min_vms"], supernode["max_vms"]) == (2, 2, 10)
    assert supernode["parents"] == ["superlink"]
    assert "ONEAPP_FLOWER_VERSION" in body[inputs]  # both roles read it: service level
    assert "ONEAPP_FL_NUM_ROUNDS" in superlink[inputs]  # SuperLink only: role level
    assert "ONEAPP_FL_NODE_CONFIG" in supernode[inputs]
    assert not set(superlink[inputs]) & set(supernode[inputs])
    gpu_inputs = {"ONEAPP_FL_GPU_ENABLED", "ONEAPP_FL_CUDA_VISIBLE_DEVICES"}
    assert gpu_inputs <= set(supernode[inputs])
    enabled = supernode[inputs]["ONEAPP_FL_GPU_ENABLED"].split("|")[-1]
    assert (body["name"], enabled) == (
        ("flower-federation-gpu", "YES") if variant == "gpu" else ("flower-federation", "NO")
    )
    cpu = yaml.safe_load(TEMPLATES[version].read_text())
    assert cpu["roles"][0][inputs] == superlink[inputs]  # the same source


def test_tool_check_is_clean() -> None:
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "oneflow_template.py"), "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_deploy_scale_destroy(
    make_emulator: Any, ansible_for: Any, helpers: Any, tmp_path: Path, control_api: ControlApi
):
    """deploy (images, VM templates, service template, service, FL_READY, CA file, federation
    block), deploy again (nothing changes), scale to 3, destroy with templates and images."""
    emu = make_emulator()
    ansible = ansible_for(emu)
    network = loopback_network(emu)
    variables = deploy_vars(tmp_path, network)
    players = guests(emu, helpers, control_api)
    deploy = ansible.playbook(str(PLAYBOOKS / "deploy.yml"), variables, timeout=300)
    assert deploy.rc == 0, deploy.output

    # -- what was registered
    with emu.lock:
        images = {i.name: i for i in emu.store.images.values()}
        vm_templates = {t.name: t for t in emu.store.vm_templates.values()}
    assert set(images) == {"Flower SuperLink v1.42.0", "Flower SuperNode v1.42.0"}
    assert images["Flower SuperLink v1.42.0"].path == variables["flower_superlink_image_path"]
    superlink_tmpl = vm_templates["Flower SuperLink"].template
    context = superlink_tmpl["CONTEXT"]
    assert (context["TOKEN"], context["NETWORK"], context["REPORT_READY"]) == ("YES", "YES", "NO")
    assert context["SSH_PUBLIC_KEY"] == "$USER[SSH_PUBLIC_KEY]"
    assert context["ONEAPP_FL_NUM_ROUNDS"] == "$ONEAPP_FL_NUM_ROUNDS"
    assert "ONEAPP_FL_NODE_CONFIG" not in context  # a SuperNode variable
    assert vm_templates["Flower SuperNode"].template["CONTEXT"]["ONEAPP_FL_NODE_CONFIG"] == (
        "$ONEAPP_FL_NODE_CONFIG"
    )
    assert superlink_tmpl["DISK"] == {"IMAGE": "Flower SuperLink v1.42.0"}
    assert superlink_tmpl["NIC"] == {"NETWORK_ID": str(network)}
    assert (superlink_tmpl["CPU"], superlink_tmpl["MEMORY"]) == ("2", "4096")

    # -- the service, its VMs and what they carry
    service_id = helpers.find_service(emu, "fl-test")
    vms = helpers.service_vm_ids(emu, service_id)
    assert len(vms["superlink"]) == 1 and len(vms["supernode"]) == 2
    superlink = emu.vm(vms["superlink"][0])
    disk = superlink.template["DISK"]
    assert disk["IMAGE"] == "Flower SuperLink v1.42.0" and disk["IMAGE_ID"] == str(
        images["Flower SuperLink v1.42.0"].id
    )
    assert superlink.template["CONTEXT"]["ONEAPP_FL_NUM_ROUNDS"] == "5"
    assert superlink.template["CONTEXT"]["ONEAPP_FLOWER_VERSION"] == "1.42.0"  # default
    node = emu.vm(vms["supernode"][0])
    assert node.template["CONTEXT"]["ONEAPP_FL_NODE_CONFIG"] == "num-partitions=2"
    assert node.template["DISK"]["IMAGE"] == "Flower SuperNode v1.42.0"

    # -- printed endpoint, CA file, federation block
    ip = helpers.vm_ip(emu, vms["superlink"][0])
    ca_file = Path(variables["flower_ca_file"])
    assert ca_file.read_text() == control_api.pem.ca  # checked against what it serves
    block = (
        "[tool.flwr.federations.opennebula]\n"
        f'address = "{ip}:9093"\n'
        f'root-certificates = "{ca_file}"\n'
    )
    # Flower 1.42.0 (the default release): shown as a SuperLink connection of ~/.flwr/config.toml
    connection = block.replace("[tool.flwr.federations.opennebula]", "[superlink.opennebula]")
    shown = deploy[ROLE + "Show how to reach the federation"]["msg"]
    assert shown[-1] == connection and f"SuperLink Fleet API (SuperNodes): {ip}:9092" in shown
    assert "~/.flwr/config.toml" in shown[-2] and "flwr run <app directory> opennebula" in shown[-2]
    assert Path(variables["flower_federation_file"]).read_text() == block
    assert deploy.facts["flower_federation_toml"] == block
    assert deploy.facts["flower_superlink_toml"] == connection

    # -- a second run changes nothing
    again = ansible.playbook(str(PLAYBOOKS / "deploy.yml"), variables, timeout=300)
    assert again.rc == 0, again.output
    assert changed_tasks(again) == [], again.output
    assert again.stats["changed"] == 0
    assert again[ROLE + "Show how to reach the federation"]["msg"][-1] == connection

    # -- status.yml: the service, each VM's state, address and what it published
    status = ansible.playbook(str(PLAYBOOKS / "status.yml"), {"flower_service_name": "fl-test"})
    assert status.rc == 0, status.output
    lines = status.results(ROLE + "Show the federation")[0]["results"][0]["msg"]
    assert lines[0] == f"Service fl-test (id {service_id}): RUNNING"
    assert lines[1].startswith(f"superlink VM {vms['superlink'][0]}: RUNNING, {ip}, FL_ENDPOINT=")
    assert "FL_READY=YES" in lines[1] and "FL_VERSION=1.42.0" in lines[1]
    assert "FL_CA_CERT" not in " ".join(lines)
    assert [line.split(":")[0] for line in lines[2:]] == [
        f"supernode VM {vm_id}" for vm_id in vms["supernode"]
    ]
    assert all(line.endswith("FL_NODE_READY=YES") for line in lines[2:])
    missing = ansible.playbook(str(PLAYBOOKS / "status.yml"), {"flower_service_name": "nope"})
    assert missing.rc != 0 and "no OneFlow service named 'nope'" in missing.stdout

    # -- scale to 3: the new SuperNode reports FL_NODE_READY
    scale = ansible.playbook(
        str(PLAYBOOKS / "scale.yml"),
        {
            "flower_service_name": "fl-test",
            "flower_supernode_count": 3,
            "flower_poll_interval": 0.1,
        },
        timeout=300,
    )
    assert scale.rc == 0, scale.output
    result = scale["Scale the supernode role and wait for the new SuperNodes"]
    assert result["changed"] is True
    assert result["service"]["roles"]["supernode"]["cardinality"] == 3
    assert all(
        vm["published"]["FL_NODE_READY"] == "YES"
        for vm in result["service"]["roles"]["supernode"]["vms"]
    )
    assert len(helpers.service_vm_ids(emu, service_id)["supernode"]) == 3
    too_many = ansible.playbook(
        str(PLAYBOOKS / "scale.yml"),
        {"flower_service_name": "fl-test", "flower_supernode_count": 11},
    )
    assert too_many.rc != 0
    assert "flower_supernode_count=11: outside the supernode role's range; allowed: 2..10" in (
        too_many.stdout
    )

    # -- destroy everything
    destroy = ansible.playbook(
        str(PLAYBOOKS / "destroy.yml"),
        {
            "flower_service_name": "fl-test",
            "flower_destroy_templates": True,
            "flower_destroy_images": True,
            "flower_poll_interval": 0.1,
        },
        timeout=300,
    )
    players.join()
    assert destroy.rc == 0, destroy.output
    assert helpers.find_service(emu, "fl-test") is None
    with emu.lock:
        assert not emu.store.images and not emu.store.vm_templates.keys() - {0}
        assert not [d for d in emu.store.documents.values() if d.type == 101]


def test_deploy_without_tls(
    make_emulator: Any, ansible_for: Any, helpers: Any, tmp_path: Path
) -> None:
    """A SuperLink without TLS gives `insecure = true` and no CA file; on Flower 1.25 the
    federation table of an app's pyproject.toml is shown (that flwr reads no connections)."""
    emu = make_emulator()
    ansible = ansible_for(emu)
    variables = deploy_vars(tmp_path)
    variables["flower_context"]["ONEAPP_FLOWER_VERSION"] = "1.25.0"
    players = guests(emu, helpers)
    run = ansible.playbook(str(PLAYBOOKS / "deploy.yml"), variables, timeout=300)
    players.join()
    assert run.rc == 0, run.output
    vms = helpers.service_vm_ids(emu, helpers.find_service(emu, "fl-test"))
    ip = helpers.vm_ip(emu, vms["superlink"][0])
    block = f'[tool.flwr.federations.opennebula]\naddress = "{ip}:9093"\ninsecure = true\n'
    assert run.facts["flower_federation_toml"] == block
    shown = run[ROLE + "Show how to reach the federation"]["msg"]
    assert shown[-1] == block and "pyproject.toml" in shown[-2]
    assert not Path(variables["flower_ca_file"]).exists()


def test_deploy_on_610(
    make_emulator: Any, ansible_for: Any, helpers: Any, tmp_path: Path, control_api: ControlApi
):
    """OneFlow 6.10 with the 6.10 file: custom_attrs reach the VMs through vm_template_contents."""
    emu = make_emulator(version="6.10")
    ansible = ansible_for(emu)
    variables = deploy_vars(
        tmp_path, loopback_network(emu), flower_oneflow_schema="6.10", flower_wait_timeout=60
    )
    players = guests(emu, helpers, control_api)
    run = ansible.playbook(str(PLAYBOOKS / "deploy.yml"), variables, timeout=300)
    players.join()
    assert run.rc == 0, run.output
    vms = helpers.service_vm_ids(emu, helpers.find_service(emu, "fl-test"))
    assert emu.vm(vms["superlink"][0]).template["CONTEXT"]["ONEAPP_FL_NUM_ROUNDS"] == "5"


GPUS = [
    {"vendor": "0x10de", "device": "0x2204", "class": "0x0302"},
    {"short_address": "E1:00.0"},
]


@pytest.mark.parametrize("version", ["7.0", "6.10"])
def test_deploy_gpu_supernodes(
    version: str, make_emulator: Any, ansible_for: Any, helpers: Any, tmp_path: Path
) -> None:
    """flower_supernode_gpu: the GPU SuperNode VM template (PCI, q35, UEFI, host-passthrough,
    pinning) and the GPU service template registered and instantiated; destroy.yml removes them.
    The emulator's VMs are containers: they carry the PCI attributes and have no GPU."""
    emu = make_emulator(version=version)
    ansible = ansible_for(emu)
    variables = deploy_vars(
        tmp_path,
        flower_oneflow_schema=version,
        flower_supernode_gpu=True,
        flower_gpu_pci_devices=GPUS,
        flower_gpu_pin_policy="CORE",
        flower_wait_timeout=60,
    )
    players = guests(emu, helpers)
    run = ansible.playbook(str(PLAYBOOKS / "deploy.yml"), variables, timeout=300)
    players.join()
    assert run.rc == 0, run.output
    with emu.lock:
        vm_templates = {t.name: t.template for t in emu.store.vm_templates.values()}
        service_templates = [d.name for d in emu.store.documents.values() if d.type == 101]
    assert "Flower SuperNode" not in vm_templates and service_templates == ["flower-federation-gpu"]
    gpu = vm_templates["Flower SuperNode GPU"]
    firmware = "UEFI" if version == "7.0" else "/usr/share/OVMF/OVMF_CODE.fd"
    assert gpu["OS"] == {"ARCH": "x86_64", "FIRMWARE": firmware, "MACHINE": "q35"}
    assert gpu["CPU_MODEL"] == {"MODEL": "host-passthrough"}
    assert gpu["TOPOLOGY"] == {"CORES": "2", "PIN_POLICY": "CORE", "SOCKETS": "1", "THREADS": "1"}
    assert gpu["PCI"] == [
        {"VENDOR": "0x10de", "DEVICE": "0x2204", "CLASS": "0x0302"},
        {"SHORT_ADDRESS": "e1:00.0"},
    ]
    assert gpu["CONTEXT"]["ONEAPP_FL_GPU_ENABLED"] == "$ONEAPP_FL_GPU_ENABLED"
    assert "PCI" not in vm_templates["Flower SuperLink"]
    assert vm_templates["Flower SuperLink"]["OS"] == {"ARCH": "x86_64"}
    vms = helpers.service_vm_ids(emu, helpers.find_service(emu, "fl-test"))
    node = emu.vm(vms["supernode"][0])
    assert [pci["VENDOR"] for pci in node.template["PCI"][:1]] == ["0x10de"]
    assert node.template["CONTEXT"]["ONEAPP_FL_GPU_ENABLED"] == "YES"  # the GPU file's default
    if version == "6.10":
        return
    destroy = ansible.playbook(
        str(PLAYBOOKS / "destroy.yml"),
        {
            "flower_service_name": "fl-test",
            "flower_supernode_gpu": True,
            "flower_destroy_templates": True,
            "flower_poll_interval": 0.1,
        },
        timeout=300,
    )
    assert destroy.rc == 0, destroy.output
    with emu.lock:
        assert not emu.store.vm_templates.keys() - {0}
        assert not [d for d in emu.store.documents.values() if d.type == 101]


GPU = {"flower_supernode_gpu": True}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (GPU, "flower_gpu_pci_devices=[]: required with flower_supernode_gpu=true"),
        (
            {"flower_gpu_pci_devices": GPUS[:1]},
            "given, but flower_supernode_gpu is false; allowed: flower_supernode_gpu=true",
        ),
        (
            dict(GPU, flower_gpu_pci_devices=[{"vendor": "10de"}, {"vendor": "nvidia"}]),
            "flower_gpu_pci_devices[1].vendor=nvidia: allowed: 4 hex digits",
        ),
        (
            dict(GPU, flower_gpu_pci_devices=[{"vendor": 4318}]),
            "flower_gpu_pci_devices[0].vendor=4318: allowed: 4 hex digits with or without 0x, "
            "quoted in YAML (0x10de unquoted is the number 4318)",
        ),
        (
            dict(GPU, flower_gpu_pci_devices=[{"short_address": "0000:e1:00.0"}]),
            "flower_gpu_pci_devices[0].short_address=0000:e1:00.0: allowed: the host's PCI address",
        ),
        (
            dict(GPU, flower_gpu_pci_devices=[{"short_address": "e1:00.0", "vendor": "0x10de"}]),
            "short_address and vendor/device/class together",
        ),
        (
            dict(GPU, flower_gpu_pci_devices=[{}]),
            "flower_gpu_pci_devices[0]={}: neither short_address nor vendor/device/class",
        ),
        (
            dict(
                GPU,
                flower_gpu_pci_devices=GPUS,
                flower_oneflow_schema="6.10",
                flower_gpu_firmware="UEFI",
            ),
            "flower_gpu_firmware=UEFI: OpenNebula 6.10 takes a firmware path only",
        ),
        (
            dict(GPU, flower_gpu_pci_devices=GPUS, flower_gpu_firmware="BIOS"),
            "flower_gpu_firmware=BIOS: allowed: UEFI (OpenNebula 7.0), or the absolute path",
        ),
        ({"flower_superlink_image_path": ""}, "flower_superlink_image_path is required"),
        (
            {"flower_supernode_image_path": "/nonexistent/supernode.qcow2"},
            "flower_supernode_image_path=/nonexistent/supernode.qcow2: no such file",
        ),
        ({"flower_network_id": "private"}, "flower_network_id=private: required"),
        (
            {"flower_on_warning": "later"},
            "flower_on_warning must be one of: warn, wait, resume, fail, got: later",
        ),
        (
            {"flower_supernode_count": 11},
            "flower_supernode_count=11: outside the supernode role's range; allowed: 2..10",
        ),
        ({"flower_supernode_count": 1}, "flower_supernode_count=1: outside"),
        (
            {"flower_oneflow_schema": "7.1"},
            "flower_oneflow_schema must be one of: 7.0, 6.10, got: 7.1",
        ),
        (
            {"flower_supernode_memory": 0, "flower_federation_name": "my fed"},
            "flower_supernode_memory=0: allowed: a memory size in MB > 0; "
            "flower_federation_name=my fed: allowed: letters, digits",
        ),
        (
            {"flower_context": {"ONEAPP_FL_STRATEGY": "FedFoo"}},
            "ONEAPP_FL_STRATEGY='FedFoo'",
        ),
        (
            {"flower_context": {"ONEAPP_FL_NUM_ROUND": 3}},
            "flower_context: ONEAPP_FL_NUM_ROUND: not a user input",
        ),
    ],
)
def test_bad_input_fails_before_anything_is_created(
    ansible: Any, emu: Any, tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    before = emu.counters()
    run = ansible.playbook(str(PLAYBOOKS / "deploy.yml"), deploy_vars(tmp_path, **extra))
    assert run.rc != 0
    assert message in run.stdout, run.output
    after = emu.counters()
    with emu.lock:
        assert not emu.store.images and set(emu.store.vm_templates) == {0}
    assert before == after or all(
        not k.startswith(("one.image.allocate", "one.template.allocate", "POST"))
        for k in after.get("oned", {})
        if after["oned"][k] != before.get("oned", {}).get(k)
    )


def test_check_mode_stops_after_the_checks(ansible: Any, emu: Any, tmp_path: Path) -> None:
    run = ansible.playbook(str(PLAYBOOKS / "deploy.yml"), deploy_vars(tmp_path), "--check")
    assert run.rc == 0, run.output
    said = run.results(ROLE + "Say what a real run would do (check mode)")[0]["results"]
    assert "would be registered from" in said[0]["msg"][1]
    assert "cannot run in check mode" in said[1]["msg"][2]
    with emu.lock:
        assert not emu.store.images and set(emu.store.vm_templates) == {0}
