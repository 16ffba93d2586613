"""End to end, the user's path: the appliance images (container counterparts of the QCOW2s),
``playbooks/deploy.yml`` against the emulator (its VMs are systemd containers booting the
appliances with one-context's files), SuperNodes discovering the SuperLink through OneGate,
``flwr run`` over TLS; then ``site.yml`` through the ``oneflow`` inventory installing the
operator's certificates, scaling 2 -> 3, a SuperLink restart and scaling 3 -> 2. The tests run
in file order on one federation.

The trust boundaries are tried along the way: the firewall (Fleet for the SuperNodes, Control
for this host only), SuperNode authentication (nodes registered from OneGate as they come and
go), a SuperNode reading all OneGate shows it (no private key, no password), a SuperNode
rewriting the SuperLink's FL_ENDPOINT and FL_CA_CERT (neither another SuperNode nor
deploy.yml is misled), and deploy.yml, site.yml and rotate_certs.yml at -vvv (no key, token or
password in their output). Last, the seeds' quick start: VMs instantiated from the VM templates
outside OneFlow, trained over TLS.

Needs Docker and ``make appliance-images`` (the Makefile's ``lifecycle`` target does both).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


appliance_demo = _load("appliance_demo", "scripts/appliance_demo.py")
pki = _load("pki", "tests/pki.py")

RUN_ID = f"lc{os.environ.get('FLOWER_TEST_ID', os.getpid())}"
# OpenNebula's password in this run: distinctive, so that a leak into any output is found.
ADMIN_PASSWORD = f"pw-{secrets.token_hex(12)}"
# What the images were baked with (scripts/build-appliance-images.sh): site.yml is told the same.
REGISTRY = f"flower-registry.test:{os.environ.get('FLOWER_REGISTRY_PORT') or '5443'}"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SITE_VARS = {
    "docker_source": "distribution",
    "superlink_image_registry": REGISTRY,
    "superlink_build_ca_bundle": CA_BUNDLE,
    "supernode_image_registry": REGISTRY,
    "supernode_build_ca_bundle": CA_BUNDLE,
}


@pytest.fixture(scope="module")
def demo():
    demo = appliance_demo.Demo(RUN_ID, admin_password=ADMIN_PASSWORD)
    demo.start()
    yield demo
    demo.down()


@pytest.fixture(scope="module")
def deployed(demo):
    return demo.deploy(None, "-vvv")


def service(demo):
    """The OneFlow service document of the demo (from the emulator's state)."""
    docs = demo.emulator("/_emulator/state")["documents"]
    (body,) = [d["body"] for d in docs if d.get("body", {}).get("name") == f"flower-{demo.id}"]
    return body


def role_vms(demo, role):
    body = service(demo)
    (found,) = [r for r in body["roles"] if r["name"] == role]
    return sorted(int(node["deploy_id"]) for node in found["nodes"])


def user_template(demo, vm_id):
    state = demo.emulator("/_emulator/state")
    (vm,) = [vm for vm in state["vms"] if vm["id"] == vm_id]
    return vm["user_template"]


def run_ids(demo):
    proc = demo.flwr("--list-runs", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {str(run["run-id"]) for run in json.loads(proc.stdout)}


def in_vm(demo, vm_id, *command, timeout=120):
    return subprocess.run(["docker", "exec", demo.container(vm_id), *command],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def flower_logs(demo, vm_id, container, since):
    proc = in_vm(demo, vm_id, "docker", "logs", "--since", since, container)
    return proc.stdout + proc.stderr


def vm_clock(demo, vm_id):
    return in_vm(demo, vm_id, "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout.strip()


def vm_ip(demo, vm_id):
    return subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
         demo.container(vm_id)], capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def onegate(demo, as_vm, method, path, data=None):
    """A OneGate request made as VM ``as_vm``, with that VM's own endpoint and token."""
    env = in_vm(demo, as_vm, "cat", "/run/one-context/one_env").stdout
    endpoint = re.search(r'ONEGATE_ENDPOINT="?([^"\n]+)', env).group(1)
    token = in_vm(demo, as_vm, "cat", "/run/one-context/token.txt").stdout.strip()
    body = urllib.parse.urlencode({"data": data, "type": "1"}).encode() if data else None
    request = urllib.request.Request(  # noqa: S310 (the emulator's local URL)
        endpoint.rstrip("/") + path, data=body, method=method,
        headers={"X-ONEGATE-TOKEN": token, "X-ONEGATE-VMID": str(as_vm)},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (local URL)
        return answer.read().decode()


def publish_as(demo, as_vm, vm_id, attributes):
    """``as_vm`` writes ``attributes`` into the USER_TEMPLATE of ``vm_id`` (PUT /vms/<id>)."""
    data = "\n".join(f"{key}={value}" for key, value in attributes.items())
    onegate(demo, as_vm, "PUT", f"/vms/{vm_id}", data)


def reboot_hook(demo, vm_id):
    """What the VM's next boot does: the appliance's boot hook runs again."""
    proc = in_vm(demo, vm_id, "systemctl", "restart", "flower-appliance", timeout=600)
    log = in_vm(demo, vm_id, "journalctl", "-u", "flower-appliance", "--no-pager", "-n", "60")
    return proc.returncode, log.stdout


def secrets_in(text, *secrets_):
    """The secrets (or the start of each) that ``text`` holds."""
    return [s[:12] + "..." for s in secrets_ if s and s in text]


def train(demo, rounds, *config, min_accuracy=0.85):
    """demo.train with 240 s per round; on failure the Flower logs are printed."""
    superlink, nodes = role_vms(demo, "superlink")[0], role_vms(demo, "supernode")
    since = vm_clock(demo, superlink)
    try:
        return demo.train(rounds, *config, min_accuracy=min_accuracy, timeout=240 * rounds)
    except appliance_demo.DemoError:
        print(f"== VM {superlink}, flower-superlink since {since}:")
        print(flower_logs(demo, superlink, "flower-superlink", since)[-4000:])
        for vm_id in nodes:
            text = flower_logs(demo, vm_id, "flower-supernode", since)
            print(f"== VM {vm_id}, flower-supernode since {since}:", text[-4000:], sep="\n")
        raise


def nodes_polling(demo, superlink, since):
    """Node ids that the SuperLink's new container has seen pulling messages."""
    logs = flower_logs(demo, superlink, "flower-superlink", since)
    return set(re.findall(r"PullMessages\] node_id=(\d+)", logs))


def test_deploy_reaches_ready_and_fl_ready(demo, deployed):
    superlink = role_vms(demo, "superlink")[0]
    published = user_template(demo, superlink)
    assert published["READY"] == "YES" and published["FL_READY"] == "YES"
    assert published["FL_TLS"] == "YES"
    assert deployed["address"] == published["FL_ENDPOINT"].rsplit(":", 1)[0] + ":9093"
    for node in role_vms(demo, "supernode"):
        assert user_template(demo, node)["FL_NODE_READY"] == "YES"
        assert user_template(demo, node)["FL_GPU_AVAILABLE"] == "NO"
    assert "BEGIN CERTIFICATE" in demo.ca_file.read_text()
    # deploy.yml ran with -vvv and OpenNebula's password in ONE_PASSWORD.
    assert (
        "<TASK: opennebula.flower.oneflow_service" in deployed["output"]
        or "TASK [" in deployed["output"]
    )
    assert not secrets_in(deployed["output"], ADMIN_PASSWORD)


def test_vms_run_the_images_their_bake_pulled_and_derived(demo, deployed):
    """Baked as a default Packer bake: Flower's stock image pulled from a registry, the image
    the container runs derived from it; the registry's CA is kept, its login is not."""
    password = (ROOT / ".cache" / "registry" / "password").read_text().strip()
    for role in ("superlink", "supernode"):
        vm_id = role_vms(demo, role)[0]
        running = in_vm(
            demo, vm_id, "docker", "inspect", "-f", "{{.Config.Image}}", f"flower-{role}"
        )
        assert running.stdout.strip() == f"localhost/flower-{role}:{appliance_demo.VERSION}-sklearn"
        stock = in_vm(
            demo,
            vm_id,
            "docker",
            "image",
            "inspect",
            f"{REGISTRY}/flwr/{role}:{appliance_demo.VERSION}",
        )
        assert stock.returncode == 0, stock.stderr
        assert (
            in_vm(demo, vm_id, "test", "-s", f"/etc/docker/certs.d/{REGISTRY}/ca.crt").returncode
            == 0
        )
        login = in_vm(demo, vm_id, "cat", "/root/.docker/config.json").stdout
        assert REGISTRY not in login and password not in login, login


def test_plain_text_client_is_refused(demo, deployed):
    proc = demo.flwr("--list-runs", tls=False, timeout=180)
    assert proc.returncode != 0, "the SuperLink answered a plain-text client"


def test_firewall_fleet_for_the_supernodes_control_for_this_host(demo, deployed):
    superlink, node = role_vms(demo, "superlink")[0], role_vms(demo, "supernode")[0]
    probe = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)"
    address = vm_ip(demo, superlink)
    reach = {port: in_vm(demo, node, "python3", "-c", probe, address, port).returncode
             for port in ("9092", "9093", "9091")}  # fmt: skip
    assert reach == {"9092": 0, "9093": 1, "9091": 1}, reach
    # This host may: the runs below go through the Control API.
    proc = demo.flwr("--list-runs", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_demo_trains_over_tls(demo, deployed):
    result = train(demo, 3)
    assert result["status"] == "finished:completed"
    assert result["rounds"][-1]["accuracy"] > 0.85


def test_printed_commands_run_apps_again(demo, deployed, tmp_path):
    """What `make demo` prints at its end: `make demo-run` (appliance_demo.py train, which also
    draws the curves) and the flwr command for one's own app, tried on a copy of the demo app
    without federation tables, as a new app comes."""
    assert appliance_demo.main(["train", "--id", demo.id, "--rounds", "1"]) == 0
    assert (demo.dir / "training.png").read_bytes().startswith(b"\x89PNG")

    hints = demo.rerun_hints()
    assert hints["the demo again"] == f"make demo-run DEMO_ID={demo.id}"
    app = tmp_path / "app"
    shutil.copytree(ROOT / "demo" / "sklearn", app, ignore=shutil.ignore_patterns("*.crt"))
    pyproject = app / "pyproject.toml"
    pyproject.write_text(appliance_demo.flwr_run_check().strip_federations(pyproject.read_text()))
    before = run_ids(demo)
    command = hints["your own Flower App"].replace("<app directory>", str(app))
    proc = subprocess.run(
        ["bash", "-c", f"{command} --run-config num-server-rounds=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    listing = json.loads(demo.flwr("--list-runs", timeout=180).stdout)
    (new,) = [run for run in listing if str(run["run-id"]) not in before]
    assert new["status"] == "finished:completed", new


@pytest.fixture(scope="module")
def inventory(demo, tmp_path_factory):
    path = tmp_path_factory.mktemp("inventory") / "flower.oneflow.yml"
    path.write_text(
        "plugin: opennebula.flower.oneflow\n"
        f"services: [flower-{demo.id}]\n"
        "compose:\n"
        "  ansible_connection: \"'community.docker.docker'\"\n"
        f"  ansible_host: \"'{demo.network}-vm-' ~ one_vm_id\"\n"
        "  ansible_python_interpreter: \"'/usr/bin/python3'\"\n"
    )
    return path


@pytest.fixture(scope="module")
def operator(demo, deployed, tmp_path_factory):
    """The operator's CA, certificate and key, as files on the controller."""
    superlink = role_vms(demo, "superlink")[0]
    pem = pki.operator_pki([vm_ip(demo, superlink), "127.0.0.1", "localhost"])
    folder = tmp_path_factory.mktemp("operator")
    for name in ("ca", "cert", "key"):
        (folder / name).write_text(getattr(pem, name))
    (folder / "key").chmod(0o600)
    pem.vars = {
        "tls_ca_mode": "provided",
        **{f"tls_provided_{name}": f"{{{{ lookup('file', '{folder / name}') }}}}"
           for name in ("ca", "cert", "key")},
    }  # fmt: skip
    return pem


def site_vars(demo, operator):
    """What site.yml and rotate_certs.yml are told: the images the VMs were baked with, the
    operator's certificates, and this host as the Control API's source (they read no VM context:
    what only the context said falls back to the role defaults, loopback only for Control)."""
    return {**SITE_VARS, **operator.vars, "superlink_control_allowed_cidrs": [demo.gateway()]}


def tokens(demo):
    """Every VM's OneGate token: no playbook output may show one."""
    vms = role_vms(demo, "superlink") + role_vms(demo, "supernode")
    return [in_vm(demo, vm, "cat", "/run/one-context/token.txt").stdout.strip() for vm in vms]


def no_secret_shown(demo, proc, operator):
    output = proc.stdout + proc.stderr
    found = secrets_in(output, ADMIN_PASSWORD, *tokens(demo), *operator.key_body_lines())
    assert not found, f"secrets in the output: {found}"


def test_site_yml_installs_the_operator_certificates(demo, deployed, inventory, operator):
    """site.yml through the oneflow inventory, at -vvv: a training setting and the operator's
    certificates (the key from a file on the controller, never through OpenNebula); the
    SuperNodes trust the new CA; a second run changes nothing."""
    change = {**site_vars(demo, operator), "superlink_training": {"num_rounds": 2}}
    first = demo.playbook("site.yml", "-i", str(inventory), "-vvv", extra=change)
    print(first.stdout[-3000:], first.stderr[-2000:])
    assert first.returncode == 0
    assert re.search(r"changed=[1-9]", first.stdout)
    no_secret_shown(demo, first, operator)
    superlink = role_vms(demo, "superlink")[0]
    env = in_vm(demo, superlink, "cat", "/opt/flower/config/superlink.env")
    assert env.returncode == 0 and "FL_NUM_ROUNDS=2" in env.stdout
    served = in_vm(demo, superlink, "cat", "/opt/flower/certs/server.pem").stdout
    assert served.strip() == operator.cert.strip()
    published = base64.b64decode(user_template(demo, superlink)["FL_CA_CERT"]).decode()
    assert published.strip() == operator.ca.strip()
    demo.ca_file.write_text(operator.ca)  # flwr trusts the operator's CA from now on
    second = demo.playbook("site.yml", "-i", str(inventory), extra=change)
    assert second.returncode == 0
    assert not re.search(r"changed=[1-9]", second.stdout), second.stdout[-3000:]


def test_rotate_certs_shows_no_secret(demo, deployed, inventory, operator):
    proc = demo.playbook("rotate_certs.yml", "-i", str(inventory), "-vvv",
                         extra=site_vars(demo, operator))  # fmt: skip
    print(proc.stdout[-2000:], proc.stderr[-2000:])
    assert proc.returncode == 0
    no_secret_shown(demo, proc, operator)


def test_onegate_shows_a_supernode_no_secret(demo, deployed, operator):
    """All a SuperNode VM can read through OneGate, its siblings' CONTEXT included."""
    me = role_vms(demo, "supernode")[0]
    vms = role_vms(demo, "superlink") + role_vms(demo, "supernode")
    answers = [onegate(demo, me, "GET", path)
               for path in ["/vm", "/service", "/service?extended=true",
                            *(f"/vms/{vm}" for vm in vms)]]  # fmt: skip
    extended = json.loads(answers[2])["SERVICE"]
    contexts = [node["vm_info"]["VM"]["TEMPLATE"]["CONTEXT"]
                for role in extended["roles"] for node in role["nodes"]]  # fmt: skip
    assert len(contexts) == len(vms)  # the siblings' CONTEXT is readable: the test sees it all
    assert all("ONEAPP_FL_CONTROL_ALLOWED_CIDRS" in c for c in contexts[:1])
    text = "\n".join(answers)
    assert "PRIVATE KEY" not in text
    assert not secrets_in(text, ADMIN_PASSWORD, *operator.key_body_lines())
    for node in role_vms(demo, "supernode"):  # the public half of each node's identity
        assert user_template(demo, node)["FL_NODE_PUBKEY"].startswith("ecdsa-sha2-nistp384 ")


def test_a_supernode_cannot_redirect_the_federation(demo, deployed):
    """SuperNode A rewrites the SuperLink's FL_ENDPOINT, then its FL_CA_CERT, with its own
    token; SuperNode B booting again and deploy.yml refuse both and change nothing."""
    superlink = role_vms(demo, "superlink")[0]
    attacker, victim = role_vms(demo, "supernode")[:2]
    saved = {k: user_template(demo, superlink)[k] for k in ("FL_ENDPOINT", "FL_CA_CERT")}
    foreign_ca = base64.b64encode(pki.operator_pki(["127.0.0.1"]).ca.encode()).decode()
    attacks = [
        ({"FL_ENDPOINT": f"{vm_ip(demo, attacker)}:9092"}, "not an address"),
        ({**saved, "FL_CA_CERT": foreign_ca}, "does not verify the certificate"),
    ]
    try:
        for attack, refusal in attacks:
            publish_as(demo, attacker, superlink, attack)
            rc, log = reboot_hook(demo, victim)
            assert rc != 0 and refusal in log, log[-3000:]
            assert user_template(demo, victim)["FL_ERROR"]
            proc = demo.deploy_playbook()
            assert proc.returncode != 0 and refusal in proc.stdout, proc.stdout[-3000:]
            assert "BEGIN CERTIFICATE" in demo.ca_file.read_text()  # still the operator's CA
    finally:
        publish_as(demo, superlink, superlink, saved)  # the SuperLink's own values, by itself
    rc, log = reboot_hook(demo, victim)
    assert rc == 0, log[-3000:]
    assert "FL_ERROR" not in user_template(demo, victim)


def test_boot_shows_no_secret(demo, deployed, operator):
    """boot.yml at -vvv on a SuperNode, and every VM's boot log and journal: no OneGate token,
    no password, no key."""
    node = role_vms(demo, "supernode")[0]
    boot = in_vm(demo, node, "/usr/local/sbin/flower-appliance-boot", "-vvv", timeout=600)
    assert boot.returncode == 0, boot.stdout[-3000:]
    texts = [boot.stdout, boot.stderr]
    for vm in role_vms(demo, "superlink") + role_vms(demo, "supernode"):
        texts.append(in_vm(demo, vm, "journalctl", "-u", "flower-appliance", "--no-pager").stdout)
        texts.append(in_vm(demo, vm, "cat", "/var/log/flower-appliance.log").stdout)
    found = secrets_in("\n".join(texts), ADMIN_PASSWORD, *tokens(demo), *operator.key_body_lines())
    assert not found, f"secrets in the boot output and logs: {found}"


def scale(demo, count):
    proc = demo.playbook(
        "scale.yml",
        extra={"flower_service_name": f"flower-{demo.id}", "flower_supernode_count": count,
               "flower_poll_interval": 1},
    )  # fmt: skip
    print(proc.stdout[-2000:], proc.stderr[-2000:])
    assert proc.returncode == 0


def test_scaling_adds_a_node_that_joins_the_next_run(demo, deployed):
    before = role_vms(demo, "supernode")
    scale(demo, 3)
    after = role_vms(demo, "supernode")
    assert len(after) == 3 and set(before) < set(after)
    # The run waits for 3 nodes: it finishes only if the new one joined.
    result = train(demo, 1, "min-nodes=3", min_accuracy=0.5)
    assert result["status"] == "finished:completed"


def test_superlink_restart_keeps_nodes_and_history(demo, deployed):
    history = run_ids(demo)
    superlink = role_vms(demo, "superlink")[0]
    nodes = {user_template(demo, vm)["FL_NODE_ID"]: vm for vm in role_vms(demo, "supernode")}
    # Flower 1.25 logs each node's PullMessages at INFO, 1.42 at DEBUG only: there the run
    # below (it waits for all 3 nodes) is what shows them back.
    logged = bool(nodes_polling(demo, superlink, "2000-01-01T00:00:00Z"))
    since = vm_clock(demo, superlink)
    assert in_vm(demo, superlink, "systemctl", "restart", "flower-superlink").returncode == 0
    # The SuperNodes come back by themselves (Flower retries every 20 s at most).
    start = time.monotonic()
    while logged and not set(nodes) <= nodes_polling(demo, superlink, since):
        if time.monotonic() > start + 180:
            break
        time.sleep(3)
    if logged:
        back = nodes_polling(demo, superlink, since)
        assert set(nodes) <= back, f"SuperNodes not back after the restart: {set(nodes) - back}"
        print(f"{len(nodes)} SuperNodes back {time.monotonic() - start:.1f} s after the restart")
    while demo.flwr("--list-runs", timeout=180).returncode != 0:  # the SuperLink answers again
        assert time.monotonic() < start + 180, "the SuperLink's Control API is not back"
        time.sleep(3)
    result = train(demo, 1, "min-nodes=3", min_accuracy=0.5)
    assert result["status"] == "finished:completed"
    assert history < run_ids(demo)


def test_scaling_down_unregisters_the_removed_node(demo, deployed, tmp_path):
    """The registrar unregisters the key of a VM that scaling removed: with it, a SuperNode is
    refused from then on."""
    before = role_vms(demo, "supernode")
    keys = {vm: in_vm(demo, vm, "cat", "/opt/flower/keys/supernode").stdout for vm in before}
    scale(demo, 2)
    (removed,) = set(before) - set(role_vms(demo, "supernode"))
    key = tmp_path / "removed.key"
    key.write_text(keys[removed])
    key.chmod(0o644)  # readable by the container's uid (a copy made for this test)
    superlink_vm = role_vms(demo, "superlink")[0]
    superlink = f"{vm_ip(demo, superlink_vm)}:9092"
    name = f"flower-{demo.id}-removed-node"
    image = f"localhost/flower-supernode:{appliance_demo.VERSION}-sklearn"
    cmd = ["docker", "run", "--rm", "--name", name, "--network", demo.network,
           "-v", f"{key}:/app/keys/k:ro", "-v", f"{demo.ca_file}:/app/certificates/ca.crt:ro",
           "--entrypoint", "flower-supernode", image,
           "--root-certificates", "certificates/ca.crt", "--superlink", superlink,
           "--auth-supernode-private-key", "keys/k", "--max-retries", "1"]  # fmt: skip
    deadline = time.monotonic() + 120
    while True:  # until the registrar has acted (it looks every 10 s)
        since = vm_clock(demo, superlink_vm)
        try:
            subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        except subprocess.TimeoutExpired:  # it connected: still registered
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        # The SuperLink says why it refused (Flower 1.25 and 1.42 alike).
        refusals = flower_logs(demo, superlink_vm, "flower-superlink", since)
        if "No SuperNode found with the given public key" in refusals:
            break
        assert time.monotonic() < deadline, f"the removed node is accepted: {refusals[-2000:]}"
        time.sleep(5)


# ------------------------------------------------------------------------- quick start
def oned(demo, method, *args):
    """One oned XML-RPC call as oneadmin; the answer's value (its error raised)."""
    url = json.loads(demo.env_file.read_text())["ONE_URL"]
    answer = getattr(xmlrpc.client.ServerProxy(url), method)(f"oneadmin:{ADMIN_PASSWORD}", *args)
    assert answer[0], f"{method}: {answer[1]}"
    return answer[1]


def instantiate(demo, template_name, vm_name, context):
    """onetemplate instantiate of a VM template (no OneFlow), the context given in full as the
    seeds' templates have it (NETWORK, TOKEN, REPORT_READY) plus the quick start's variables."""
    (template_id,) = [t["id"] for t in demo.emulator("/_emulator/state")["vm_templates"]
                      if t["name"] == template_name]  # fmt: skip
    context = {"NETWORK": "YES", "TOKEN": "YES", "REPORT_READY": "YES", **context}
    extra = "CONTEXT = [ " + ", ".join(f'{k} = "{v}"' for k, v in context.items()) + " ]"
    return oned(demo, "one.template.instantiate", template_id, vm_name, False, extra)


def wait_published(demo, vm_id, key, timeout=600):
    """The VM's USER_TEMPLATE once it holds ``key`` or FL_ERROR."""
    deadline = time.monotonic() + timeout
    while True:
        published = user_template(demo, vm_id)
        if key in published or "FL_ERROR" in published:
            return published
        assert time.monotonic() < deadline, f"VM {vm_id}: no {key} in {timeout} s: {published}"
        time.sleep(2)


def test_quick_start_vms_from_templates_train_over_tls(demo, deployed, tmp_path):
    """The seeds' quick start (000_*): VMs instantiated from the VM templates, no OneFlow. The
    SuperLink makes its CA at boot (TLS on) and publishes it; each SuperNode is given the
    SuperLink's address, that CA and its node config in its context and asks OneGate for no
    service; they train end to end over TLS. A SuperNode given the address alone (the quick
    start as first written, TLS on by default) fails saying what to set. Node authentication is
    off on these VMs: outside a service nothing registers a SuperNode's key at boot
    (docs/security.md)."""
    started = time.monotonic()
    tag = f"qs-{demo.id}"
    no_auth = {"ONEAPP_FL_NODE_AUTH_ENABLED": "NO"}
    vms = []
    try:
        control = {"ONEAPP_FL_CONTROL_ALLOWED_CIDRS": demo.gateway()}
        superlink = instantiate(
            demo, "Flower SuperLink", f"{tag}-superlink", {**no_auth, **control}
        )
        vms.append(superlink)
        deadline = time.monotonic() + 120
        while True:  # the container (and its address) comes with the VM's deployment
            try:
                address = vm_ip(demo, superlink)
            except (subprocess.CalledProcessError, urllib.error.HTTPError):
                address = ""
            if address:
                break
            assert time.monotonic() < deadline, "the SuperLink VM has no container"
            time.sleep(1)
        bare = instantiate(demo, "Flower SuperNode", f"{tag}-bare",
                           {"ONEAPP_FL_SUPERLINK_ADDRESS": f"{address}:9092"})  # fmt: skip
        vms.append(bare)

        published = wait_published(demo, superlink, "FL_READY")
        assert published.get("FL_READY") == "YES", published
        assert published["FL_TLS"] == "YES" and "SERVICE_ID" not in published
        assert published["FL_ENDPOINT"] == f"{address}:9092"
        ca_base64 = published["FL_CA_CERT"]
        booted = time.monotonic() - started

        nodes = [
            instantiate(demo, "Flower SuperNode", f"{tag}-supernode-{i}", {
                **no_auth,
                "ONEAPP_FL_SUPERLINK_ADDRESS": f"{address}:9092",
                "ONEAPP_FL_SSL_CA_CERTFILE": ca_base64,
                "ONEAPP_FL_NODE_CONFIG": f"partition-id={i} num-partitions=2",
                # Asked for a GPU the VM does not have: a warning, then the CPU.
                **({"ONEAPP_FL_GPU_ENABLED": "YES"} if i == 1 else {}),
            })
            for i in range(2)
        ]  # fmt: skip
        vms += nodes

        refused = wait_published(demo, bare, "FL_NODE_READY")
        assert "FL_NODE_READY" not in refused, refused
        error = refused["FL_ERROR"]
        assert "in no OneFlow service" in error, error
        assert "ONEAPP_FL_SSL_CA_CERTFILE" in error and "ONEAPP_FL_NODE_CONFIG" in error, error

        for node in nodes:
            ready = wait_published(demo, node, "FL_NODE_READY")
            if "FL_ERROR" in ready:
                log = in_vm(demo, node, "journalctl", "-u", "flower-appliance", "--no-pager")
                pytest.fail(f"VM {node}: {ready['FL_ERROR']}\n{log.stdout[-3000:]}")
            assert ready["FL_NODE_READY"] == "YES" and "SERVICE_ID" not in ready
            boot_log = in_vm(
                demo, node, "journalctl", "-u", "flower-appliance", "--no-pager"
            ).stdout
            assert "Read this VM from OneGate" in boot_log  # GET /vm, its own
            assert "Wait for the SuperLink to publish FL_READY" not in boot_log  # no /service
            assert ready["FL_GPU_AVAILABLE"] == "NO"
            gpu_log = in_vm(demo, node, "journalctl", "-t", "flower-gpu", "-p", "warning",
                            "-o", "cat", "--no-pager").stdout  # fmt: skip
            gpu_warning = "FL_GPU_ENABLED=YES but GPU not available: no NVIDIA PCI device"
            assert (gpu_warning in gpu_log) == (node == nodes[1]), gpu_log
        joined = time.monotonic() - started

        ca_file = tmp_path / "quick-start-ca.crt"
        ca_file.write_bytes(base64.b64decode(ca_base64))
        since = vm_clock(demo, superlink)
        try:
            result = demo.train(1, min_accuracy=0.5, timeout=300, address=f"{address}:9093",
                                ca_file=ca_file)  # fmt: skip
        except appliance_demo.DemoError:
            print(flower_logs(demo, superlink, "flower-superlink", since)[-4000:])
            for node in nodes:
                print(flower_logs(demo, node, "flower-supernode", since)[-3000:])
            raise
        assert result["status"] == "finished:completed"
        assert result["rounds"][-1]["accuracy"] > 0.5
        trained = time.monotonic() - started
        print(f"quick start: SuperLink FL_READY {booted:.0f} s, SuperNodes ready {joined:.0f} s,"
              f" trained {trained:.0f} s after the first instantiate")  # fmt: skip
    finally:
        for vm_id in vms:
            try:
                oned(demo, "one.vm.action", "terminate-hard", vm_id)
            except (AssertionError, OSError) as exc:
                print(f"VM {vm_id} not terminated: {exc}")
