"""Images in the emulated oned: ``one.image.*`` and ``one.imagepool.info`` parsed by the real
pyone, the LOCKED -> READY -> USED -> READY life cycle, DISKs of VMs made from templates that name
an image (IMAGE, IMAGE_ID and what oned adds), errors, persistence of the state, and
``community.general.one_image`` / ``one_template`` run against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from emu_support import ROOT

from opennebula_emulator import Emulator

pyone = pytest.importorskip("pyone")

READY, USED, LOCKED, DELETE = 1, 2, 4, 7
QCOW2_10G = b"QFI\xfb" + b"\0" * 20 + (10 * 2**30).to_bytes(8, "big")


def qcow2(path: Path, virtual: bytes = QCOW2_10G) -> Path:
    path.write_bytes(virtual + b"\0" * 64)
    return path


def wait_state(one: Any, image_id: int, state: int, timeout: float = 5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        image = one.image.info(image_id)
        if image.STATE == state or time.monotonic() > deadline:
            return image
        time.sleep(0.01)


def test_allocate_locked_then_ready_and_pool(emu: Emulator, one: Any, tmp_path: Path) -> None:
    path = qcow2(tmp_path / "superlink.qcow2")
    image_id = one.image.allocate(f'NAME="Flower SuperLink"\nPATH="{path}"\nTYPE=OS\n', 1)
    first = one.image.info(image_id)
    assert first.STATE in (LOCKED, READY)  # LOCKED while the datastore driver copies it
    image = wait_state(one, image_id, READY)
    assert image.STATE == READY and image.PREV_STATE == LOCKED
    assert (image.NAME, image.UNAME, image.TYPE, image.PERSISTENT) == (
        "Flower SuperLink",
        "oneadmin",
        0,
        0,
    )
    assert image.PATH == str(path) and image.FORMAT == "qcow2"
    assert image.SIZE == 10240  # the qcow2 virtual size, in MB
    assert (image.DATASTORE_ID, image.DATASTORE) == (1, "default")
    assert image.SOURCE.startswith("/var/lib/one//datastores/1/")
    assert image.RUNNING_VMS == 0 and image.VMS.ID == []
    assert image.TEMPLATE["DEV_PREFIX"] == "vd"
    assert "PATH" not in image.TEMPLATE and "NAME" not in image.TEMPLATE
    assert image.PERMISSIONS.OWNER_U == 1 and image.PERMISSIONS.OTHER_U == 0

    other = one.image.allocate('NAME="blank"\nTYPE=DATABLOCK\nSIZE=512\n', 1)
    pool = one.imagepool.info(-2, -1, -1, -1)  # community.general sends a 4th argument
    assert [i.ID for i in pool.IMAGE] == [other, image_id]  # DESC, as every pool
    assert one.imagepool.info(-2, -1, -1).IMAGE[0].SIZE == 512
    assert one.imagepool.info(-2, image_id, image_id).IMAGE[0].NAME == "Flower SuperLink"


def test_allocate_errors(emu: Emulator, one: Any) -> None:
    one.image.allocate('NAME="a"\nPATH="/nowhere/a.qcow2"\n', 1)
    with pytest.raises(pyone.OneException, match=r"NAME is already taken by IMAGE 0\."):
        one.image.allocate('NAME="a"\nPATH="/nowhere/b.qcow2"\n', 1)
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting datastore \[9\]"):
        one.image.allocate('NAME="b"\nPATH="/x"\n', 9)
    with pytest.raises(pyone.OneException, match="system datastore"):
        one.image.allocate('NAME="b"\nPATH="/x"\n', 0)
    with pytest.raises(pyone.OneException, match="PATH and SOURCE cannot be both set"):
        one.image.allocate('NAME="b"\nPATH="/x"\nSOURCE="/y"\nFORMAT=raw\n', 1)
    with pytest.raises(pyone.OneException, match="No PATH nor SOURCE"):
        one.image.allocate('NAME="b"\nTYPE=CDROM\n', 1)
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting image \[42\]"):
        one.image.info(42)
    # an image file that is not on this machine: the dummy driver answers 1024 MB
    assert wait_state(one, 0, READY).SIZE == 1024


def test_vm_disk_from_image_and_used_state(emu: Emulator, one: Any, tmp_path: Path) -> None:
    image_id = one.image.allocate(f'NAME="node"\nPATH="{qcow2(tmp_path / "n.qcow2")}"\n', 1)
    tid = one.template.allocate(
        'NAME="node"\nCPU=1\nMEMORY=128\nDISK=[IMAGE="node"]\nNIC=[NETWORK_ID="0"]\n'
        'CONTEXT=[TOKEN="YES",NETWORK="YES"]\n'
    )
    with pytest.raises(pyone.OneException, match=f"Cannot acquire image {image_id}"):
        one.template.instantiate(tid, "too-early")  # still LOCKED
    wait_state(one, image_id, READY)
    vm_id = one.template.instantiate(tid, "node-0")
    disk = one.vm.info(vm_id).TEMPLATE["DISK"]
    assert disk["IMAGE"] == "node" and disk["IMAGE_ID"] == str(image_id)
    assert disk["IMAGE_UNAME"] == "oneadmin" and disk["IMAGE_UID"] == "0"
    assert (disk["DISK_ID"], disk["TARGET"], disk["DEV_PREFIX"]) == ("0", "vda", "vd")
    assert (disk["SIZE"], disk["ORIGINAL_SIZE"]) == ("10240", "10240")
    assert (disk["FORMAT"], disk["DRIVER"], disk["TYPE"]) == ("qcow2", "qcow2", "FILE")
    assert (disk["CLONE"], disk["SAVE"], disk["READONLY"]) == ("YES", "NO", "NO")
    assert disk["DATASTORE"] == "default" and disk["TM_MAD"] == "dummy"
    assert disk["SOURCE"] == one.image.info(image_id).SOURCE
    assert one.vm.info(vm_id).TEMPLATE["CONTEXT"]["DISK_ID"] == "1"

    by_id = one.template.instantiate(tid, "node-1", False, f'DISK=[IMAGE_ID="{image_id}"]')
    image = one.image.info(image_id)
    assert (image.STATE, image.RUNNING_VMS, image.VMS.ID) == (USED, 2, [vm_id, by_id])
    with pytest.raises(pyone.OneActionException, match="used by VMs"):
        one.image.delete(image_id)

    one.vm.action("terminate-hard", vm_id)
    one.vm.action("terminate-hard", by_id)
    deadline = time.monotonic() + 5
    while one.image.info(image_id).RUNNING_VMS and time.monotonic() < deadline:
        time.sleep(0.01)
    assert one.image.info(image_id).STATE == READY

    with pytest.raises(pyone.OneException, match="does not own an image with name: gone"):
        one.template.instantiate(tid, "x", False, 'DISK=[IMAGE="gone"]')
    with pytest.raises(pyone.OneException, match="Image with ID: 77 does not exist"):
        one.template.instantiate(tid, "x", False, 'DISK=[IMAGE_ID="77"]')


def test_delete_rename_enable_persistent_and_state_file(
    emu: Emulator, one: Any, tmp_path: Path
) -> None:
    image_id = one.image.allocate('NAME="img"\nPATH="/srv/img.qcow2"\n', 1)
    wait_state(one, image_id, READY)
    one.image.rename(image_id, "img2")
    one.image.enable(image_id, False)
    assert one.image.info(image_id).STATE == 3  # DISABLED
    one.image.enable(image_id, True)
    one.image.persistent(image_id, True)
    assert one.image.info(image_id).PERSISTENT == 1
    emu.save_state(str(tmp_path / "state.json"))
    saved = json.loads((tmp_path / "state.json").read_text())
    assert [i["name"] for i in saved["images"]] == ["img2"]
    with Emulator(state_file=str(tmp_path / "state.json")) as again:
        other = pyone.OneServer(again.oned_url, session="oneadmin:password")
        assert other.image.info(image_id).NAME == "img2"
        assert other.image.allocate('NAME="next"\nPATH="/x"\n', 1) == image_id + 1

    one.image.delete(image_id)
    assert one.image.info(image_id).STATE == DELETE  # until the driver has removed it
    deadline = time.monotonic() + 5
    while one.imagepool.info(-2, -1, -1).IMAGE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert one.imagepool.info(-2, -1, -1).IMAGE == []


def test_template_update_and_delete(emu: Emulator, one: Any) -> None:
    tid = one.template.allocate('NAME="t"\nCPU="1"\nMEMORY="64"\n')
    one.template.update(tid, 'CPU="2"\nMEMORY="64"\n', 0)
    assert one.template.info(tid).TEMPLATE == {"CPU": "2", "MEMORY": "64"}
    one.template.update(tid, 'VCPU="2"\n', 1)
    assert one.template.info(tid).TEMPLATE["VCPU"] == "2"
    assert one.template.info(tid).NAME == "t"
    one.template.delete(tid)
    with pytest.raises(pyone.OneNoExistsException):
        one.template.info(tid)


COLLECTIONS = ROOT / ".collections/ansible_collections/community/general"


@pytest.mark.skipif(
    not (ROOT / ".venv/bin/ansible").exists() or not COLLECTIONS.is_dir(),
    reason="ansible or community.general is not installed",
)
def test_community_general_one_image_and_one_template(emu: Emulator, tmp_path: Path) -> None:
    """The real modules: register an image (idempotent by name), a template using it (created,
    then unchanged), delete both (one_image waits through DELETE)."""
    path = qcow2(tmp_path / "a.qcow2")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONE_", "ANSIBLE_"))}
    env.update(
        ONE_URL=emu.oned_url,
        ONE_USERNAME="oneadmin",
        ONE_PASSWORD="password",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )

    def module(name: str, args: dict[str, Any]) -> dict[str, Any]:
        proc = subprocess.run(
            [
                str(ROOT / ".venv/bin/ansible"),
                "localhost",
                "-m",
                name,
                "-a",
                json.dumps(args),
                "-e",
                f"ansible_python_interpreter={sys.executable}",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        text = proc.stdout
        assert "=>" in text, proc.stdout + proc.stderr
        return json.loads(text.split("=>", 1)[1])

    image = {"name": "a", "create": True, "datastore_id": 1, "template": f'PATH="{path}"\nTYPE=OS'}
    created = module("community.general.one_image", image)
    # (ansible overwrites "state" and "size" of a result that has a "path" with the file's stat)
    assert created["changed"] is True and created["name"] == "a", created
    one = pyone.OneServer(emu.oned_url, session="oneadmin:password")
    registered = one.image.info(created["id"])
    assert (registered.STATE, registered.SIZE) == (READY, 10240)  # the module waited for READY
    assert module("community.general.one_image", image)["changed"] is False

    tmpl = {"name": "t", "template": 'CPU="1"\nMEMORY="64"\nDISK=[IMAGE="a"]'}
    first = module("community.general.one_template", tmpl)
    assert first["changed"] is True and first["template"]["DISK"]["IMAGE"] == "a", first
    assert module("community.general.one_template", tmpl)["changed"] is False

    assert module("community.general.one_template", {"name": "t", "state": "absent"})["changed"]
    gone = module("community.general.one_image", {"name": "a", "state": "absent"})
    assert gone["changed"] is True, gone
    assert (
        module("community.general.one_image", {"name": "a", "state": "absent"})["changed"] is False
    )
