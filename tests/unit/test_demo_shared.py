"""tools/demo_shared.py: the PyTorch demo's settings.py, a generated regular file copied from the
sklearn demo's under a header, and what ``check`` reports (in sync, stale, missing, a link)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import demo_shared as tool  # noqa: E402


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the real source and a rendered output in ``tmp_path``."""
    source, output = tmp_path / "settings.py", tmp_path / "app" / "settings.py"
    shutil.copy(tool.SOURCE, source)
    assert tool.main(["render", "--source", str(source), "--output", str(output)]) == 0
    return source, output


def _check(source: Path, output: Path) -> int:
    return tool.main(["check", "--source", str(source), "--output", str(output)])


def test_the_repository_copy_is_in_sync_and_a_regular_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert tool.main(["check"]) == 0
    assert "in sync" in capsys.readouterr().out
    assert tool.OUTPUT.is_file() and not tool.OUTPUT.is_symlink()
    text = tool.OUTPUT.read_text(encoding="utf-8")
    header, body = text.split("\n", 2)[:2], text.split("\n", 2)[2]
    assert "demo/sklearn/flower_sklearn_digits/settings.py" in header[0]
    assert "tools/demo_shared.py" in header[0] and "Do not edit" in header[1]
    assert body == tool.SOURCE.read_text(encoding="utf-8")


def test_check_passes_on_a_fresh_render(files: tuple[Path, Path]) -> None:
    assert _check(*files) == 0


def test_check_fails_naming_a_stale_copy(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source, output = files
    source.write_text(source.read_text(encoding="utf-8") + "\nEXTRA = 1\n", encoding="utf-8")
    capsys.readouterr()
    assert _check(source, output) == 1
    assert f"{output}: stale" in capsys.readouterr().out
    # render brings it back in sync, and a second render changes nothing
    assert tool.main(["render", "--source", str(source), "--output", str(output)]) == 0
    assert "updated" in capsys.readouterr().out
    assert tool.main(["render", "--source", str(source), "--output", str(output)]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert _check(source, output) == 0


def _edit(output: Path) -> None:
    output.write_text(output.read_text(encoding="utf-8").replace("FedAvg", "FedProx", 1))


@pytest.mark.parametrize(("spoil", "said"), [(_edit, "stale"), (Path.unlink, "missing")])
def test_check_fails_on_an_edited_or_missing_copy(
    files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    spoil: Callable[[Path], None],
    said: str,
) -> None:
    source, output = files
    spoil(output)
    capsys.readouterr()
    assert _check(source, output) == 1
    assert f"{output}: {said}" in capsys.readouterr().out


def test_a_link_is_refused_and_render_replaces_it_without_touching_the_source(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    source, output = files
    before = source.read_text(encoding="utf-8")
    output.unlink()
    output.symlink_to(source)
    capsys.readouterr()
    assert _check(source, output) == 1
    assert f"{output}: a symbolic link" in capsys.readouterr().out
    assert tool.main(["render", "--source", str(source), "--output", str(output)]) == 0
    assert not output.is_symlink() and _check(source, output) == 0
    assert source.read_text(encoding="utf-8") == before


def test_a_missing_source_is_an_error(tmp_path: Path) -> None:
    assert _check(tmp_path / "none.py", tmp_path / "out.py") == 2
