#!/usr/bin/env python3
"""Keep role defaults, argument specs and README variable tables in sync.

Usage::

    tools/role_docs.py check  [ROLE_DIR ...]   # verify; exit 1 and list every problem
    tools/role_docs.py render [ROLE_DIR ...]   # (re)write the README variables section

Without ROLE_DIR arguments every directory in ``roles/`` at the repository root is used.

``check`` verifies, for each role:

1. every key of ``defaults/main.yml`` is an option of the ``main`` entry point of
   ``meta/argument_specs.yml``, and every ``main`` option that is not ``required: true``
   has a key in the defaults (a required option must have neither a default in the
   spec nor a value in the defaults);
2. each option's spec ``default`` equals the defaults value (parsed YAML values, compared
   strictly: ``1``, ``1.0``, ``true`` and ``'1'`` all differ; a Jinja template must be the
   identical string); an option whose defaults value is ``null`` may omit ``default``;
3. every option (sub-options included) has a known ``type`` and a non-empty
   ``description``, lists have ``elements``, ``choices`` contain the default, a literal
   default matches the declared type, and no option carries unknown keys (typos);
4. other entry points (``install``, ``configure``, ...) only list options that exist in
   ``main``, with identical definitions;
5. every variable defined in the defaults (and every documented option) is named
   ``<role>_*``, where ``<role>`` is the role directory name (or the prefix
   ``ROLE_PREFIXES`` names for it);
6. ``README.md`` holds the generated section between ``<!-- BEGIN ARGUMENT SPEC -->`` and
   ``<!-- END ARGUMENT SPEC -->``, identical to what ``render`` writes.

Duplicate keys in either YAML file are reported too. Only the standard library and PyYAML
are needed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROLES_DIR = REPO_ROOT / "roles"
FALLBACK_COLLECTION = "opennebula.flower"

BEGIN_MARKER = "<!-- BEGIN ARGUMENT SPEC -->"
END_MARKER = "<!-- END ARGUMENT SPEC -->"
GENERATED_NOTE = (
    "<!-- Generated from meta/argument_specs.yml by tools/role_docs.py render; do not edit. -->"
)
SECTION_HEADING = "## Role variables"

MAIN_ENTRY_POINT = "main"
DEFAULTS_NAME = "defaults/main.yml"

# Roles whose variables carry another prefix than their directory name. The deploy role keeps the
# flower_* names of playbooks/deploy.yml, the interface scale.yml and destroy.yml share (and the
# one users, docs/deploy.md and AWX surveys know), older than the role.
ROLE_PREFIXES = {"deploy": "flower"}

# Types understood by Ansible's argument spec validator.
ANSIBLE_TYPES = frozenset(
    {
        "str",
        "list",
        "dict",
        "bool",
        "int",
        "float",
        "path",
        "raw",
        "jsonarg",
        "json",
        "bytes",
        "bits",
    }
)
# Keys an option may carry (ansible-core argument spec plus documentation keys, as accepted
# by ansible-lint's role-arg-spec schema); anything else is most likely a typo.
OPTION_KEYS = frozenset(
    {
        "type",
        "elements",
        "default",
        "choices",
        "required",
        "description",
        "options",
        "aliases",
        "no_log",
        "apply_defaults",
        "fallback",
        "version_added",
        "version_added_collection",
        "deprecated_aliases",
        "removed_in_version",
        "removed_at_date",
        "removed_from_collection",
        "mutually_exclusive",
        "required_together",
        "required_one_of",
        "required_if",
        "required_by",
    }
)


class RoleError(Exception):
    """A role file is missing, unreadable or structurally unusable."""


# --------------------------------------------------------------------------------------------
# YAML loading


class UnsafeStr(str):
    """A string tagged ``!unsafe`` (never templated by Ansible)."""


@dataclass(frozen=True)
class VaultValue:
    """A ``!vault`` encrypted value; only the ciphertext is known."""

    ciphertext: str


class _Loader(yaml.SafeLoader):
    """SafeLoader that understands Ansible's tags and rejects duplicate mapping keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key; the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return UnsafeStr(loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


def _construct_vault(loader: yaml.SafeLoader, node: yaml.Node) -> VaultValue:
    return VaultValue(str(loader.construct_scalar(node)))  # type: ignore[arg-type]


_Loader.add_constructor("!unsafe", _construct_unsafe)
_Loader.add_constructor("!vault", _construct_vault)


def load_yaml(path: Path, label: str) -> Any:
    """Parse one YAML file, turning every failure into a :class:`RoleError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoleError(f"{label}: cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise RoleError(f"{label}: invalid YAML: {detail}") from exc


# --------------------------------------------------------------------------------------------
# Role model


@dataclass
class Role:
    """What the checker needs to know about one role."""

    path: Path
    defaults: dict[str, Any]
    entry_points: dict[str, dict[str, Any]]
    spec_label: str

    @property
    def name(self) -> str:
        return self.path.name

    def options(self, entry_point: str) -> dict[str, dict[str, Any]]:
        return self.entry_points.get(entry_point, {}).get("options") or {}


def _defaults_files(role_dir: Path) -> list[Path]:
    """``defaults/main.y(a)ml``, or the files of a ``defaults/main/`` directory."""
    for name in ("main.yml", "main.yaml"):
        path = role_dir / "defaults" / name
        if path.is_file():
            return [path]
    main_dir = role_dir / "defaults" / "main"
    if main_dir.is_dir():
        return sorted(p for p in main_dir.iterdir() if p.suffix in {".yml", ".yaml"})
    return []


def _load_defaults(role_dir: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in _defaults_files(role_dir):
        label = str(path.relative_to(role_dir))
        data = load_yaml(path, label)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise RoleError(f"{label}: must be a mapping of variables")
        merged.update(data)
    return merged


def _load_entry_points(role_dir: Path) -> tuple[dict[str, dict[str, Any]], str]:
    for name in ("argument_specs.yml", "argument_specs.yaml"):
        path = role_dir / "meta" / name
        if path.is_file():
            label = f"meta/{name}"
            data = load_yaml(path, label)
            break
    else:
        path = role_dir / "meta" / "main.yml"
        label = "meta/main.yml"
        data = load_yaml(path, label) if path.is_file() else None
        if not isinstance(data, dict) or "argument_specs" not in data:
            raise RoleError("meta/argument_specs.yml: missing")

    specs = data.get("argument_specs") if isinstance(data, dict) else None
    if not isinstance(specs, dict):
        raise RoleError(f"{label}: must contain an 'argument_specs' mapping")
    for entry_name, entry in specs.items():
        if not isinstance(entry, dict):
            raise RoleError(f"{label}: entry point {entry_name!r} must be a mapping")
        options = entry.get("options")
        if options is not None and not isinstance(options, dict):
            raise RoleError(f"{label}: entry point {entry_name!r}: 'options' must be a mapping")
        for option_name, option in (options or {}).items():
            if not isinstance(option, dict):
                raise RoleError(
                    f"{label}: entry point {entry_name!r}: option {option_name!r} must be a mapping"
                )
    return specs, label


def load_role(role_dir: Path) -> Role:
    """Load defaults and argument specs of the role in ``role_dir``."""
    entry_points, spec_label = _load_entry_points(role_dir)
    return Role(role_dir, _load_defaults(role_dir), entry_points, spec_label)


# --------------------------------------------------------------------------------------------
# Value helpers


def is_template(value: Any) -> bool:
    """True for strings that Ansible would template."""
    return (
        isinstance(value, str)
        and not isinstance(value, UnsafeStr)
        and ("{{" in value or "{%" in value)
    )


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, UnsafeStr):
        return "unsafe-str"
    return type(value).__name__


def same_value(left: Any, right: Any) -> bool:
    """Strict structural equality: ``True != 1``, ``1 != 1.0``, ``'1' != 1``."""
    if _kind(left) != _kind(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same_value(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same_value, left, right))
    return bool(left == right)


def _plain(value: Any) -> Any:
    """Strip Ansible-specific wrappers so that the value can be dumped."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, UnsafeStr):
        return str(value)
    if isinstance(value, VaultValue):
        return "!vault"
    return value


def format_value(value: Any) -> str:
    """One-line YAML (flow style) rendering of ``value``."""
    plain = _plain(value)
    text = yaml.safe_dump(
        plain, default_flow_style=True, width=2**31, allow_unicode=True, sort_keys=False
    ).strip()
    text = text.removesuffix("\n...")
    if "\n" in text:  # multi-line strings: JSON is valid one-line YAML
        text = json.dumps(plain, ensure_ascii=False, default=str)
    return text


_TYPE_CHECKS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "path": (str,),
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),
    "list": (list,),
    "dict": (dict,),
}


def _matches_type(value: Any, type_name: str) -> bool:
    expected = _TYPE_CHECKS.get(type_name)
    if expected is None or value is None or is_template(value):
        return True
    if isinstance(value, bool) and bool not in expected:
        return False
    return isinstance(value, expected)


# --------------------------------------------------------------------------------------------
# Checks (each returns messages without the role prefix)


def _iter_options(
    options: dict[str, Any], prefix: str = ""
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(dotted name, definition)`` for options and, recursively, sub-options."""
    for name, definition in options.items():
        full_name = f"{prefix}{name}"
        yield full_name, definition
        sub_options = definition.get("options")
        if isinstance(sub_options, dict):
            valid = {k: v for k, v in sub_options.items() if isinstance(v, dict)}
            yield from _iter_options(valid, f"{full_name}.")


def check_defaults_documented(role: Role) -> list[str]:
    """Check 1: defaults and ``main`` options describe the same variables."""
    problems: list[str] = []
    options = role.options(MAIN_ENTRY_POINT)
    if MAIN_ENTRY_POINT not in role.entry_points:
        problems.append(f"{role.spec_label}: no '{MAIN_ENTRY_POINT}' entry point")
    for var in role.defaults:
        if var not in options:
            problems.append(
                f"{var}: set in {DEFAULTS_NAME} but not documented in the "
                f"'{MAIN_ENTRY_POINT}' entry point of {role.spec_label}"
            )
    for var, definition in options.items():
        required = definition.get("required") is True
        if required:
            if var in role.defaults:
                problems.append(
                    f"{var}: is required: true but has a value in {DEFAULTS_NAME} "
                    "(drop one or the other)"
                )
        elif var not in role.defaults:
            problems.append(
                f"{var}: documented in {role.spec_label} but missing from {DEFAULTS_NAME} "
                "(add it there, or mark the option required: true)"
            )
    return problems


def check_default_values(role: Role) -> list[str]:
    """Check 2: spec ``default`` equals the value in the defaults file."""
    problems: list[str] = []
    for var, definition in role.options(MAIN_ENTRY_POINT).items():
        if definition.get("required") is True:
            if "default" in definition:
                problems.append(f"{var}: is required: true and must not have a default")
            continue
        if var not in role.defaults:
            continue  # reported by check 1
        value = role.defaults[var]
        if "default" not in definition:
            if value is not None:
                problems.append(
                    f"{var}: has no default in {role.spec_label}; "
                    f"{DEFAULTS_NAME} sets {format_value(value)}"
                )
            continue
        if not same_value(definition["default"], value):
            hint = " (templates must be the identical string)" if is_template(value) else ""
            problems.append(
                f"{var}: default in {role.spec_label} ({format_value(definition['default'])}) "
                f"differs from {DEFAULTS_NAME} ({format_value(value)}){hint}"
            )
    return problems


def _check_option_definition(name: str, definition: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    unknown = sorted(str(key) for key in definition if key not in OPTION_KEYS)
    if unknown:
        problems.append(f"{name}: unknown key(s) {', '.join(unknown)}")

    type_name = definition.get("type")
    if type_name is None:
        problems.append(f"{name}: no type")
    elif type_name not in ANSIBLE_TYPES:
        problems.append(f"{name}: unknown type {type_name!r}")

    description = definition.get("description")
    if isinstance(description, list):
        description = " ".join(str(line) for line in description)
    if not isinstance(description, str) or not description.strip():
        problems.append(f"{name}: no description")

    elements = definition.get("elements")
    if type_name == "list" and elements is None:
        problems.append(f"{name}: type list without elements")
    elif elements is not None and type_name != "list":
        problems.append(f"{name}: elements given but type is {type_name!r}, not 'list'")
    elif elements is not None and elements not in ANSIBLE_TYPES:
        problems.append(f"{name}: unknown elements type {elements!r}")

    has_default = "default" in definition
    default = definition.get("default")
    choices = definition.get("choices")
    if choices is not None and not isinstance(choices, list):
        problems.append(f"{name}: choices must be a list")
    elif choices and has_default and default is not None and not is_template(default):
        values = default if type_name == "list" and isinstance(default, list) else [default]
        missing = [v for v in values if not any(same_value(v, c) for c in choices)]
        if missing:
            problems.append(
                f"{name}: default {format_value(default)} is not one of the choices "
                f"{format_value(choices)}"
            )

    if has_default and isinstance(type_name, str) and not _matches_type(default, type_name):
        problems.append(
            f"{name}: default {format_value(default)} is a {_kind(default)}, not a {type_name}"
        )
    elif type_name == "list" and isinstance(default, list) and isinstance(elements, str):
        wrong = [v for v in default if not _matches_type(v, elements)]
        if wrong:
            problems.append(f"{name}: default list items {format_value(wrong)} are not {elements}")

    sub_options = definition.get("options")
    if sub_options is not None:
        if not isinstance(sub_options, dict):
            problems.append(f"{name}: options must be a mapping")
        else:
            for sub_name, sub_def in sub_options.items():
                if not isinstance(sub_def, dict):
                    problems.append(f"{name}.{sub_name}: must be a mapping")
    return problems


def check_option_definitions(role: Role) -> list[str]:
    """Check 3: types, descriptions, elements, choices of every ``main`` option."""
    problems: list[str] = []
    for name, definition in _iter_options(role.options(MAIN_ENTRY_POINT)):
        problems.extend(_check_option_definition(name, definition))
    return problems


def check_entry_points(role: Role) -> list[str]:
    """Check 4: other entry points repeat ``main`` options verbatim."""
    problems: list[str] = []
    main_options = role.options(MAIN_ENTRY_POINT)
    for entry_point in role.entry_points:
        if entry_point == MAIN_ENTRY_POINT:
            continue
        for var, definition in role.options(entry_point).items():
            where = f"entry point '{entry_point}'"
            if var not in main_options:
                problems.append(
                    f"{var}: listed in {where} but not in the '{MAIN_ENTRY_POINT}' entry point"
                )
                continue
            reference = main_options[var]
            if same_value(definition, reference):
                continue
            differing = sorted(
                str(key)
                for key in set(definition) | set(reference)
                if key not in definition
                or key not in reference
                or not same_value(definition[key], reference[key])
            )
            problems.append(
                f"{var}: definition in {where} differs from '{MAIN_ENTRY_POINT}' "
                f"({', '.join(differing)})"
            )
    return problems


def check_prefix(role: Role) -> list[str]:
    """Check 5: variables are named ``<role>_*`` (or with the prefix of ``ROLE_PREFIXES``)."""
    prefix = f"{ROLE_PREFIXES.get(role.name, role.name)}_"
    names: dict[str, str] = {var: DEFAULTS_NAME for var in role.defaults}
    for entry_point in role.entry_points:
        for var in role.options(entry_point):
            names.setdefault(var, role.spec_label)
    problems: list[str] = []
    for var, source in names.items():
        if str(var).startswith("__"):
            problems.append(
                f"{var}: internal (__) variables must not be in {source}; "
                f"public ones are named {prefix}*"
            )
        elif not str(var).startswith(prefix):
            problems.append(f"{var}: in {source} does not start with the role prefix {prefix}")
    return problems


def check_readme(role: Role) -> list[str]:
    """Check 6: README section is what ``render`` would write."""
    readme = role.path / "README.md"
    hint = "run tools/role_docs.py render"
    if not readme.is_file():
        return [f"README.md: missing ({hint})"]
    text = readme.read_text(encoding="utf-8")
    try:
        current = extract_section(text)
    except RoleError as exc:
        return [f"README.md: {exc}"]
    if current is None:
        return [f"README.md: no {BEGIN_MARKER} section ({hint})"]
    if current.strip() != render_section(role).strip():
        return [f"README.md: variables section is stale ({hint})"]
    return []


CHECKS = (
    check_defaults_documented,
    check_default_values,
    check_option_definitions,
    check_entry_points,
    check_prefix,
    check_readme,
)


def check_role(role_dir: Path) -> list[str]:
    """Run every check on one role; return ``'<role>: <problem>'`` lines."""
    name = role_dir.name
    try:
        role = load_role(role_dir)
    except RoleError as exc:
        return [f"{name}: {exc}"]
    return [f"{name}: {problem}" for check in CHECKS for problem in check(role)]


def check_roles(role_dirs: Iterable[Path]) -> list[str]:
    """Run :func:`check_role` on several roles."""
    return [problem for role_dir in role_dirs for problem in check_role(role_dir)]


# --------------------------------------------------------------------------------------------
# Rendering

_MARKUP = re.compile(r"\b(RV|[CVOEPMIBU])\(([^()]*)\)")
_LINK = re.compile(r"\bL\(([^(),]*),\s*([^()]*)\)")


def _markdown_text(text: str) -> str:
    """Translate Ansible doc markup (C(), I(), B(), U(), L(), ...) to Markdown."""

    def replace(match: re.Match[str]) -> str:
        macro, content = match.groups()
        if macro == "I":
            return f"*{content}*"
        if macro == "B":
            return f"**{content}**"
        if macro == "U":
            return f"<{content}>"
        return _code(content)

    text = _LINK.sub(lambda m: f"[{m.group(1)}]({m.group(2)})", text)
    return _MARKUP.sub(replace, text)


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _description(value: Any) -> str:
    if isinstance(value, list):
        value = " ".join(str(item) for item in value)
    return "" if value is None else str(value)


def _type_text(definition: dict[str, Any]) -> str:
    type_name = definition.get("type")
    if type_name is None:
        return ""
    if type_name == "list" and definition.get("elements"):
        return f"list of {definition['elements']}"
    return str(type_name)


def _option_row(name: str, definition: dict[str, Any]) -> str:
    if definition.get("required") is True:
        default = "**required**"
    elif "default" in definition:
        default = _code(format_value(definition["default"]))
    else:
        default = ""
    choices = definition.get("choices")
    choices_text = (
        ", ".join(_code(format_value(c)) for c in choices) if isinstance(choices, list) else ""
    )
    cells = [
        _code(name),
        _type_text(definition),
        default,
        choices_text,
        _markdown_text(_description(definition.get("description"))),
    ]
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def _entry_point_order(role: Role) -> list[str]:
    names = list(role.entry_points)
    if MAIN_ENTRY_POINT in names:
        names.remove(MAIN_ENTRY_POINT)
        names.insert(0, MAIN_ENTRY_POINT)
    return names


def render_section(role: Role) -> str:
    """The Markdown placed between the markers (markers excluded)."""
    lines = [GENERATED_NOTE, "", SECTION_HEADING]
    for entry_point in _entry_point_order(role):
        entry = role.entry_points[entry_point]
        lines += ["", f"### Entry point `{entry_point}`", ""]
        short = " ".join(_description(entry.get("short_description")).split())
        if short:
            lines += [_markdown_text(short), ""]
        options = role.options(entry_point)
        if not options:
            lines.append("This entry point has no options.")
            continue
        lines.append("| Variable | Type | Default | Choices | Description |")
        lines.append("| --- | --- | --- | --- | --- |")
        lines += [_option_row(name, definition) for name, definition in _iter_options(options)]
    return "\n".join(lines) + "\n"


def extract_section(text: str) -> str | None:
    """Text between the markers, ``None`` without markers; raise on broken markers."""
    begins, ends = text.count(BEGIN_MARKER), text.count(END_MARKER)
    if begins == 0 and ends == 0:
        return None
    if begins != 1 or ends != 1 or text.index(BEGIN_MARKER) > text.index(END_MARKER):
        raise RoleError(f"needs exactly one {BEGIN_MARKER} followed by one {END_MARKER}")
    start = text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    return text[start : text.index(END_MARKER)]


def collection_name(repo_root: Path = REPO_ROOT) -> str:
    """``namespace.name`` from ``galaxy.yml`` at the repository root, or the fallback."""
    galaxy = repo_root / "galaxy.yml"
    if galaxy.is_file():
        try:
            data = load_yaml(galaxy, "galaxy.yml")
        except RoleError:
            data = None
        if isinstance(data, dict) and data.get("namespace") and data.get("name"):
            return f"{data['namespace']}.{data['name']}"
    return FALLBACK_COLLECTION


def new_readme(role: Role, collection: str) -> str:
    """A fresh README.md: title, main entry point descriptions, generated section."""
    main = role.entry_points.get(MAIN_ENTRY_POINT, {})
    parts = [f"# Role {collection}.{role.name}"]
    short = " ".join(_description(main.get("short_description")).split())
    if short:
        parts.append(_markdown_text(short))
    description = main.get("description")
    paragraphs = description if isinstance(description, list) else [description]
    parts += [_markdown_text(" ".join(str(p).split())) for p in paragraphs if p]
    parts.append(f"{BEGIN_MARKER}\n{render_section(role)}{END_MARKER}")
    return "\n\n".join(parts) + "\n"


def updated_readme(role: Role, current: str | None, collection: str) -> str:
    """README text after (re)rendering the generated section."""
    if current is None:
        return new_readme(role, collection)
    block = f"{BEGIN_MARKER}\n{render_section(role)}{END_MARKER}"
    if extract_section(current) is None:
        return current.rstrip("\n") + "\n\n" + block + "\n"
    start = current.index(BEGIN_MARKER)
    end = current.index(END_MARKER) + len(END_MARKER)
    return current[:start] + block + current[end:]


def render_role(role_dir: Path, collection: str) -> bool:
    """Rewrite the README of one role; return whether the file changed."""
    role = load_role(role_dir)
    readme = role_dir / "README.md"
    current = readme.read_text(encoding="utf-8") if readme.is_file() else None
    try:
        text = updated_readme(role, current, collection)
    except RoleError as exc:
        raise RoleError(f"README.md: {exc}") from exc
    if text == current:
        return False
    readme.write_text(text, encoding="utf-8")
    return True


# --------------------------------------------------------------------------------------------
# Command line


def default_role_dirs(roles_dir: Path = DEFAULT_ROLES_DIR) -> list[Path]:
    """Every (non-hidden) directory in ``roles_dir``, sorted."""
    if not roles_dir.is_dir():
        return []
    return sorted(p for p in roles_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _cmd_check(role_dirs: Sequence[Path]) -> int:
    problems = check_roles(role_dirs)
    for problem in problems:
        print(problem)
    if problems:
        roles = len({problem.split(":", 1)[0] for problem in problems})
        print(
            f"role_docs: {len(problems)} problem(s) in {roles} of {len(role_dirs)} role(s)",
            file=sys.stderr,
        )
        return 1
    print(f"role_docs: {len(role_dirs)} role(s) checked, no problems")
    return 0


def _cmd_render(role_dirs: Sequence[Path]) -> int:
    collection = collection_name()
    status = 0
    for role_dir in role_dirs:
        try:
            changed = render_role(role_dir, collection)
        except RoleError as exc:
            print(f"{role_dir.name}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{role_dir.name}: README.md {'updated' if changed else 'unchanged'}")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check or render role variable documentation (meta/argument_specs.yml)."
    )
    parser.add_argument("command", choices=("check", "render"))
    parser.add_argument(
        "roles",
        nargs="*",
        type=Path,
        metavar="ROLE_DIR",
        help=f"role directories (default: every directory in {DEFAULT_ROLES_DIR})",
    )
    args = parser.parse_args(argv)
    role_dirs: list[Path] = args.roles or default_role_dirs()
    not_dirs = [str(path) for path in role_dirs if not path.is_dir()]
    if not_dirs:
        parser.error(f"not a directory: {', '.join(not_dirs)}")
    if args.command == "check":
        return _cmd_check(role_dirs)
    return _cmd_render(role_dirs)


if __name__ == "__main__":
    sys.exit(main())
