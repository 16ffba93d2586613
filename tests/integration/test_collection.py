"""The collection builds into a tarball that installs and runs as opennebula.flower."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args, env=None, cwd=None):
    return subprocess.run(
        list(args),
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The built collection installed in a fresh path, with the community collections beside."""
    tmp = tmp_path_factory.mktemp("collection")
    run("ansible-galaxy", "collection", "build", "--output-path", str(tmp))
    (tarball,) = tmp.glob("opennebula-flower-*.tar.gz")
    # Away from the checkout: its ansible.cfg links the checkout in as opennebula.flower.
    (tmp / "ansible.cfg").write_text("[defaults]\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(tmp / "ansible.cfg")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(tmp / "c")
    run(
        "ansible-galaxy", "collection", "install", "--offline", "--no-deps",
        "-p", str(tmp / "c"), str(tarball), env=env, cwd=tmp,
    )  # fmt: skip
    env["ANSIBLE_COLLECTIONS_PATH"] = f"{tmp / 'c'}:{ROOT / '.collections'}"
    return tmp, env


def test_tarball_installs_the_roles_and_playbooks(installed):
    tmp, _ = installed
    base = tmp / "c" / "ansible_collections" / "opennebula" / "flower"
    roles = ("docker", "tls", "firewall", "superlink", "supernode", "flower_container")
    for role in (*roles, "appliance", "deploy"):
        assert (base / "roles" / role / "meta" / "argument_specs.yml").is_file()
    for playbook in ("site", "deploy", "status", "scale", "destroy", "bake", "boot"):
        assert (base / "playbooks" / f"{playbook}.yml").is_file()
    assert not (base / "molecule").exists()  # development files stay out of the tarball


def test_installed_playbook_runs_by_fqcn(installed, tmp_path):
    _, env = installed
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    superlink:\n      hosts: {a: {}}\n")
    out = run(
        "ansible-playbook",
        "opennebula.flower.site",
        "-i",
        str(inventory),
        "--syntax-check",
        env=env,
        cwd=tmp_path,
    )
    assert "ansible_collections/opennebula/flower/playbooks/site.yml" in out


PLUGINS = [
    ("module", "onegate"),
    ("module", "onegate_info"),
    ("module", "oneflow_template"),
    ("module", "oneflow_service"),
    ("module", "oneflow_service_info"),
    ("module", "flower_context"),
    ("inventory", "oneflow"),
    ("filter", "node_config"),
    ("filter", "systemd_quote"),
]


@pytest.mark.parametrize(("kind", "name"), PLUGINS)
def test_plugin_docs_render(installed, tmp_path, kind, name):
    _, env = installed
    out = run("ansible-doc", "-t", kind, f"opennebula.flower.{name}", env=env, cwd=tmp_path)
    assert f"opennebula.flower.{name}" in out
    assert "EXAMPLES" in out or "EXAMPLES" in out.upper()
