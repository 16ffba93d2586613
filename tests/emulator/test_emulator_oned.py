"""oned XML-RPC: every answer parses with the real pyone (7.0.2 from PyPI), errors raise the
right pyone exception, and what community.general's inventory/one_vm read is there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest
from emu_support import FLOWER_INPUTS, FLOWER_TEMPLATE, ROOT, Http

from opennebula_emulator import Emulator
from opennebula_emulator.oned import method_response

pyone = pytest.importorskip("pyone")


def test_response_bytes_match_python_xmlrpc() -> None:
    for values in (
        [True, "<VM><ID>1</ID></VM> & more", 0],
        [False, "[one.vm.info] x", 1024, 7, -1],
        [True, 12, 0],
    ):
        assert (
            method_response(values) == xmlrpc.client.dumps((values,), methodresponse=True).encode()
        )


def test_pyone_parses_everything(emu: Emulator, one: Any) -> None:
    vm_id = emu.add_vm("web-0", user_template={"LABELS": "web,prod"})
    pending = emu.add_vm("pending-0", running=False)
    emu.add_service_template(
        json.loads(
            (
                ROOT / "tests/fixtures/one-samples/oneflow-service_template-create-request.json"
            ).read_text()
        )
    )

    vm = one.vm.info(vm_id)
    assert (vm.ID, vm.NAME, vm.STATE, vm.LCM_STATE, vm.UNAME) == (vm_id, "web-0", 3, 3, "oneadmin")
    assert vm.TEMPLATE["NIC"]["IP"] == "10.0.0.10" and vm.TEMPLATE["CONTEXT"]["TOKEN"] == "YES"
    assert vm.USER_TEMPLATE["LABELS"] == "web,prod"
    assert vm.HISTORY_RECORDS.HISTORY[-1].HOSTNAME == "dummy-host"
    assert vm.PERMISSIONS.OWNER_U == 1 and vm.STIME > 0
    assert one.vm.info(pending).STATE in (1, 3)

    ext = one.vmpool.infoextended(-2, -1, -1, 3)
    assert [v.ID for v in ext.VM] == sorted((v.ID for v in ext.VM), reverse=True)
    short = one.vmpool.info(-2, -1, -1, -1)
    assert {v.NAME for v in short.VM} >= {"web-0", "pending-0"}
    assert short.VM[-1].TEMPLATE["NIC"]["MAC"] == "02:00:0a:00:00:0a"
    assert one.vmpool.infoextended(-2, -1, -1, 6).VM == []  # empty <VM_POOL></VM_POOL>

    assert one.template.info(0).NAME == "fl-node"
    assert one.templatepool.info(-2, -1, -1).VMTEMPLATE[0].TEMPLATE["MEMORY"] == "128"
    doc = one.document.info(0)
    assert doc.TYPE == "101" and json.loads(doc.TEMPLATE["BODY"])["name"] == "flower-fl"
    assert [d.ID for d in one.documentpool.info(-2, -1, -1, 101).DOCUMENT] == [0]
    assert one.documentpool.info(-2, -1, -1, 100).DOCUMENT == []
    user = one.user.info(-1)
    assert user.NAME == "oneadmin" and len(user.TEMPLATE["TOKEN_PASSWORD"]) == 64
    assert [u.NAME for u in one.userpool.info().USER] == ["oneadmin"]
    host = one.hostpool.info().HOST[0]
    assert host.NAME == "dummy-host" and host.HOST_SHARE.RUNNING_VMS >= 1
    assert one.host.info(0).ID == 0
    assert one.vnpool.info(-2, -1, -1).VNET[0].NAME == "private"
    assert one.vn.info(0).AR_POOL.AR[0].LEASES is not None
    assert one.system.version() == "7.0.2"
    assert one.system.config() is not None


def test_pyone_exceptions(emu: Emulator, one: Any) -> None:
    vm_id = emu.add_vm("web-0")
    with pytest.raises(
        pyone.OneNoExistsException,
        match=r"^\[one.vm.info\] Error getting virtual machine \[42\]\.$",
    ):
        one.vm.info(42)
    with pytest.raises(
        pyone.OneAuthenticationException, match="User couldn't be authenticated, aborting call"
    ):
        pyone.OneServer(emu.oned_url, session="oneadmin:wrong").vm.info(vm_id)
    emu.add_user("alice", "secret")
    with pytest.raises(
        pyone.OneAuthorizationException,
        match=r"User \[1\] : Not authorized to perform USE VM \[0\]",
    ):
        pyone.OneServer(emu.oned_url, session="alice:secret").vm.info(vm_id)
    pending = emu.add_vm("p", running=False)
    with pytest.raises(
        pyone.OneActionException,
        match='action "poweroff": This action is not available for state PENDING',
    ):
        one.vm.action("poweroff", pending)
    with pytest.raises(pyone.OneApiException, match="Incorrect filter_flag"):
        one.vmpool.info(-9, -1, -1, -1)
    with pytest.raises(pyone.OneInternalException, match="JSON query search is not supported"):
        one.vmpool.info(-2, -1, -1, -1, "NAME=web")
    with pytest.raises(pyone.OneException, match=r"Method 'one\.vm\.nope' not defined"):
        one.vm.nope(1)
    with pytest.raises(pyone.OneException, match="Not enough parameters"):
        one.documentpool.info(-2, -1, -1)


def test_update_and_actions_through_pyone(emu: Emulator, one: Any) -> None:
    vm_id = emu.add_vm("web-0", user_template={"KEEP": "1"})
    assert one.vm.update(vm_id, {"READY": "YES", "NOTE": "say hi"}, 1) == vm_id
    assert dict(one.vm.info(vm_id).USER_TEMPLATE) == {"KEEP": "1", "NOTE": "say hi", "READY": "YES"}
    one.vm.update(vm_id, "ONLY = x", 0)
    assert dict(one.vm.info(vm_id).USER_TEMPLATE) == {"ONLY": "x"}

    one.vm.action("poweroff", vm_id)
    emu.wait_for(lambda: one.vm.info(vm_id).STATE == 8)
    one.vm.action("resume", vm_id)
    emu.wait_for(lambda: one.vm.info(vm_id).LCM_STATE == 3)
    one.vm.action("terminate-hard", vm_id)
    emu.wait_for(lambda: one.vm.info(vm_id).STATE == 6)
    assert one.vmpool.infoextended(-2, -1, -1, -1).VM == []  # DONE VMs are left out by -1
    assert [v.ID for v in one.vmpool.infoextended(-2, -1, -1, -2).VM] == [vm_id]
    with pytest.raises(
        pyone.OneActionException, match=f"Could not terminate VM {vm_id}, wrong state DONE"
    ):
        one.vm.action("terminate", vm_id)

    new = one.template.instantiate(0, "inst-0", False, {"LABELS": "x"}, False)
    vm = one.vm.info(new)
    assert (
        vm.NAME == "inst-0"
        and vm.USER_TEMPLATE["LABELS"] == "x"
        and vm.TEMPLATE["TEMPLATE_ID"] == "0"
    )
    one.vm.chmod(new, 1, 1, 0, 1, 0, 0, 0, 0, 0)
    assert one.vm.info(new).PERMISSIONS.GROUP_U == 1
    emu.add_user("bob", "pw")
    one.vm.chown(new, 1, -1)
    assert one.vm.info(new).UNAME == "bob"
    one.vm.rename(new, "renamed")
    assert one.vm.info(new).NAME == "renamed"


def test_what_the_inventory_plugin_reads(emu: Emulator, one: Any) -> None:
    """community.general.opennebula: one vmpool.infoextended(-2,-1,-1,3) call, NIC dict/list,
    HISTORY hostname, LABELS; non-ACTIVE VMs are absent."""
    web = emu.add_vm("web-0", user_template={"LABELS": "web-tier,prod", "SSH_PORT": "2222"})
    emu.add_vm("off-0")
    emu.set_vm_state(1, "POWEROFF")
    pool = one.vmpool.infoextended(-2, -1, -1, 3)
    assert [v.NAME for v in pool.VM] == ["web-0"]
    vm = pool.VM[0]
    nic = vm.TEMPLATE.get("NIC")
    assert isinstance(nic, dict) and nic["IP"] == "10.0.0.10"
    assert vm.HISTORY_RECORDS.HISTORY[-1].HOSTNAME == "dummy-host"
    assert vm.USER_TEMPLATE.get("LABELS") == "web-tier,prod" and vm.ID == web


@pytest.mark.skipif(
    not (ROOT / ".venv/bin/ansible-inventory").exists(), reason="ansible-inventory not installed"
)
def test_community_general_inventory_plugin(emu: Emulator, tmp_path: Path) -> None:
    """The real community.general.opennebula inventory against the emulator (the benchmark)."""
    collections = ROOT / ".collections"
    if not (
        collections / "ansible_collections/community/general/plugins/inventory/opennebula.py"
    ).exists():
        pytest.skip("community.general is not installed under .collections")
    emu.add_vm("plain-0", user_template={"LABELS": "edge"})
    emu.add_service_template(
        json.loads(
            (
                ROOT / "tests/fixtures/one-samples/oneflow-service_template-create-request.json"
            ).read_text()
        )
    )
    sid = emu.instantiate_service(
        0,
        {
            "name": "svc",
            "user_inputs_values": {"FL_ROUNDS": "5", "FL_STRATEGY": "FedAvg"},
            "roles": [{"name": "supernode", "user_inputs_values": {"FL_NODE_LABEL": "a"}}],
        },
        wait_running=True,
    )
    inv = tmp_path / "emu.opennebula.yml"
    inv.write_text(
        "plugin: community.general.opennebula\n"
        "keyed_groups:\n  - key: ROLE_NAME\n    prefix: role\n"
        "  - key: SERVICE_ID\n    prefix: service\n"
    )
    env = dict(
        os.environ,
        ONE_URL=emu.oned_url,
        ONE_USERNAME="oneadmin",
        ONE_PASSWORD="password",
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        ANSIBLE_HOME=str(tmp_path),
    )
    emu.reset_counters()
    out = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-inventory"), "-i", str(inv), "--list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    hostvars = data["_meta"]["hostvars"]
    assert set(hostvars) == {
        "plain-0",
        "superlink_0_(service_1)",
        "supernode_0_(service_1)",
        "supernode_1_(service_1)",
    }
    assert sorted(data[f"service_{sid}"]["hosts"]) == [
        "superlink_0_(service_1)",
        "supernode_0_(service_1)",
        "supernode_1_(service_1)",
    ]
    assert data["role_supernode"]["hosts"] == [
        "supernode_0_(service_1)",
        "supernode_1_(service_1)",
    ] or sorted(data["role_supernode"]["hosts"]) == [
        "supernode_0_(service_1)",
        "supernode_1_(service_1)",
    ]
    assert emu.counters()["oned"] == {"one.vmpool.infoextended": 1}


def test_large_pool_is_quick(tmp_path: Path) -> None:
    """5,000 VMs of which a 500-VM service: built in seconds, served and parsed by pyone."""
    with Emulator(seed=1).start() as emu:
        t0 = time.monotonic()
        ids = emu.add_large_pool(5000, 500)
        built = time.monotonic() - t0
        assert built < 20, built
        assert emu.service_state(ids["service_id"]) == "RUNNING"
        body = emu.service(ids["service_id"])
        assert [len(r["nodes"]) for r in body["roles"]] == [1, 499]
        t0 = time.monotonic()
        status, _, raw = Http(emu.oned_url.rsplit("/", 1)[0]).request(
            "POST",
            "/RPC2",
            xmlrpc.client.dumps(("oneadmin:password", -2, -1, -1, 3), "one.vmpool.infoextended"),
        )
        served = time.monotonic() - t0
        assert status == 200 and raw.count(b"&lt;VM&gt;&lt;ID&gt;") == 5000
        assert served < 20, served
        pool = pyone.OneServer(emu.oned_url, session="oneadmin:password").vmpool.info(-2, -1, -1, 3)
        assert len(pool.VM) == 5000


def test_fast_vm_renderer_matches_the_node_tree(emu: Emulator) -> None:
    """The pool path renders VMs without building nodes; it must give the same bytes."""
    from opennebula_emulator import xml as X

    ids = [
        emu.add_vm("run-0", user_template={"A": "x]]>y", "V": {"K": "1"}}),
        emu.add_vm("pend-0", running=False),
    ]
    emu.set_vm_ready(ids[0])
    for vm_id in ids:
        vm = emu.vm(vm_id)
        vm.changed()
        assert X.vm_xml(vm, "info") == X.render(X.vm_node(vm, monitoring=True))
        assert X.vm_xml(vm, "pool") == X.render(X.vm_node(vm, monitoring=False))


def test_vmpool_infoset_returns_only_the_listed_vms(emu):
    ids = [emu.add_vm(f"set-{i}", user_template={"FL_I": str(i)}) for i in range(4)]
    one = pyone.OneServer(emu.oned_url, session="oneadmin:password")
    pool = one.vmpool.infoset(f"{ids[1]},{ids[3]}", True)
    assert sorted(vm.ID for vm in pool.VM) == [ids[1], ids[3]]
    assert {vm.USER_TEMPLATE["FL_I"] for vm in pool.VM} == {"1", "3"}
    with pytest.raises(pyone.OneApiException):
        one.vmpool.infoset("1,x", True)


def test_vmpool_infoset_returns_done_vms(emu: Emulator, one: Any) -> None:
    """VirtualMachinePoolInfoSet filters by id and permissions only (no state filter, unlike
    vmpool.info* with state -1): a DONE VM keeps its NICs and USER_TEMPLATE there."""
    kept = emu.add_vm("kept", user_template={"FL_I": "0"})
    gone = emu.add_vm("gone", user_template={"FL_I": "1"})
    one.vm.action("terminate-hard", gone)
    emu.wait_for(lambda: one.vm.info(gone).STATE == 6)
    pool = one.vmpool.infoset(f"{kept},{gone},999", True)
    by_id = {vm.ID: vm for vm in pool.VM}
    assert sorted(by_id) == [kept, gone]  # 999 does not exist: simply absent
    assert by_id[gone].STATE == 6 and by_id[gone].USER_TEMPLATE["FL_I"] == "1"
    assert by_id[gone].TEMPLATE["NIC"]["IP"]
    assert [vm.ID for vm in one.vmpool.infoextended(-2, -1, -1, -1).VM] == [kept]


def test_vm_names_are_checked_as_oned_does(emu: Emulator, one: Any) -> None:
    """PoolObjectSQL::name_is_valid: no &|:\\";/'#{}$<> nor control whitespace, 1..128 bytes, for
    one.vm.allocate, one.template.instantiate and one.vm.rename; OneFlow's names stay valid."""
    before = emu.store.next_ids["vm"]
    with pytest.raises(
        pyone.OneException,
        match=r"^\[one\.vm\.allocate\] Error allocating a new virtual machine\. "
        r"Invalid NAME, char '\{' is not allowed$",
    ):
        one.vm.allocate('NAME = "web{{ 7 }}"\nCPU = 1\nMEMORY = 64', False)
    with pytest.raises(
        pyone.OneException,
        match=r"^\[one\.template\.instantiate\] Error allocating a new virtual machine\. "
        r"Invalid NAME, char ''' is not allowed$",
    ):
        one.template.instantiate(0, "it's", False, "", False)
    with pytest.raises(pyone.OneException, match="Invalid NAME, max length is 128 chars"):
        one.template.instantiate(0, "x" * 129, False, "", False)
    assert emu.store.next_ids["vm"] == before  # a refused allocation uses no id
    vm_id = one.template.instantiate(0, "web (0) - ok_!", False, "", False)
    for name, char in (("a:b", ":"), ("tab\there", "\t"), ("{% x %}", "{")):
        with pytest.raises(
            pyone.OneActionException,
            match=rf"^\[one\.vm\.rename\] Invalid NAME, char '{re.escape(char)}' is not allowed$",
        ):
            one.vm.rename(vm_id, name)
    with pytest.raises(pyone.OneActionException, match=r"Invalid NAME, it cannot be empty"):
        one.vm.rename(vm_id, "")
    assert one.vm.info(vm_id).NAME == "web (0) - ok_!"
    template = emu.add_service_template(FLOWER_TEMPLATE)
    service = emu.instantiate_service(template, FLOWER_INPUTS, wait_running=True)
    names = sorted(vm.name for vm in emu.store.vms.values() if vm.id != vm_id)
    assert names[0] == f"superlink_0_(service_{service})"
