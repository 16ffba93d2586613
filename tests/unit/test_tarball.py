"""The collection tarball holds what a user runs, and nothing of the test harness.

``ansible-galaxy collection build`` is run on this checkout (galaxy.yml's ``build_ignore``) into
a temporary directory, and the tarball's members are checked against an allow-list of product
paths: a harness file (``scripts/``, ``mk/``, ``Makefile``, ``tests/``, the emulator, ...) or any
other stray file in the tarball fails the test, and so does a missing key product file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

# What a user of the collection runs or reads: file names at the top, folders with a slash.
ALLOWED = (
    "MANIFEST.json",
    "FILES.json",
    "README.md",
    "LICENSE",
    "ansible.cfg",  # the Packer template's collection_dir holds playbooks/ and ansible.cfg
    "changelogs/",
    "demo/",
    "docs/",
    "inventories/",
    "meta/",
    "monitoring/",  # the operator's Prometheus rules, Grafana dashboards and provisioning
    "oneflow/",
    "packer/",
    "playbooks/",
    "plugins/",
    "roles/",
)
# Harness folders inside allowed ones (galaxy.yml's build_ignore leaves them out).
DENIED = ("monitoring/prometheus/tests/",)
REQUIRED = (
    "MANIFEST.json",
    "FILES.json",
    "README.md",
    "LICENSE",
    "meta/runtime.yml",
    "roles/superlink/tasks/main.yml",
    "roles/supernode/tasks/main.yml",
    "roles/deploy/tasks/main.yml",
    "plugins/inventory/oneflow.py",
    "plugins/modules/onegate.py",
    "playbooks/site.yml",
    "playbooks/boot.yml",
    "playbooks/status.yml",
    "packer/flower.pkr.hcl",
    "packer/scripts/prepare.sh",
    "oneflow/flower-service.yaml",
    "demo/sklearn/pyproject.toml",
    "meta/metrics.yml",
    "monitoring/prometheus/flower-alerts.yml",
    "monitoring/grafana/dashboards/flower-training-overview.json",
    "monitoring/grafana/dashboards/flower-client-health.json",
    "monitoring/grafana/dashboards/flower-gpu-health.json",
    "monitoring/grafana/provisioning/dashboards.yml",
    "monitoring/grafana/provisioning/datasources.yml",
    "docs/monitoring.md",
)
# Harness paths that once shipped: each must be outside the allow-list (guards the list itself).
HARNESS = (
    "Makefile",
    "mk/appliance.mk",
    "scripts/appliance_demo.py",
    "scripts/flwr_run_check.py",
    "scripts/one-context-standin/build-deb.sh",
    "scripts/bake/bake.sh",
    "tests/unit/test_tarball.py",
    "design/observability.md",
    "opennebula_emulator/server.py",
    "molecule/e2e/molecule.yml",
    "requirements-dev.txt",
    "monitoring/prometheus/tests/flower-alerts.test.yml",
    "tests/unit/test_dashboards.py",
)


def outside(names: list[str]) -> list[str]:
    """The files of ``names`` not under an allowed product path, or under a denied one."""
    folders = tuple(a for a in ALLOWED if a.endswith("/"))
    return [
        n for n in names if (n not in ALLOWED and not n.startswith(folders)) or n.startswith(DENIED)
    ]


def _galaxy_cli() -> str:
    beside = Path(sys.executable).with_name("ansible-galaxy")
    found = str(beside) if beside.exists() else shutil.which("ansible-galaxy")
    if not found:
        pytest.skip("ansible-galaxy is not installed")
    return found


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tarball")
    subprocess.run(
        [_galaxy_cli(), "collection", "build", "--force", "--output-path", str(out), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    (built,) = out.glob("*.tar.gz")
    return built


@pytest.fixture(scope="module")
def members(tarball: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(tarball) as tar:
        return {m.name.removeprefix("./"): m for m in tar.getmembers()}


def test_allow_list_rejects_harness() -> None:
    assert outside(list(HARNESS)) == list(HARNESS)
    assert outside(list(REQUIRED)) == []


def test_only_product_files(members: dict[str, tarfile.TarInfo]) -> None:
    files = sorted(n for n, m in members.items() if not m.isdir())
    assert outside(files) == [], "harness or stray files in the collection tarball"


def test_no_links_or_special_files(members: dict[str, tarfile.TarInfo]) -> None:
    assert [n for n, m in members.items() if not (m.isfile() or m.isdir())] == []


def test_key_product_files(members: dict[str, tarfile.TarInfo]) -> None:
    missing = [n for n in REQUIRED if n not in members or not members[n].isfile()]
    assert missing == []


def test_manifest_from_galaxy_yml(tarball: Path) -> None:
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
        files = json.load(tar.extractfile("FILES.json"))
    info = manifest["collection_info"]
    for key in ("namespace", "name", "version", "dependencies"):
        assert info[key] == galaxy[key], key
    assert tarball.name == f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    listed = {f["name"] for f in files["files"] if f["ftype"] == "file"}
    with tarfile.open(tarball) as tar:
        held = {m.name for m in tar.getmembers() if m.isfile()} - {"MANIFEST.json", "FILES.json"}
    assert listed == held
