"""OpenNebula template language (``src/parsers/template_parser.l`` / ``template_syntax.y``).

A template is kept as ``dict[str, Value]`` where ``Value`` is a string (single attribute), a
``dict[str, str]`` (vector attribute) or a list of those (repeated attribute). oned stores
attributes in a ``std::multimap`` and vector values in a ``std::map``, so they are emitted sorted
by name; the insertion order kept here only matters for repeated attributes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

Vector = dict[str, str]
Single = str | Vector
Value = str | Vector | list[Single]
Template = dict[str, Value]


class TemplateParseError(ValueError):
    pass


_VARIABLE = re.compile(r"[A-Za-z0-9_]+")
_EQUAL_EMPTY = re.compile(r"[ \t]*=[ \t]*\n")
_EQUAL = re.compile(r"[ \t]*=[ \t]*")
_COMMA = re.compile(r"[ \t\n]*,[ \t\n]*")
_CBRACKET = re.compile(r"[ \t\n]*\][ \t\n]*")
_OBRACKET = re.compile(r"[ \t]*\[[ \t\n]*")
_QUOTED = re.compile(r'"((?:\\"|[^"])*)"')
_STRING = re.compile(r"[^=#\s,\[\]]+")
_SKIP = re.compile(r"(?:[ \t]*#[^\n]*\n|[ \t\n]+)+")


def _unescape(value: str) -> str:
    return value.replace('\\"', '"')


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip(self) -> None:
        m = _SKIP.match(self.text, self.pos)
        if m:
            self.pos = m.end()

    def take(self, rx: re.Pattern[str]) -> re.Match[str] | None:
        m = rx.match(self.text, self.pos)
        if m:
            self.pos = m.end()
        return m

    def error(self, what: str) -> TemplateParseError:
        line = self.text.count("\n", 0, self.pos) + 1
        return TemplateParseError(f"syntax error, {what} at line {line}, columns {self.pos}")

    def value(self) -> str:
        rest = self.text[self.pos :].split("\n", 1)[0]
        if "]]>" in rest:
            raise self.error("unexpected CDATA")
        m = self.take(_QUOTED)
        if m:
            return _unescape(m.group(1))
        m = self.take(_STRING)
        if m:
            return _unescape(m.group(0))
        raise self.error("unexpected value")


def parse_template(text: str) -> list[tuple[str, Single]]:
    """Parse the template language into (NAME, value) pairs, names upper-cased like oned."""
    lex = _Lexer(text)
    out: list[tuple[str, Single]] = []
    while True:
        lex.skip()
        if lex.pos >= len(text):
            return out
        name_m = lex.take(_VARIABLE)
        if not name_m:
            raise lex.error("unexpected character")
        name = name_m.group(0).upper()
        if lex.take(_EQUAL_EMPTY):
            out.append((name, ""))
            continue
        if not lex.take(_EQUAL):
            raise lex.error("expecting EQUAL")
        if lex.take(_OBRACKET):
            vector: Vector = {}
            if lex.take(_CBRACKET):
                out.append((name, vector))
                continue
            while True:
                sub = lex.take(_VARIABLE)
                if not sub or not lex.take(_EQUAL):
                    raise lex.error("expecting VARIABLE = VALUE in vector")
                key = sub.group(0).upper()
                vector.setdefault(key, lex.value())  # std::map::insert keeps the first
                if lex.take(_COMMA):
                    continue
                if lex.take(_CBRACKET):
                    break
                raise lex.error("expecting COMMA or CBRACKET")
            out.append((name, vector))
        elif lex.pos >= len(text) or text[lex.pos] == "\n":
            out.append((name, ""))
        else:
            out.append((name, lex.value()))


def parse_template_xml(text: str) -> list[tuple[str, Single]]:
    """``Template::from_xml``: children of the root; elements with children are vectors."""
    try:
        root = ET.fromstring(text)  # noqa: S314 - a local test tool parsing its clients' templates
    except ET.ParseError as exc:
        raise TemplateParseError("Parse error: XML Template malformed.") from exc
    out: list[tuple[str, Single]] = []
    for child in root:
        if len(child):
            out.append((child.tag, {sub.tag: sub.text or "" for sub in child}))
        else:
            out.append((child.tag, child.text or ""))
    return out


def parse_str_or_xml(text: str) -> Template:
    """``Template::parse_str_or_xml`` into the dict representation."""
    pairs = parse_template_xml(text) if text[:1] == "<" else parse_template(text)
    return from_pairs(pairs)


def from_pairs(pairs: list[tuple[str, Single]]) -> Template:
    tmpl: Template = {}
    for name, value in pairs:
        add(tmpl, name, value)
    return tmpl


def add(tmpl: Template, name: str, value: Single) -> None:
    """``Template::set`` (multimap insert: keeps existing attributes of the same name)."""
    if name not in tmpl:
        tmpl[name] = value
        return
    current = tmpl[name]
    if isinstance(current, list):
        current.append(value)
    else:
        tmpl[name] = [current, value]


def values(tmpl: Template, name: str) -> list[Single]:
    value = tmpl.get(name)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def first(tmpl: Template, name: str) -> Single | None:
    vals = values(tmpl, name)
    return vals[0] if vals else None


def merge(tmpl: Template, new: Template) -> None:
    """``Template::merge``: every attribute name present in ``new`` replaces the old ones."""
    for name, value in new.items():
        tmpl[name] = copy_value(value)


def copy_value(value: Value) -> Value:
    if isinstance(value, list):
        return [dict(v) if isinstance(v, dict) else v for v in value]
    if isinstance(value, dict):
        return dict(value)
    return value


def copy_template(tmpl: Template) -> Template:
    return {k: copy_value(v) for k, v in tmpl.items()}


def sorted_items(tmpl: Template) -> Iterator[tuple[str, Single]]:
    """Attributes in oned's multimap order (by name, repeated ones in insertion order)."""
    for name in sorted(tmpl):
        for value in values(tmpl, name):
            yield name, value


def to_text(tmpl: Template) -> str:
    """Serialise to the template language (values always quoted)."""
    lines = []
    for name, value in sorted_items(tmpl):
        if isinstance(value, dict):
            inner = ",\n  ".join(f'{k}="{_quote(v)}"' for k, v in sorted(value.items()))
            lines.append(f"{name}=[\n  {inner} ]")
        else:
            lines.append(f'{name}="{_quote(value)}"')
    return "\n".join(lines)


def _quote(value: str) -> str:
    return value.replace('"', '\\"')


def from_json_hash(content: dict[str, Any]) -> Template:
    """OneFlow ``template_contents`` (JSON) to a template, like ``Hash.to_raw`` + the parser."""
    tmpl: Template = {}
    for key, value in content.items():
        name = str(key).upper()
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                add(tmpl, name, {str(k).upper(): _scalar(v) for k, v in item.items()})
            else:
                add(tmpl, name, _scalar(item))
    return tmpl


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (dict, list)):
        from .compat import ruby_inspect

        return ruby_inspect(value)
    return str(value)
