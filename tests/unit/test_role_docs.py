"""Tests for tools/role_docs.py (role defaults / argument spec / README consistency).

Most tests copy the correct fixture role ``tests/unit/fixtures/roles/sample`` to a temporary
directory, break one thing in it and assert that the checker reports exactly that, naming
the role and the variable.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "tools" / "role_docs.py"
FIXTURE_ROLES = Path(__file__).resolve().parent / "fixtures" / "roles"
SAMPLE = FIXTURE_ROLES / "sample"
BROKEN = FIXTURE_ROLES / "broken"


def _import_role_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("role_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["role_docs"] = module  # dataclasses look the module up while executing it
    spec.loader.exec_module(module)
    return module


role_docs = _import_role_docs()


# --------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture
def role(tmp_path: Path) -> Path:
    """A private copy of the correct ``sample`` role (directory name, hence prefix, kept)."""
    target = tmp_path / "roles" / "sample"
    shutil.copytree(SAMPLE, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    """Replace the single occurrence of ``old`` in ``path`` (fail loudly if it is not there)."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur exactly once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def defaults(role_dir: Path) -> Path:
    return role_dir / "defaults" / "main.yml"


def spec(role_dir: Path) -> Path:
    return role_dir / "meta" / "argument_specs.yml"


def readme(role_dir: Path) -> Path:
    return role_dir / "README.md"


def rerender(role_dir: Path) -> None:
    """Refresh the README so that only the problem under test remains."""
    role_docs.render_role(role_dir, "opennebula.flower")


def problems_of(role_dir: Path) -> list[str]:
    return role_docs.check_role(role_dir)


def assert_single_problem(role_dir: Path, *fragments: str) -> str:
    """Exactly one problem is reported; it names the role and contains every fragment."""
    problems = problems_of(role_dir)
    assert len(problems) == 1, "\n".join(problems) or "no problem reported"
    problem = problems[0]
    assert problem.startswith(f"{role_dir.name}: "), problem
    for fragment in fragments:
        assert fragment in problem, f"{fragment!r} not in {problem!r}"
    return problem


# --------------------------------------------------------------------------------------------
# The correct fixture


def test_correct_fixture_passes() -> None:
    assert problems_of(SAMPLE) == []


def test_correct_copy_passes(role: Path) -> None:
    # Baseline for all the mutation tests below.
    assert problems_of(role) == []


def test_cli_check_ok_prints_one_line_summary() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "check", str(SAMPLE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().count("\n") == 0
    assert "no problems" in result.stdout


# --------------------------------------------------------------------------------------------
# Check 1: defaults <-> main options


def test_undocumented_default(role: Path) -> None:
    edit(defaults(role), "sample_proxy: null\n", "sample_proxy: null\nsample_debug: false\n")
    assert_single_problem(role, "sample_debug", "not documented", "main")


def test_option_missing_from_defaults(role: Path) -> None:
    edit(defaults(role), "sample_ratio: 0.5\n", "")
    assert_single_problem(role, "sample_ratio", "missing from defaults/main.yml")


def test_required_option_with_value_in_defaults(role: Path) -> None:
    edit(defaults(role), "sample_proxy: null\n", "sample_proxy: null\nsample_token: abc\n")
    assert_single_problem(role, "sample_token", "required")


def test_missing_main_entry_point(role: Path) -> None:
    edit(spec(role), "  main:\n", "  primary:\n")
    problems = problems_of(role)
    assert any("no 'main' entry point" in p for p in problems), problems
    assert any("sample_port" in p and "not documented" in p for p in problems), problems


# --------------------------------------------------------------------------------------------
# Check 2: default values


def test_default_mismatch(role: Path) -> None:
    edit(defaults(role), "sample_port: 9092\n", "sample_port: 9093\n")
    assert_single_problem(role, "sample_port", "9092", "9093", "differs")


@pytest.mark.parametrize(
    ("old", "new", "variable"),
    [
        # same "value" for Python's ==, but not for YAML / Ansible
        ("sample_enabled: true\n", "sample_enabled: 1\n", "sample_enabled"),
        ("sample_port: 9092\n", 'sample_port: "9092"\n', "sample_port"),
        ("sample_ratio: 0.5\n", "sample_ratio: 0.50001\n", "sample_ratio"),
        # nested values
        ('  tier: "a|b"\n', '  tier: "a|c"\n', "sample_labels"),
        ("  - python3-docker\n", "  - python3-dockerr\n", "sample_packages"),
    ],
)
def test_default_mismatch_is_strict(role: Path, old: str, new: str, variable: str) -> None:
    edit(defaults(role), old, new)
    problems = [p for p in problems_of(role) if "differs" in p]
    assert len(problems) == 1 and variable in problems[0], problems


def test_template_default_must_be_identical_string(role: Path) -> None:
    edit(defaults(role), '"0.0.0.0:{{ sample_port }}"', '"0.0.0.0:{{sample_port}}"')
    assert_single_problem(role, "sample_listen", "differs", "identical string")


def test_unsafe_tag_is_part_of_the_value(role: Path) -> None:
    edit(defaults(role), '!unsafe "echo {{ not templated }}"', '"echo {{ not templated }}"')
    assert_single_problem(role, "sample_raw_command", "differs")


def test_spec_without_default_for_non_null_value(role: Path) -> None:
    edit(defaults(role), "sample_proxy: null\n", "sample_proxy: http://proxy:3128\n")
    assert_single_problem(role, "sample_proxy", "no default")


def test_required_option_with_spec_default(role: Path) -> None:
    # sample_token is written out in 'main' and 'configure'; give both a default.
    text = spec(role).read_text(encoding="utf-8")
    spec(role).write_text(
        text.replace("required: true\n", "required: true\n        default: x\n"), encoding="utf-8"
    )
    rerender(role)
    assert_single_problem(role, "sample_token", "must not have a default")


# --------------------------------------------------------------------------------------------
# Check 3: option definitions


def test_missing_type(role: Path) -> None:
    edit(spec(role), "        type: float\n", "")
    rerender(role)
    assert_single_problem(role, "sample_ratio", "no type")


def test_unknown_type(role: Path) -> None:
    edit(spec(role), "        type: float\n", "        type: double\n")
    rerender(role)
    assert_single_problem(role, "sample_ratio", "unknown type")


def test_missing_description(role: Path) -> None:
    edit(spec(role), "        description: Share of the data used per round.\n", "")
    rerender(role)
    assert_single_problem(role, "sample_ratio", "no description")


def test_missing_description_in_sub_option(role: Path) -> None:
    edit(spec(role), "            description: Serve TLS.\n", "")
    rerender(role)
    assert_single_problem(role, "sample_tls.enabled", "no description")


def test_missing_elements(role: Path) -> None:
    edit(
        spec(role),
        "        elements: str\n        default: []\n",
        "        default: []\n",
    )
    rerender(role)
    assert_single_problem(role, "sample_extra_args", "without elements")


def test_choices_not_containing_default(role: Path) -> None:
    edit(spec(role), "choices: [server, client]", "choices: [coordinator, client]")
    rerender(role)
    problems = problems_of(role)
    # main is reported for the choice, configure (anchored copy) is not: it is identical.
    assert len(problems) == 1, problems
    assert "sample_mode" in problems[0] and "not one of the choices" in problems[0]


def test_list_default_items_must_be_choices(role: Path) -> None:
    edit(defaults(role), "sample_features: [metrics]", "sample_features: [metrics, logging]")
    edit(spec(role), "default: [metrics]", "default: [metrics, logging]")
    rerender(role)
    assert_single_problem(role, "sample_features", "not one of the choices")


def test_default_of_wrong_type(role: Path) -> None:
    # The classic: an unquoted version number is a float.
    edit(defaults(role), 'sample_version: "1.22.0"', "sample_version: 1.22")
    edit(spec(role), 'default: "1.22.0"', "default: 1.22")
    rerender(role)
    assert_single_problem(role, "sample_version", "is a float, not a str")


def test_unknown_option_key(role: Path) -> None:
    edit(spec(role), "        choices: [metrics,", "        choises: [metrics,")
    rerender(role)
    assert_single_problem(role, "sample_features", "unknown key", "choises")


# --------------------------------------------------------------------------------------------
# Check 4: other entry points


def test_entry_point_drift(role: Path) -> None:
    # sample_token is written out twice (no anchor): change only the 'configure' copy.
    text = spec(role).read_text(encoding="utf-8")
    configure = text.index("  configure:")
    drifted = text[:configure] + text[configure:].replace("no_log: true", "no_log: false")
    spec(role).write_text(drifted, encoding="utf-8")
    rerender(role)
    assert_single_problem(role, "sample_token", "entry point 'configure'", "no_log")


def test_entry_point_option_not_in_main(role: Path) -> None:
    edit(
        spec(role),
        "      sample_packages: *sample_packages\n",
        "      sample_packages: *sample_packages\n"
        "      sample_repo_url:\n"
        "        type: str\n"
        "        description: Where packages come from.\n",
    )
    rerender(role)
    assert_single_problem(role, "sample_repo_url", "entry point 'install'", "not in the 'main'")


# --------------------------------------------------------------------------------------------
# Check 5: prefix


def test_wrong_prefix(role: Path) -> None:
    edit(defaults(role), "sample_proxy: null\n", "sample_proxy: null\nflower_port: 1\n")
    edit(
        spec(role),
        "  install:\n",
        "      flower_port:\n"
        "        type: int\n"
        "        default: 1\n"
        "        description: Wrongly prefixed.\n"
        "  install:\n",
    )
    rerender(role)
    assert_single_problem(role, "flower_port", "sample_")


def test_prefix_needs_the_underscore(role: Path) -> None:
    edit(defaults(role), "sample_proxy: null\n", "sample_proxy: null\nsampleport: 1\n")
    problems = problems_of(role)
    assert any("sampleport" in p and "role prefix sample_" in p for p in problems), problems


def test_registered_prefix_replaces_the_role_name(
    role: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A role listed in ROLE_PREFIXES (deploy: flower) is held to that prefix instead."""
    monkeypatch.setitem(role_docs.ROLE_PREFIXES, "sample", "flower")
    edit(defaults(role), "sample_proxy: null\n", "sample_proxy: null\nflower_port: 1\n")
    problems = problems_of(role)
    assert not any("flower_port" in p and "prefix" in p for p in problems), problems
    assert any("sample_proxy" in p and "role prefix flower_" in p for p in problems), problems
    assert role_docs.ROLE_PREFIXES["deploy"] == "flower"


def test_internal_variable_in_defaults(role: Path) -> None:
    edit(defaults(role), "sample_proxy: null\n", "sample_proxy: null\n__sample_cache: {}\n")
    problems = problems_of(role)
    assert any("__sample_cache" in p and "internal" in p for p in problems), problems


# --------------------------------------------------------------------------------------------
# Check 6: README


def test_stale_readme(role: Path) -> None:
    edit(spec(role), "TCP port the service listens on.", "TCP port to listen on.")
    # the anchored copy in 'configure' changes too, so nothing but the README is wrong
    assert_single_problem(role, "README.md", "stale")


def test_hand_edited_readme_section(role: Path) -> None:
    edit(readme(role), "| `sample_ratio` | float | `0.5` |", "| `sample_ratio` | float | `1` |")
    assert_single_problem(role, "README.md", "stale")


def test_missing_readme(role: Path) -> None:
    readme(role).unlink()
    assert_single_problem(role, "README.md", "missing")


def test_readme_without_markers(role: Path) -> None:
    readme(role).write_text("# Role sample\n", encoding="utf-8")
    assert_single_problem(role, "README.md", "no <!-- BEGIN ARGUMENT SPEC --> section")


def test_readme_with_broken_markers(role: Path) -> None:
    edit(readme(role), role_docs.END_MARKER, "")
    assert_single_problem(role, "README.md", "exactly one")


def test_text_around_the_section_is_free(role: Path) -> None:
    text = readme(role).read_text(encoding="utf-8")
    readme(role).write_text("# Hand written\n\nIntro.\n\n" + text + "\n## Example\n", "utf-8")
    assert problems_of(role) == []


# --------------------------------------------------------------------------------------------
# Files that cannot be used


def test_missing_argument_specs(role: Path) -> None:
    spec(role).unlink()
    assert_single_problem(role, "meta/argument_specs.yml", "missing")


def test_invalid_yaml(role: Path) -> None:
    edit(defaults(role), "sample_port: 9092\n", "sample_port: [9092\n")
    assert_single_problem(role, "defaults/main.yml", "invalid YAML")


def test_duplicate_keys(role: Path) -> None:
    edit(defaults(role), "sample_ratio: 0.5\n", "sample_ratio: 0.5\nsample_port: 9092\n")
    assert_single_problem(role, "defaults/main.yml", "duplicate key", "sample_port")


def test_all_problems_reported_at_once(role: Path) -> None:
    edit(defaults(role), "sample_port: 9092\n", "sample_port: 9093\n")
    edit(defaults(role), "sample_ratio: 0.5\n", "")
    edit(spec(role), "Whether the service is enabled at boot.", "Enable at boot.")
    problems = problems_of(role)
    assert len(problems) == 3, problems
    assert {p.split(": ")[1] for p in problems} == {"sample_port", "sample_ratio", "README.md"}


# --------------------------------------------------------------------------------------------
# Command line on the static broken fixture


def test_cli_check_reports_every_problem_of_broken_fixture() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "check", str(BROKEN), str(SAMPLE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("broken: ") for line in lines), result.stdout
    expected = {
        "broken_undocumented": "not documented",
        "broken_port": "differs",
        "broken_name": "no type",
        "broken_hosts": "without elements",
        "broken_mode": "not one of the choices",
        "broken_version": "entry point 'install'",
        "wrong_prefix": "role prefix broken_",
        "README.md": "stale",
    }
    for variable, message in expected.items():
        assert any(line.startswith(f"broken: {variable}:") and message in line for line in lines), (
            f"no '{message}' problem for {variable} in:\n{result.stdout}"
        )
    assert len(lines) == len(expected), result.stdout
    assert "problem" in result.stderr


def test_cli_rejects_a_missing_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "check", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "not a directory" in result.stderr


# --------------------------------------------------------------------------------------------
# Rendering


def _table_row(role_dir: Path, variable: str, entry_point: str = "main") -> str:
    section = role_docs.render_section(role_docs.load_role(role_dir))
    block = section.split(f"### Entry point `{entry_point}`", 1)[1].split("### ", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith(f"| `{variable}` |")]
    assert len(rows) == 1, block
    return rows[0]


def test_render_table_cells() -> None:
    assert _table_row(SAMPLE, "sample_port") == (
        "| `sample_port` | int | `9092` |  | TCP port the service listens on. |"
    )
    assert _table_row(SAMPLE, "sample_token").startswith("| `sample_token` | str | **required** |")
    mode = _table_row(SAMPLE, "sample_mode")
    assert "| `server`, `client` |" in mode
    assert "Role of this host. `server` runs the coordinator" in mode  # list joined, C() -> code
    labels = _table_row(SAMPLE, "sample_labels")
    assert "`{team: ml, tier: a\\|b}`" in labels  # compact default, pipe escaped
    assert "Labels attached to the service; keys and values are strings." in labels
    assert "| list of str | `[docker-ce, python3-docker]` |" in _table_row(
        SAMPLE, "sample_packages"
    )
    assert _table_row(SAMPLE, "sample_tls.cert_path").startswith("| `sample_tls.cert_path` | path")
    assert "| `sample_port` |" in _table_row(SAMPLE, "sample_port", entry_point="configure")


def test_render_section_layout() -> None:
    section = role_docs.render_section(role_docs.load_role(SAMPLE))
    headings = [line for line in section.splitlines() if line.startswith("#")]
    assert headings == [
        "## Role variables",
        "### Entry point `main`",
        "### Entry point `install`",
        "### Entry point `configure`",
    ]
    assert "Install the pretend service only." in section
    assert section.count("| Variable | Type | Default | Choices | Description |") == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.8", "'1.8'"),
        ("", "''"),
        (None, "null"),
        (True, "true"),
        ("line one\nline two", '"line one\\nline two"'),
        ({"a": [1, "x"]}, "{a: [1, x]}"),
    ],
)
def test_format_value_is_compact_yaml(value: object, expected: str) -> None:
    assert role_docs.format_value(value) == expected


def test_render_is_idempotent(role: Path) -> None:
    before = readme(role).read_text(encoding="utf-8")
    assert role_docs.render_role(role, "opennebula.flower") is False
    assert readme(role).read_text(encoding="utf-8") == before


def test_render_creates_readme(role: Path) -> None:
    readme(role).unlink()
    assert role_docs.render_role(role, "acme.things") is True
    text = readme(role).read_text(encoding="utf-8")
    assert text.startswith("# Role acme.things.sample\n\nSample role used to test")
    assert "Installs and configures a pretend service." in text
    assert role_docs.BEGIN_MARKER in text and role_docs.END_MARKER in text
    assert problems_of(role) == []


def test_render_appends_section_to_readme_without_markers(role: Path) -> None:
    readme(role).write_text("# My role\n\nHand-written intro.\n", encoding="utf-8")
    role_docs.render_role(role, "opennebula.flower")
    text = readme(role).read_text(encoding="utf-8")
    assert text.startswith("# My role\n\nHand-written intro.\n\n" + role_docs.BEGIN_MARKER)
    assert problems_of(role) == []


def test_render_replaces_only_the_section(role: Path) -> None:
    text = readme(role).read_text(encoding="utf-8")
    readme(role).write_text("Intro.\n\n" + text + "\n## Examples\n", encoding="utf-8")
    edit(spec(role), "TCP port the service listens on.", "TCP port to listen on.")
    assert role_docs.render_role(role, "opennebula.flower") is True
    text = readme(role).read_text(encoding="utf-8")
    assert text.startswith("Intro.\n") and text.endswith("\n## Examples\n")
    assert "TCP port to listen on." in text
    assert problems_of(role) == []


def test_cli_render_fixes_stale_readme(role: Path) -> None:
    edit(spec(role), "TCP port the service listens on.", "TCP port to listen on.")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "render", str(role)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sample: README.md updated" in result.stdout
    assert problems_of(role) == []


def test_collection_name(tmp_path: Path) -> None:
    assert role_docs.collection_name(tmp_path) == "opennebula.flower"
    (tmp_path / "galaxy.yml").write_text("namespace: acme\nname: things\n", encoding="utf-8")
    assert role_docs.collection_name(tmp_path) == "acme.things"


# --------------------------------------------------------------------------------------------
# The fixture is a real Ansible argument spec


def test_sample_spec_is_accepted_by_ansible() -> None:
    arg_spec = pytest.importorskip("ansible.module_utils.common.arg_spec")
    role_spec = role_docs.load_role(SAMPLE)
    for entry_point in role_spec.entry_points:
        options = role_spec.options(entry_point)
        values = {k: v for k, v in role_spec.defaults.items() if k in options}
        if "sample_token" in options:
            values["sample_token"] = "secret"
        result = arg_spec.ArgumentSpecValidator(options).validate(
            values, validate_role_argument_spec=True
        )
        assert result.error_messages == [], (entry_point, result.error_messages)


# --------------------------------------------------------------------------------------------
# The real roles of the collection


def test_repository_roles_are_documented() -> None:
    roles_dir = REPO_ROOT / "roles"
    if not roles_dir.is_dir():
        pytest.skip("roles/ does not exist yet")
    problems = role_docs.check_roles(role_docs.default_role_dirs(roles_dir))
    assert problems == [], "tools/role_docs.py check found:\n" + "\n".join(problems)
