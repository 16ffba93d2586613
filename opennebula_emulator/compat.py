"""Ruby semantics the OpenNebula servers rely on, reproduced in Python.

OneFlow and OneGate are Ruby (Sinatra) programs; several observable behaviours come from Ruby
itself rather than from OpenNebula code: ``String#to_i``, string interpolation, ``JSON.parse``
error texts, ``JSON.pretty_generate`` layout, the two ``Hash#deep_merge`` variants of 6.10 and 7.0.
"""

from __future__ import annotations

import json
import re
from typing import Any

_TO_I = re.compile(r"\s*([+-]?\d+(?:_\d+)*)")


class RubyNoMethodError(Exception):
    """A Ruby ``NoMethodError`` (e.g. ``true.to_i``); OneFlow answers it with a 500 JSON error."""


def ruby_to_i(value: Any) -> int:
    """``value.to_i`` for the types JSON can produce (nil, Integer, Float, String)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise RubyNoMethodError(
            f"undefined method `to_i' for {ruby_inspect(value)}:{ruby_class(value)}"
        )
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        m = _TO_I.match(value)
        return int(m.group(1).replace("_", "")) if m else 0
    raise RubyNoMethodError(
        f"undefined method `to_i' for {ruby_inspect(value)}:{ruby_class(value)}"
    )


def ruby_class(value: Any) -> str:
    if value is None:
        return "NilClass"
    if value is True:
        return "TrueClass"
    if value is False:
        return "FalseClass"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    return "Hash"


def ruby_inspect(value: Any) -> str:
    """Approximation of ``Object#inspect`` (used only inside error messages)."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(ruby_inspect(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{ruby_inspect(k)}=>{ruby_inspect(v)}" for k, v in value.items()) + "}"
        )
    return str(value)


def ruby_interp(value: Any) -> str:
    """``"#{value}"`` (``to_s``)."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return ruby_inspect(value)


class RubyJSONError(ValueError):
    """``JSON::ParserError`` with the json gem's message (``unexpected token at '...'``)."""


def _no_constants(name: str) -> Any:
    raise ValueError(name)


def ruby_json_parse(text: str | bytes) -> Any:
    """``JSON.parse(text)``: NaN/Infinity are rejected like the json gem does."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        rest = text[exc.pos :].lstrip() if exc.pos < len(text) else ""
        raise RubyJSONError(f"unexpected token at '{rest}'") from None
    except ValueError:
        raise RubyJSONError(f"unexpected token at '{text.strip()}'") from None


def ruby_json(obj: Any) -> str:
    """``obj.to_json`` (compact, UTF-8 kept)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def ruby_pretty_json(obj: Any) -> str:
    """``JSON.pretty_generate(obj)``: 2-space indent, ``"key": value``, empty ``[]``/``{}``."""
    return json.dumps(obj, ensure_ascii=False, indent=2)


def _uniq(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def deep_merge_70(base: dict[str, Any], other: dict[str, Any], merge_array: bool = True) -> dict:
    """``Hash#deep_merge`` of OpenNebula 7.0 (``validator.rb``): arrays are concatenated."""
    target = dict(base)
    for key, value in other.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            target[key] = deep_merge_70(current, value, merge_array)
        elif isinstance(value, list) and isinstance(current, list) and merge_array:
            merged = current + value
            target[key] = _uniq(merged) if all(isinstance(e, dict) for e in merged) else merged
        else:
            target[key] = value
    return target


def deep_merge_610(base: dict[str, Any], other: dict[str, Any]) -> dict:
    """``Hash#deep_merge`` of OpenNebula 6.10: arrays are merged element by element (by index).

    The aliasing of the Ruby original (``dup`` is shallow) is kept on purpose.
    """
    target = dict(base)
    for key, value in other.items():
        mine = base.get(key)
        if isinstance(value, dict) and isinstance(mine, dict):
            target[key] = deep_merge_610(mine, value)
        elif isinstance(value, list) and isinstance(mine, list):
            for i, elem in enumerate(value):
                mine_i = mine[i] if i < len(mine) else None
                if isinstance(mine_i, dict) and isinstance(elem, dict):
                    current = target[key]
                    merged = deep_merge_610(mine_i, elem)
                    if i < len(current):
                        current[i] = merged
                    else:
                        current.append(merged)
                else:
                    target[key] = value
        else:
            target[key] = value
    return target


def ruby_split(text: str, sep: str) -> list[str]:
    """``String#split(sep)``: trailing empty fields are dropped."""
    parts = text.split(sep)
    while parts and parts[-1] == "":
        parts.pop()
    return parts
