"""tools/oneflow_template.py: the four service template files (plain and GPU, OpenNebula 7.0 and
6.10) from one description and meta/context_variables.yml, and what ``check`` reports."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import oneflow_template as tool  # noqa: E402


@pytest.fixture(scope="module")
def variables() -> list[dict[str, Any]]:
    return tool.load_variables(tool.SPEC)


def test_four_files() -> None:
    assert sorted(tool.FILES.values()) == [
        "flower-service-6.10.yaml",
        "flower-service-gpu-6.10.yaml",
        "flower-service-gpu.yaml",
        "flower-service.yaml",
    ]


@pytest.mark.parametrize("version", ["7.0", "6.10"])
def test_gpu_variant_differs_only_by_name_and_gpu_default(
    variables: list[dict[str, Any]], version: str
) -> None:
    cpu = yaml.safe_load(tool.render(variables, version, "cpu"))
    gpu = yaml.safe_load(tool.render(variables, version, "gpu"))
    assert (cpu["name"], gpu["name"]) == ("flower-federation", "flower-federation-gpu")
    assert "GPU" in gpu["description"]
    inputs = "user_inputs" if version == "7.0" else "custom_attrs"
    node_cpu, node_gpu = cpu["roles"][1][inputs], gpu["roles"][1][inputs]
    assert node_cpu["ONEAPP_FL_GPU_ENABLED"].endswith("|NO")
    assert node_gpu["ONEAPP_FL_GPU_ENABLED"].endswith("|YES")
    for body in (cpu, gpu):
        del body["name"], body["description"]
        del body["roles"][1][inputs]["ONEAPP_FL_GPU_ENABLED"]
    assert cpu == gpu
    assert tool.schema_problems(gpu | {"name": "x"}, version) == []


def test_check_names_a_stale_gpu_file(tmp_path: Path) -> None:
    for name in tool.FILES.values():
        shutil.copy(ROOT / "oneflow" / name, tmp_path / name)
    assert tool.problems(tool.SPEC, tmp_path) == []
    stale = tmp_path / "flower-service-gpu-6.10.yaml"
    stale.write_text(stale.read_text().replace("|YES", "|NO"))
    (tmp_path / "flower-service-gpu.yaml").unlink()
    assert tool.problems(tool.SPEC, tmp_path) == [
        f"{tmp_path / 'flower-service-gpu.yaml'}: missing (run tools/oneflow_template.py render)",
        f"{stale}: stale (run tools/oneflow_template.py render)",
    ]
