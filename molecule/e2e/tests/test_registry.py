"""Images the default way: pulled from a private registry, derived on the VM.

The scenario's VMs pull Flower's stock images (flwr/<component>:<version>, no extra package, as
Docker Hub holds them) from the test registry (TLS with a test CA, basic auth: the docker
role's docker_registries) and build the images the containers run on them, with scikit-learn
and the Flower fixes. Runs after test_federation.py (file order): the demo trained on them.
"""

import json
import os
from pathlib import Path

import pytest
from e2e_playbook import run_playbook

testinfra_hosts = ["ansible://all"]

ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
VERSION = os.environ.get("FLOWER_VERSION", "1.42.0")
REGISTRY = f"flower-registry.test:{os.environ.get('FLOWER_REGISTRY_PORT') or '5443'}"
PASSWORD = (ROOT / ".cache" / "registry" / "password").read_text().strip()
PHASES = Path(__file__).with_name("registry_phases.yml")


def component(host):
    superlink = host.backend.get_hostname().startswith("flower-e2e-superlink")
    return "superlink" if superlink else "supernode"


def python_in(host, ref, *args):
    """python3 in a throwaway container of an image, in the VM, without network."""
    quoted = " ".join(f"'{a}'" for a in args)
    return host.run(f"docker run --rm --network none --entrypoint python3 {ref} {quoted}")


def image(host, ref):
    return json.loads(host.check_output(f"docker image inspect {ref}"))[0]


def playbook(*args):
    return run_playbook(PHASES, "-v", *args, timeout=900)


def test_container_runs_the_image_derived_from_the_registry(host):
    name = component(host)
    stock = f"{REGISTRY}/flwr/{name}:{VERSION}"
    derived = f"localhost/flower-{name}:{VERSION}-sklearn"
    running = json.loads(host.check_output(f"docker inspect flower-{name}"))[0]["Config"]["Image"]
    assert running == derived
    assert f"FROM {stock}\n" in host.file(f"/opt/flower/build/{name}/Dockerfile").content_string
    base_layers = image(host, stock)["RootFS"]["Layers"]
    layers = image(host, derived)["RootFS"]["Layers"]
    assert layers[: len(base_layers)] == base_layers and len(layers) > len(base_layers)


def test_derived_image_adds_the_apps_packages(host):
    name = component(host)
    check = "import flwr, sklearn; print(flwr.__version__)"
    derived = f"localhost/flower-{name}:{VERSION}-sklearn"
    out = python_in(host, derived, "-c", check)
    assert out.rc == 0 and out.stdout.strip() == VERSION, out.stderr
    stock = python_in(host, f"{REGISTRY}/flwr/{name}:{VERSION}", "-c", check)
    assert stock.rc != 0 and "sklearn" in stock.stderr, "the stock image has scikit-learn"
    fixes = python_in(host, derived, "/usr/local/lib/flower_fixes.py", "--check")
    assert fixes.rc == 0, fixes.stderr


@pytest.mark.default_release_only
def test_registry_access(host):
    assert host.file(f"/etc/docker/certs.d/{REGISTRY}/ca.crt").contains("BEGIN CERTIFICATE")
    auths = json.loads(host.file("/root/.docker/config.json").content_string)["auths"]
    assert REGISTRY in auths


@pytest.fixture(scope="module")
def rerun():
    return playbook()


@pytest.mark.default_release_only
def test_rerun_changes_nothing(rerun):
    assert rerun.returncode == 0
    recap = rerun.stdout[rerun.stdout.rindex("PLAY RECAP") :]
    assert recap.count("changed=0") == 3, recap


@pytest.mark.default_release_only
def test_credentials_stay_out_of_the_output(rerun):
    assert PASSWORD not in rerun.stdout + rerun.stderr
    assert "censored due to no_log" in rerun.stdout


def test_superlink_image_named_is_checked_for_flower_defects():
    """superlink_image pulled as is: the stock 1.25 image still has the PullObject race."""
    stock = f"{REGISTRY}/flwr/superlink:{VERSION}"
    proc = playbook("--limit", "superlink", "-e", f"superlink_image={stock}")
    if VERSION == "1.25.0":
        out = " ".join((proc.stdout + proc.stderr).split())
        assert proc.returncode != 0
        assert "superlink_image" in out and "PullObject race" in out, out[-3000:]
    else:
        assert proc.returncode == 0


@pytest.mark.default_release_only
def test_supernode_image_named_is_used_as_is():
    """supernode_image pulled as is: the framework image build_images.yml pushed."""
    framework = f"{REGISTRY}/flower-supernode:{VERSION}-sklearn"
    proc = playbook("--limit", "supernode", "-e", f"supernode_image={framework}")
    assert proc.returncode == 0
    assert f"Image is pulled ({framework})" in proc.stdout
