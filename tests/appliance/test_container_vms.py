"""Emulated VMs as systemd containers (needs Docker): instantiate through oned, the container
boots, one-context (the stand-in) writes one_env from the context CD-ROM, the token in it
authenticates against the emulator's OneGate from inside, terminate removes the container.

The VM image is ``$FLOWER_APPLIANCE_IMAGE``, else the baked appliance
``local/flower-appliance-supernode:$FLOWER_VERSION`` (``make appliance-images``), else a smoke
image: local/debian-systemd-dind:bookworm with the one-context stand-in installed by dpkg.
(An appliance image baked before the appliance role installed one-context is passed over.)
``pytest -s`` prints the timings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "tests" / "emulator"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from emu_support import fast_timings  # noqa: E402

from opennebula_emulator import Emulator  # noqa: E402
from opennebula_emulator.containers import ContainerOptions  # noqa: E402

FLOWER_VERSION = os.environ.get("FLOWER_VERSION", "1.42.0")
BASE_IMAGE = "local/debian-systemd-dind:bookworm"
RUN_ID = f"{os.environ.get('FLOWER_TEST_ID', 't')}-{uuid.uuid4().hex[:6]}"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def _docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return docker("version", "--format", "{{.Server.Version}}", check=False).returncode == 0
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _docker_works(), reason="needs a Docker engine")


def image_exists(image: str) -> bool:
    return docker("image", "inspect", image, check=False).returncode == 0


def has_one_context(image: str) -> bool:
    unit = "/lib/systemd/system/one-context.service"
    probe = docker("run", "--rm", "--entrypoint=test", image, "-f", unit, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def vm_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    explicit = os.environ.get("FLOWER_APPLIANCE_IMAGE")
    if explicit:
        yield explicit
        return
    appliance = f"local/flower-appliance-supernode:{FLOWER_VERSION}"
    if image_exists(appliance):
        if has_one_context(appliance):
            yield appliance
            return
        warnings.warn(f"{appliance} has no one-context.service: smoke image instead", stacklevel=1)
    if not image_exists(BASE_IMAGE):
        pytest.skip(f"neither {appliance} nor {BASE_IMAGE} (make images)")
    build = tmp_path_factory.mktemp("smoke")
    subprocess.run(
        ["bash", str(ROOT / "scripts/one-context-standin/build-deb.sh")],
        env={**os.environ, "OUT_DIR": str(build)},
        check=True,
        capture_output=True,
    )
    (build / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\nCOPY *.deb /tmp/\nRUN dpkg -i /tmp/*.deb && rm /tmp/*.deb\n"
    )
    tag = f"local/one-emu-smoke:{RUN_ID}"
    docker("build", "-q", "-t", tag, str(build))
    yield tag
    docker("rmi", "-f", tag, check=False)


@pytest.fixture(scope="module")
def cloud(vm_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    opts = ContainerOptions(
        network=f"one-emu-{RUN_ID}",
        run_id=RUN_ID,
        templates={"ctx-vm": vm_image},
        context_dir=tmp_path_factory.mktemp("context"),
        poll_interval=0.2,
    )
    with Emulator(timings=fast_timings(), seed=11, containers=opts) as emu:
        emu.add_vm_template(
            "ctx-vm",
            {
                "CPU": "1",
                "MEMORY": "512",
                "NIC": {"NETWORK": opts.network},
                "CONTEXT": {
                    "NETWORK": "YES",
                    "TOKEN": "YES",
                    "REPORT_READY": "YES",
                    "SET_HOSTNAME": "$NAME",
                    "ONEAPP_TEST": "two words",
                },
            },
        )
        yield emu
    leftovers = docker("ps", "-aq", f"--filter=label=org.opennebula.emulator.run={RUN_ID}")
    assert leftovers.stdout.strip() == "", "containers left behind"
    assert docker("network", "inspect", opts.network, check=False).returncode != 0


@pytest.fixture(scope="module")
def one(cloud: Emulator) -> Any:
    pyone = pytest.importorskip("pyone")
    return pyone.OneServer(cloud.oned_url, session="oneadmin:password")


def expected_one_env(context: dict[str, str]) -> str:
    """What loc-16-gen-env writes for this context (values unescaped)."""
    lines = [
        f'export TOKENTXT="{context["_TOKEN"]}"',
        f'export VMID="{context["VMID"]}"',
        f'export ONEGATE_ENDPOINT="{context["ONEGATE_ENDPOINT"]}"',
    ]
    lines += [f'export {k}="{v}"' for k, v in sorted(context.items()) if not k.startswith("_")]
    return "\n".join(lines) + "\n"


def wait(predicate, timeout: float, what: str, interval: float = 0.2) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


def in_vm(cloud: Emulator, vm_id: int, script: str, check: bool = True) -> str:
    name = cloud.containers.container_name(vm_id)
    return docker("exec", name, "sh", "-c", script, check=check).stdout


def test_vm_lifecycle_as_container(cloud: Emulator, one: Any, vm_image: str) -> None:
    template_id = next(t.id for t in cloud.store.vm_templates.values() if t.name == "ctx-vm")
    start = time.monotonic()
    vm_id = one.template.instantiate(template_id, "ctx-vm-0")
    name = cloud.containers.container_name(vm_id)
    to_running = wait(lambda: cloud.vm(vm_id).lcm_state == 3, 120, "RUNNING")

    state = json.loads(docker("inspect", "--format", "{{json .}}", name).stdout)
    assert state["State"]["Running"]
    assert state["Config"]["Labels"]["org.opennebula.emulator.run"] == RUN_ID
    assert state["Config"]["Image"] == vm_image
    ip = state["NetworkSettings"]["Networks"][cloud.containers.options.network]["IPAddress"]
    assert cloud.vm(vm_id).nics()[0]["IP"] == ip
    volumes = [m["Name"] for m in state["Mounts"] if m["Type"] == "volume"]
    assert volumes, "the /var/lib/docker volume"

    wait(
        lambda: in_vm(cloud, vm_id, "test -f /run/one-context/one_env && echo y", False) == "y\n",
        120,
        "one_env",
    )
    to_env = time.monotonic() - start
    assert in_vm(cloud, vm_id, "stat -c '%a %U %G' /run/one-context/one_env") == "400 root root\n"
    with cloud.lock:
        context = dict(cloud.vm(vm_id).template["CONTEXT"])
    assert context["ETH0_IP"] == ip
    context["_TOKEN"] = cloud.vm_token(vm_id)
    assert in_vm(cloud, vm_id, "cat /run/one-context/one_env") == expected_one_env(context)
    assert f'export ONEGATE_ENDPOINT="{cloud.rt.config.onegate_endpoint}"' in expected_one_env(
        context
    )

    shown = in_vm(
        cloud,
        vm_id,
        '. /run/one-context/one_env && curl -fsS -H "X-ONEGATE-TOKEN: $TOKENTXT" '
        '-H "X-ONEGATE-VMID: $VMID" "$ONEGATE_ENDPOINT/vm"',
    )
    assert json.loads(shown)["VM"]["ID"] == str(vm_id)
    denied = in_vm(
        cloud,
        vm_id,
        '. /run/one-context/one_env && curl -s -o /dev/null -w "%{http_code}" '
        '-H "X-ONEGATE-TOKEN: x$TOKENTXT" -H "X-ONEGATE-VMID: $VMID" "$ONEGATE_ENDPOINT/vm"',
    )
    assert denied == "401"
    wait(lambda: cloud.vm(vm_id).user_template.get("READY") == "YES", 60, "READY=YES")
    assert in_vm(cloud, vm_id, "hostname") == "ctx-vm-0\n"
    print(f"\n{vm_image}: instantiate -> RUNNING {to_running:.2f} s, -> one_env {to_env:.2f} s")

    # power off stops the container, resume boots it again (one-context runs again)
    one.vm.action("poweroff-hard", vm_id)
    wait(lambda: not container_running(name), 60, "container stopped")
    one.vm.action("resume", vm_id)
    wait(lambda: container_running(name), 60, "container started")
    wait(
        lambda: in_vm(cloud, vm_id, "test -f /run/one-context/one_env && echo y", False) == "y\n",
        120,
        "one_env after resume",
    )

    one.vm.action("terminate-hard", vm_id)
    wait(lambda: docker("inspect", name, check=False).returncode != 0, 60, "container removed")
    assert cloud.vm(vm_id).state == 6  # DONE
    for volume in volumes:
        assert docker("volume", "inspect", volume, check=False).returncode != 0


def container_running(name: str) -> bool:
    out = docker("inspect", "--format", "{{.State.Running}}", name, check=False).stdout
    return out.strip() == "true"
