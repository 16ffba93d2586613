"""Service template schemas and validation of OneFlow 6.10 and 7.0
(``src/oca/ruby/opennebula/flow/service_template.rb`` and ``validator.rb``).

The validator mutates the body in place exactly like the Ruby one: integers given as strings are
converted, defaults are appended at the end of the object (Ruby hash insertion order), unknown keys
are kept.
"""

from __future__ import annotations

import re
from typing import Any

from .compat import ruby_json


class ParseException(Exception):
    """``Validator::ParseException`` (OneFlow answers 400, or 500 inside instantiate)."""


class RubyTypeError(Exception):
    """``TypeError`` from ``Integer(nil)`` and friends: not rescued, so OneFlow answers 500 JSON."""


_ENUM_SHUTDOWN = ["terminate", "terminate-hard", "shutdown", "shutdown-hard"]

_POLICY_COMMON = {
    "type": {
        "type": "string",
        "enum": ["CHANGE", "CARDINALITY", "PERCENTAGE_CHANGE"],
        "required": True,
    },
    "adjust": {"type": "integer", "required": True},
    "min_adjust_step": {"type": "integer", "required": False, "minimum": 1},
}
_ELASTICITY = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            **_POLICY_COMMON,
            "period_number": {"type": "integer", "required": False, "minimum": 0},
            "period": {"type": "integer", "required": False, "minimum": 0},
            "expression": {"type": "string", "required": True},
            "cooldown": {"type": "integer", "required": False, "minimum": 0},
        },
    },
}
_SCHEDULED = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            **_POLICY_COMMON,
            "start_time": {"type": "string", "required": False},
            "recurrence": {"type": "string", "required": False},
        },
    },
}
_OBJ = {"type": "object", "properties": {}, "required": False}
_NAME = {"type": "string", "required": True, "regex": r"^\w+$"}
_CARDINALITY = {"type": "integer", "default": 0, "minimum": 0}
_PARENTS = {"type": "array", "items": {"type": "string"}}

VM_ROLE_SCHEMA_70: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": _NAME,
        "type": {"type": "string", "enum": ["vm"], "required": True},
        "cardinality": _CARDINALITY,
        "template_id": {"type": "integer", "required": True},
        "template_contents": _OBJ,
        "user_inputs": _OBJ,
        "user_inputs_values": _OBJ,
        "parents": _PARENTS,
        "shutdown_action": {"type": "string", "enum": _ENUM_SHUTDOWN, "required": False},
        "min_vms": {"type": "integer", "required": False, "minimum": 0},
        "max_vms": {"type": "integer", "required": False, "minimum": 0},
        "cooldown": {"type": "integer", "required": False, "minimum": 0},
        "on_hold": {"type": "boolean", "required": False},
        "elasticity_policies": _ELASTICITY,
        "scheduled_policies": _SCHEDULED,
    },
}
VR_ROLE_SCHEMA_70: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": _NAME,
        "type": {"type": "string", "enum": ["vr"], "required": True},
        "template_id": {"type": "integer", "required": True},
        "cardinality": _CARDINALITY,
        "template_contents": _OBJ,
        "user_inputs": _OBJ,
        "user_inputs_values": _OBJ,
        "on_hold": {"type": "boolean", "required": False},
        "parents": _PARENTS,
    },
}
ROLE_SCHEMA_610: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": _NAME,
        "cardinality": _CARDINALITY,
        "vm_template": {"type": "integer", "required": True},
        "vm_template_contents": {"type": "string", "required": False},
        "custom_attrs": _OBJ,
        "custom_attrs_values": _OBJ,
        "parents": _PARENTS,
        "shutdown_action": {"type": "string", "enum": _ENUM_SHUTDOWN, "required": False},
        "min_vms": {"type": "integer", "required": False, "minimum": 0},
        "max_vms": {"type": "integer", "required": False, "minimum": 0},
        "cooldown": {"type": "integer", "required": False, "minimum": 0},
        "on_hold": {"type": "boolean", "required": False},
        "elasticity_policies": _ELASTICITY,
        "scheduled_policies": _SCHEDULED,
    },
}


def _service_schema(version: str) -> dict[str, Any]:
    inputs = (
        ("user_inputs", "user_inputs_values")
        if version == "7.0"
        else ("custom_attrs", "custom_attrs_values")
    )
    roles_items: Any = [] if version == "7.0" else ROLE_SCHEMA_610
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string", "required": True},
            "deployment": {"type": "string", "enum": ["none", "straight"], "default": "none"},
            "description": {"type": "string", "default": ""},
            "shutdown_action": {"type": "string", "enum": _ENUM_SHUTDOWN, "required": False},
            "roles": {"type": "array", "items": roles_items, "required": True},
            inputs[0]: _OBJ,
            inputs[1]: _OBJ,
            "ready_status_gate": {"type": "boolean", "required": False},
            "automatic_deletion": {"type": "boolean", "required": False},
            "networks": _OBJ,
            "networks_values": {
                "type": "array",
                "items": {"type": "object", "properties": {}},
                "required": False,
            },
            "on_hold": {"type": "boolean", "required": False},
        },
    }


# ------------------------------------------------------------------------------ validator
def _schema_inspect(schema: dict[str, Any]) -> str:
    """Ruby 3.1 ``Hash#inspect`` of a leaf schema, e.g. ``{:type=>:boolean, :required=>false}``."""
    parts = []
    for key, value in schema.items():
        if key == "type":
            shown = f":{value}"
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        else:
            shown = repr(value)
        parts.append(f":{key}=>{shown}")
    return "{" + ", ".join(parts) + "}"


def ruby_integer(value: Any) -> int:
    """``Kernel#Integer(value)``."""
    if value is None or isinstance(value, (bool, list, dict)):
        if isinstance(value, list):
            shown = "Array"
        elif isinstance(value, dict):
            shown = "Hash"
        else:
            shown = {True: "true", False: "false", None: "nil"}[value]
        raise RubyTypeError(f"can't convert {shown} into Integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    text = str(value).strip().replace("_", "")
    m = re.fullmatch(r"([+-]?)(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO]?[0-7]+|[1-9]\d*|0)", text)
    if not m:
        raise ValueError(text)
    sign, digits = m.groups()
    low = digits.lower()
    if low.startswith("0x"):
        number = int(low[2:], 16)
    elif low.startswith("0b"):
        number = int(low[2:], 2)
    elif low.startswith("0o"):
        number = int(low[2:], 8)
    elif len(low) > 1 and low.startswith("0"):
        number = int(low[1:], 8)
    else:
        number = int(low)
    return -number if sign == "-" else number


def validate(body: Any, schema: dict[str, Any], key: str = "") -> Any:
    kind = schema["type"]
    if kind == "object":
        return _validate_object(body, schema, key)
    if kind == "array":
        if not isinstance(body, list):
            raise ParseException(f"KEY: '{key}' must be an Array;")
        items = schema["items"]
        if not items:
            return body
        return [validate(item, items, key) for item in body]
    if kind == "string":
        if not isinstance(body, str):
            raise ParseException(f"KEY: '{key}' must be a String;")
        if "enum" in schema and body not in schema["enum"]:
            raise ParseException(f"KEY: '{key}' must be one of {', '.join(schema['enum'])};")
        if "regex" in schema and not re.search(schema["regex"], body, re.MULTILINE | re.ASCII):
            raise ParseException(f"KEY: '{key}' must match regexp /{schema['regex']}/;")
        return body
    if kind == "integer":
        try:
            value = ruby_integer(body)
        except ValueError:
            raise ParseException(f"KEY: '{key}' must be an Integer;") from None
        if "minimum" in schema and value < schema["minimum"]:
            raise ParseException(
                f"KEY: '{key}' must be greater than or equal to {schema['minimum']};"
            )
        return value
    if kind == "boolean":
        if body is not True and body is not False:
            raise ParseException(f"KEY: '{key}' is not allowed in {_schema_inspect(schema)};")
        return body
    raise ParseException(f"Unsupported type {kind}")


def _validate_object(body: Any, schema: dict[str, Any], key: str) -> Any:
    if not isinstance(body, dict):
        raise ParseException(f"KEY: '{key}' must be an Object;")
    if not schema["properties"]:
        return body
    for prop, sub in schema["properties"].items():
        value = body.get(prop)
        if value is not None and value is not False:
            body[prop] = validate(value, sub, prop)
        else:
            if sub.get("required"):
                raise ParseException(
                    f"Mandatory document key '{prop} ({sub['type']})' is missing from "
                    + ruby_json(body)
                )
            if "default" in sub:
                body[prop] = sub["default"]
    return body


# ------------------------------------------------------------------------ 7.0 conversion
def old_format(body: dict[str, Any]) -> bool:
    roles = body.get("roles")
    return isinstance(roles, list) and all(
        isinstance(r, dict) and ("vm_template" in r or "vm_template_contents" in r) for r in roles
    )


def upgrade_template_contents(contents: str | None) -> dict[str, Any]:
    """``ServiceTemplate.upgrade_template_contents`` (6.x string to 7.0 hash)."""
    if not contents:
        return {}
    result: dict[str, Any] = {}
    for line in re.split(r"\n(?![^\[]*\])", contents):
        if "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        value = value.replace('"', "")
        if value.startswith("[") and value.endswith("]"):
            sub: dict[str, Any] = {}
            for element in re.split(r"\s*,\s*", value[1:-1]):
                parts = [p.strip() for p in element.split("=", 1)]
                sub[parts[0]] = parts[1] if len(parts) > 1 else None
            item: Any = sub
        else:
            item = value
        if key in result:
            if isinstance(result[key], list):
                result[key].append(item)
            else:
                result[key] = [result[key], item]
        else:
            result[key] = item
    return {k: ([v] if isinstance(v, dict) else v) for k, v in result.items()}


def convert_template(body: dict[str, Any]) -> None:
    try:
        for role in body["roles"]:
            role["template_id"] = _to_i(role.get("vm_template"))
            role["type"] = "vm"
            if role.get("custom_attrs"):
                role["user_inputs"] = role["custom_attrs"]
            if body.get("custom_attrs_values"):
                body["user_inputs_values"] = role.get("custom_attrs_values")
            if role.get("vm_template_contents"):
                role["template_contents"] = upgrade_template_contents(role["vm_template_contents"])
            role.pop("vm_template", None)
            if role.get("vm_template_contents"):
                role.pop("vm_template_contents")
            if role.get("custom_attrs"):
                role.pop("custom_attrs")
            if role.get("custom_attrs_values"):
                role.pop("custom_attrs_values")
        if body.get("custom_attrs"):
            body["user_inputs"] = body["custom_attrs"]
        if body.get("custom_attrs_values"):
            body["user_inputs_values"] = body["custom_attrs_values"]
        if body.get("custom_attrs"):
            body.pop("custom_attrs")
        if body.get("custom_attrs_values"):
            body.pop("custom_attrs_values")
    except Exception as exc:
        raise ParseException(
            "An old service template format (OpenNebula v6.x) was detected and could not be "
            "automatically converted. Update it manually to the new format. Error: " + str(exc)
        ) from None


def _to_i(value: Any) -> int:
    from .compat import ruby_to_i

    return ruby_to_i(value)


# ---------------------------------------------------------------------------- validate()
def validate_template(template: Any, version: str) -> None:
    """``ServiceTemplate.validate`` (raises :class:`ParseException`)."""
    if not isinstance(template, dict):
        raise ParseException("KEY: '' must be an Object;")
    if version == "7.0":
        if old_format(template):
            convert_template(template)
        validate(template, _service_schema("7.0"))
        for role in template["roles"]:
            validate_role(role, version)
    else:
        validate(template, _service_schema("6.10"))
    validate_values(template, version)


def validate_role(role: Any, version: str) -> None:
    if version != "7.0":
        validate(role, ROLE_SCHEMA_610)
        return
    if not isinstance(role, dict):
        raise ParseException("KEY: '' must be an Object;")
    kind = role.get("type", "vm")
    if kind == "vm":
        validate(role, VM_ROLE_SCHEMA_70)
    elif kind == "vr":
        validate(role, VR_ROLE_SCHEMA_70)
    else:
        raise ParseException(f'Unsupported role type "{role.get("type")}"')


def validate_values(template: dict[str, Any], version: str) -> None:
    roles = template["roles"]
    for index, role in enumerate(roles):
        for other in roles[index + 1 :]:
            if role.get("name") == other.get("name"):
                raise ParseException(f"Role name '{role.get('name')}' is repeated")
        if version == "7.0" and role.get("type") == "vr":
            nics = (role.get("template_contents") or {}).get("NIC")
            if isinstance(nics, list) and role.get("cardinality", 0) > 1:
                if not any(str(k).startswith("FLOATING") for nic in nics for k in nic):
                    raise ParseException(
                        f"Role '{role['name']}' with 'cardinality' greather than one "
                        "must define a floating IP"
                    )
            continue
        if version == "7.0" and role.get("type") != "vm":
            raise ParseException(f'Unsupported role type "{template.get("type")}"')
        _validate_vm_values(role)


def _validate_vm_values(role: dict[str, Any]) -> None:
    name = role.get("name")
    card = _to_i(role.get("cardinality"))
    if role.get("min_vms") is not None and _to_i(role["min_vms"]) > card:
        raise ParseException(
            f"Role '{name}' 'cardinality' must be greater than or equal to 'min_vms'"
        )
    if role.get("max_vms") is not None and _to_i(role["max_vms"]) < card:
        raise ParseException(
            f"Role '{name}' 'cardinality' must be lower than or equal to 'max_vms'"
        )
    if (role.get("elasticity_policies") or role.get("scheduled_policies")) and (
        role.get("min_vms") is None or role.get("max_vms") is None
    ):
        raise ParseException(
            f"Role '{name}' with  'elasticity_policies' or 'scheduled_policies'must define both "
            "'min_vms' and 'max_vms'"
        )
    for index, policy in enumerate(role.get("elasticity_policies") or []):
        if not policy.get("expression"):
            raise ParseException(
                f"Role '{name}', elasticity policy #{index} 'expression' cannot be empty"
            )
    for index, policy in enumerate(role.get("scheduled_policies") or []):
        start, recurrence = policy.get("start_time"), policy.get("recurrence")
        if start is not None:
            if recurrence is not None:
                raise ParseException(
                    f"Role '{name}', scheduled policy #{index} must define 'start_time' or "
                    "'recurrence', but not both"
                )
        elif recurrence is not None:
            if len(str(recurrence).split()) != 5:
                raise ParseException(
                    f"Role '{name}', scheduled policy #{index} 'recurrence' is not a valid "
                    "cron expression"
                )
        else:
            raise ParseException(
                f"Role '{name}', scheduled policy ##{index} needs to define either "
                "'start_time' or 'recurrence'"
            )
